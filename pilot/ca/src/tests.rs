use super::*;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;

const ID: &str = "spiffe://cluster.local/ns/default/sa/bookinfo-reviews";

fn pems(text: &str) -> Vec<Pem> {
    Pem::iter_from_buffer(text.as_bytes())
        .collect::<Result<_, _>>()
        .expect("PEM")
}

fn uris(cert: &X509Certificate<'_>) -> Vec<String> {
    let san = cert
        .subject_alternative_name()
        .expect("SAN parses")
        .expect("SAN present");
    assert!(san.critical, "SAN must be critical with an empty subject");
    san.value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::URI(u) => u.to_string(),
            other => panic!("unexpected name {other:?}"),
        })
        .collect()
}

/// Checks that `chain_pem`'s first certificate is a workload certificate for `id` signed by the key of
/// `signer_pem`'s certificate.
fn assert_signed(chain_pem: &str, signer_pem: &str, id: &str) {
    let chain = pems(chain_pem);
    let leaf = chain[0].parse_x509().expect("leaf");
    let signer = pems(signer_pem);
    let signer = signer[0].parse_x509().expect("signer");
    assert_eq!(uris(&leaf), [id]);
    assert!(leaf.subject().as_raw().len() <= 2, "empty subject");
    assert!(!leaf.is_ca());
    assert_eq!(leaf.issuer(), signer.subject());
    leaf.verify_signature(Some(signer.public_key()))
        .expect("signed by the CA");
    let eku = leaf
        .extended_key_usage()
        .expect("eku")
        .expect("eku present");
    assert!(eku.value.server_auth && eku.value.client_auth);
}

#[test]
fn issues_spiffe_certificates_signed_by_the_root() {
    let ca = Authority::self_signed("cluster.local", DEFAULT_WORKLOAD_TTL).expect("ca");
    let issued = ca.certificate(ID).expect("issue");
    assert_signed(&issued.chain_pem, ca.root_pem(), ID);
    assert_eq!(
        pems(&issued.chain_pem).len(),
        1,
        "a root is not sent in the chain"
    );
    let root = pems(ca.root_pem());
    assert!(root[0].parse_x509().expect("root").is_ca());
    KeyPair::from_pem(&issued.key_pem).expect("the key is PKCS #8 PEM");
    let life = issued
        .not_after
        .duration_since(SystemTime::now())
        .expect("future");
    assert!(life > Duration::from_secs(23 * 3600) && life <= DEFAULT_WORKLOAD_TTL);
}

#[test]
fn reuses_a_certificate_until_half_its_life() {
    let ca = Authority::self_signed("cluster.local", DEFAULT_WORKLOAD_TTL).expect("ca");
    let first = ca.certificate(ID).expect("issue");
    let again = ca.certificate(ID).expect("issue");
    assert!(Arc::ptr_eq(&first, &again));
    let other = ca
        .certificate("spiffe://cluster.local/ns/default/sa/ratings")
        .expect("issue");
    assert_ne!(first.key_pem, other.key_pem);
    let (early, late) = if first.refresh_at <= other.refresh_at {
        (first.refresh_at, other.refresh_at)
    } else {
        (other.refresh_at, first.refresh_at)
    };
    assert_eq!(ca.next_refresh_after(SystemTime::UNIX_EPOCH), Some(early));
    // Certificates due earlier than what the server handled last are left to their (gone) proxies.
    assert_eq!(
        ca.next_refresh_after(early),
        Some(late).filter(|l| *l > early)
    );
    // Past the refresh time, the next request gets a new certificate and key.
    ca.cache().insert(
        ID.into(),
        Arc::new(Issued {
            refresh_at: SystemTime::now(),
            ..clone(&first)
        }),
    );
    let fresh = ca.certificate(ID).expect("issue");
    assert_ne!(fresh.key_pem, first.key_pem);
}

