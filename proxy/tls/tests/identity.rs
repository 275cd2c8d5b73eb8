//! The identity a peer certificate names, as Envoy's RBAC reads it: URI SANs, DNS SANs, and the subject
//! exactly as OpenSSL prints it in RFC 2253 form (`fixtures/subject.rfc2253`, written by `fixtures/gen.sh`).

use proxy_tls::rustls::pki_types::CertificateDer;
use proxy_tls::rustls::pki_types::pem::PemObject;
use proxy_tls::{PeerIdentity, peer_identity};

fn identity(pem: &str) -> PeerIdentity {
    let cert = CertificateDer::from_pem_slice(pem.as_bytes()).expect("a PEM certificate");
    peer_identity(Some(&[cert]))
}

#[test]
fn a_workload_certificate_names_its_spiffe_id() {
    let id = identity(include_str!("fixtures/sleep.pem"));
    assert_eq!(id.uri_sans, ["spiffe://cluster.local/ns/default/sa/sleep"]);
    assert!(id.dns_sans.is_empty());
    assert_eq!(id.subject, "O=sextant-test");
}

#[test]
fn dns_sans_come_in_order() {
    let id = identity(include_str!("fixtures/dns.pem"));
    assert!(id.uri_sans.is_empty());
    assert_eq!(id.dns_sans, ["client.example.com", "other.example.com"]);
    assert_eq!(id.subject, "CN=dns-client,O=sextant-test");
}

#[test]
fn the_subject_prints_as_openssl_prints_it() {
    let id = identity(include_str!("fixtures/subject.pem"));
    assert!(id.uri_sans.is_empty() && id.dns_sans.is_empty());
    let openssl = include_str!("fixtures/subject.rfc2253").trim_end();
    // Reversed RDNs, a multi-valued RDN joined by `+`, an escaped comma, UTF-8 bytes escaped.
    assert_eq!(
        openssl,
        r"CN=J. Smith+OU=Sales,L=Z\C3\BCrich,O=Sue\, Grabbit and Runn,C=GB"
    );
    assert_eq!(id.subject, openssl);
}

#[test]
fn no_certificate_names_nothing() {
    assert_eq!(peer_identity(None), PeerIdentity::default());
    assert_eq!(peer_identity(Some(&[])), PeerIdentity::default());
    let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
    assert_eq!(peer_identity(Some(&[garbage])), PeerIdentity::default());
}