fn clone(i: &Issued) -> Issued {
    Issued {
        chain_pem: i.chain_pem.clone(),
        key_pem: i.key_pem.clone(),
        not_after: i.not_after,
        refresh_at: i.refresh_at,
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pilot-ca-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn an_empty_directory_gets_a_root_that_survives_restarts() {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch("persist");
    let first = Authority::from_dir(&dir, "cluster.local", DEFAULT_WORKLOAD_TTL).expect("ca");
    let mode = std::fs::metadata(dir.join(files::CA_KEY))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        std::fs::read_to_string(dir.join(files::ROOT_CERT)).expect("root-cert.pem for the proxies"),
        first.root_pem()
    );
    let second = Authority::from_dir(&dir, "cluster.local", DEFAULT_WORKLOAD_TTL).expect("ca");
    assert_eq!(first.root_pem(), second.root_pem());
    assert_eq!(
        pems(&second.certificate(ID).expect("issue").chain_pem).len(),
        1,
        "root-cert.pem holding the CA certificate itself: the root is still not sent in the chain"
    );
    assert_signed(
        &second.certificate(ID).expect("issue").chain_pem,
        first.root_pem(),
        ID,
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_plugged_in_intermediate_is_sent_in_the_chain() {
    let dir = scratch("intermediate");
    std::fs::create_dir_all(&dir).expect("dir");
    let (root_pem, root_key) = make_root("cluster.local").expect("root");
    let root = Issuer::from_ca_cert_pem(&root_pem, root_key).expect("issuer");
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "intermediate");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().expect("key");
    let inter = params.signed_by(&key, &root).expect("intermediate").pem();
    std::fs::write(dir.join(files::CA_CERT), &inter).expect("write");
    std::fs::write(dir.join(files::CA_KEY), key.serialize_pem()).expect("write");
    std::fs::write(dir.join(files::ROOT_CERT), &root_pem).expect("write");
    std::fs::write(dir.join(files::CERT_CHAIN), format!("{inter}{root_pem}")).expect("write");
    let ca = Authority::from_dir(&dir, "cluster.local", DEFAULT_WORKLOAD_TTL).expect("ca");
    assert_eq!(ca.root_pem(), root_pem);
    let issued = ca.certificate(ID).expect("issue");
    assert_signed(&issued.chain_pem, &inter, ID);
    assert_eq!(pems(&issued.chain_pem).len(), 3, "leaf, intermediate, root");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_ca_directories_are_refused_with_the_file_named() {
    let dir = scratch("bad");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join(files::CA_CERT), "not a certificate").expect("write");
    let e = Authority::from_dir(&dir, "cluster.local", DEFAULT_WORKLOAD_TTL).unwrap_err();
    assert!(
        e.to_string().contains("has ca-cert.pem but not ca-key.pem"),
        "{e}"
    );

    let (_, key) = make_root("cluster.local").expect("root");
    std::fs::write(dir.join(files::CA_KEY), key.serialize_pem()).expect("write");
    let e = Authority::from_dir(&dir, "cluster.local", DEFAULT_WORKLOAD_TTL).unwrap_err();
    assert!(
        e.to_string().contains("ca-cert.pem: not a PEM certificate"),
        "{e}"
    );

    let (other_root, _) = make_root("cluster.local").expect("root");
    std::fs::write(dir.join(files::CA_CERT), other_root).expect("write");
    let e = Authority::from_dir(&dir, "cluster.local", DEFAULT_WORKLOAD_TTL).unwrap_err();
    assert!(
        e.to_string()
            .contains("ca-cert.pem: its public key is not the private key's"),
        "{e}"
    );

    std::fs::write(dir.join(files::CA_KEY), "garbage").expect("write");
    let e = Authority::from_dir(&dir, "cluster.local", DEFAULT_WORKLOAD_TTL).unwrap_err();
    assert!(
        e.to_string().contains("ca-key.pem: not a PEM private key"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).ok();

    let e = Authority::self_signed("cluster.local", Duration::from_secs(1)).unwrap_err();
    assert!(
        e.to_string().contains("lifetime 1s: use at least 10s"),
        "{e}"
    );
    let e = Authority::self_signed("Cluster Local", DEFAULT_WORKLOAD_TTL).unwrap_err();
    assert!(
        e.to_string().contains("trust domain \"Cluster Local\""),
        "{e}"
    );
}

/// A CSR for `ids` (URI SANs) with a fresh key, PEM, and the key's public half (DER).
fn csr_for(ids: &[&str]) -> (String, Vec<u8>) {
    use rcgen::PublicKeyData;
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = ids
        .iter()
        .map(|id| SanType::URI((*id).try_into().expect("uri")))
        .collect();
    let csr = params.serialize_request(&key).expect("csr");
    (csr.pem().expect("pem"), key.subject_public_key_info())
}

#[test]
fn signs_a_csr_for_the_callers_identity_with_the_callers_key() {
    let ca = Authority::self_signed("cluster.local", DEFAULT_WORKLOAD_TTL).expect("ca");
    let (csr, public) = csr_for(&[ID]);
    let signed = ca
        .sign_csr(&csr, ID, Some(Duration::from_secs(3600)))
        .expect("signed");
    assert_signed(&signed.chain_pem, ca.root_pem(), ID);
    let chain = pems(&signed.chain_pem);
    let leaf = chain[0].parse_x509().expect("leaf");
    assert_eq!(
        leaf.public_key().raw,
        public.as_slice(),
        "the workload's own key"
    );
    let lifetime = leaf.validity().not_after.timestamp() - leaf.validity().not_before.timestamp();
    assert!(
        lifetime <= 3600 + 60,
        "the shorter lifetime asked for: {lifetime}s"
    );
}

#[test]
fn refuses_csrs_for_other_identities_or_malformed() {
    let ca = Authority::self_signed("cluster.local", DEFAULT_WORKLOAD_TTL).expect("ca");
    let other = "spiffe://cluster.local/ns/default/sa/admin";
    for ids in [&[other][..], &[ID, other][..], &[][..]] {
        let (csr, _) = csr_for(ids);
        let e = ca.sign_csr(&csr, ID, None).expect_err("refused");
        assert!(
            matches!(&e, CaError::OtherIdentity { asked, caller } if asked == ids && caller == ID),
            "{e:?}"
        );
        assert!(e.to_string().contains("the caller may have only"), "{e}");
    }
    let e = ca
        .sign_csr(
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
            ID,
            None,
        )
        .expect_err("refused")
        .to_string();
    assert!(e.contains("not a validly signed PKCS #10 request"), "{e}");
}

#[test]
fn pilots_serving_certificate_names_its_dns_names_under_the_mesh_root() {
    let ca = Authority::self_signed("cluster.local", DEFAULT_WORKLOAD_TTL).expect("ca");
    let names = ["istiod.istio-system.svc", "istiod"];
    let ttl = Duration::from_secs(3600);
    let issued = ca.serving_certificate(&names, ttl).expect("issued");
    let chain = pems(&issued.chain_pem);
    let leaf = chain[0].parse_x509().expect("leaf");
    let root = pems(ca.root_pem());
    let root = root[0].parse_x509().expect("root");
    leaf.verify_signature(Some(root.public_key()))
        .expect("signed by the mesh root");
    let dns: Vec<String> = leaf
        .subject_alternative_name()
        .expect("SAN parses")
        .expect("SAN present")
        .value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(d) => d.to_string(),
            other => panic!("unexpected name {other:?}"),
        })
        .collect();
    assert_eq!(dns, names);
    let eku = leaf
        .extended_key_usage()
        .expect("eku")
        .expect("eku present");
    assert!(eku.value.server_auth && !eku.value.client_auth);
    assert!(!leaf.is_ca());
    KeyPair::from_pem(&issued.key_pem).expect("the key is PKCS #8 PEM");
    let life = issued
        .not_after
        .duration_since(SystemTime::now())
        .expect("future");
    assert!(life <= ttl && issued.refresh_at < issued.not_after);
    assert!(
        ca.next_refresh_after(SystemTime::UNIX_EPOCH).is_none(),
        "pilot's own certificate is not a workload's to renew"
    );
}

#[test]
fn a_root_file_alone_is_refused() {
    let dir = scratch("root-alone");
    std::fs::create_dir_all(&dir).expect("dir");
    let (root_pem, _) = make_root("cluster.local").expect("root");
    std::fs::write(dir.join(files::ROOT_CERT), root_pem).expect("write");
    let e = Authority::from_dir(&dir, "cluster.local", DEFAULT_WORKLOAD_TTL).unwrap_err();
    assert!(
        e.to_string()
            .contains("root-cert.pem: a trust root without ca-cert.pem"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
