//! Who a TLS peer is, as Envoy's RBAC reads it from the peer's certificate: its URI SANs (the SPIFFE ID of a
//! mesh workload), its DNS SANs, and its subject in RFC 2253 form as OpenSSL and BoringSSL print it
//! (`X509_NAME_print_ex` with `XN_FLAG_RFC2253`).

use std::fmt::Write as _;

use rustls::pki_types::CertificateDer;
use x509_parser::asn1_rs::{Any, Tag, ToDer};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

pub use proxy_config::rbac::PeerIdentity;

/// The identity in the leaf of `chain` (a peer's certificates, leaf first); empty without one or when it
/// does not parse (rustls verified it, so it does).
pub fn peer_identity(chain: Option<&[CertificateDer<'_>]>) -> PeerIdentity {
    let Some(leaf) = chain.and_then(<[_]>::first) else {
        return PeerIdentity::default();
    };
    let Ok((_, cert)) = X509Certificate::from_der(leaf) else {
        return PeerIdentity::default();
    };
    let mut identity = PeerIdentity {
        subject: rfc2253(cert.subject()),
        ..PeerIdentity::default()
    };
    if let Ok(Some(sans)) = cert.subject_alternative_name() {
        for name in &sans.value.general_names {
            match name {
                GeneralName::URI(uri) => identity.uri_sans.push(uri.to_string()),
                GeneralName::DNSName(dns) => identity.dns_sans.push(dns.to_string()),
                _ => {}
            }
        }
    }
    identity
}

/// OpenSSL's short names of the attribute types subjects use; others print as dotted OIDs.
const SHORT_NAMES: &[(&str, &str)] = &[
    ("2.5.4.3", "CN"),
    ("2.5.4.4", "SN"),
    ("2.5.4.5", "serialNumber"),
    ("2.5.4.6", "C"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.9", "street"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.12", "title"),
    ("2.5.4.13", "description"),
    ("2.5.4.15", "businessCategory"),
    ("2.5.4.17", "postalCode"),
    ("2.5.4.41", "name"),
    ("2.5.4.42", "GN"),
    ("2.5.4.43", "initials"),
    ("2.5.4.44", "generationQualifier"),
    ("2.5.4.46", "dnQualifier"),
    ("2.5.4.65", "pseudonym"),
    ("1.2.840.113549.1.9.1", "emailAddress"),
    ("0.9.2342.19200300.100.1.1", "UID"),
    ("0.9.2342.19200300.100.1.25", "DC"),
];

/// `X509_NAME_print_ex(…, XN_FLAG_RFC2253)`: attributes last to first, RDNs joined by `,` and the
/// attributes of one RDN by `+`, short names, values converted to UTF-8 with RFC 2253's specials, control
/// characters and every byte past ASCII escaped; a value of a type that is not a string dumped as `#` and
/// its DER in hex.
fn rfc2253(name: &X509Name<'_>) -> String {
    // (attribute, whether it starts a new RDN in print order)
    let mut attributes = Vec::new();
    for rdn in name.iter() {
        for (i, attribute) in rdn.iter().enumerate() {
            attributes.push((attribute, i == 0));
        }
    }
    let mut out = String::new();
    let mut next_is_new_rdn = false;
    for (n, (attribute, first_of_rdn)) in attributes.iter().rev().enumerate() {
        if n > 0 {
            out.push(if next_is_new_rdn { ',' } else { '+' });
        }
        // Printed last to first, an attribute that opened its RDN is followed by another RDN.
        next_is_new_rdn = *first_of_rdn;
        let oid = attribute.attr_type().to_id_string();
        match SHORT_NAMES.iter().find(|(id, _)| *id == oid) {
            Some((_, short)) => out.push_str(short),
            None => out.push_str(&oid),
        }
        out.push('=');
        value(attribute.attr_value(), &mut out);
    }
    out
}

fn value(v: &Any<'_>, out: &mut String) {
    let data = v.data;
    let chars: Vec<u32> = match v.tag() {
        Tag::PrintableString | Tag::Ia5String | Tag::NumericString | Tag::VisibleString => {
            data.iter().map(|b| u32::from(*b)).collect()
        }
        // Latin-1, one byte a character, as OpenSSL reads it.
        Tag::T61String => data.iter().map(|b| u32::from(*b)).collect(),
        Tag::Utf8String => match std::str::from_utf8(data) {
            Ok(s) => s.chars().map(u32::from).collect(),
            Err(_) => return dump(v, out),
        },
        Tag::BmpString if data.len().is_multiple_of(2) => data
            .chunks_exact(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
            .collect(),
        Tag::UniversalString if data.len().is_multiple_of(4) => data
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        _ => return dump(v, out),
    };
    // UTF-8 bytes, each escaped on its own as OpenSSL's `do_buf` does with `ESC_MSB`.
    let mut bytes = Vec::with_capacity(chars.len());
    for c in &chars {
        match char::from_u32(*c) {
            Some(c) => bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
            None => return dump(v, out),
        }
    }
    let last = bytes.len().saturating_sub(1);
    for (i, b) in bytes.iter().enumerate() {
        let c = char::from(*b);
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && matches!(c, '#' | ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
            out.push(c);
        } else if *b < 0x20 || *b >= 0x7f {
            let _ = write!(out, "\\{b:02X}");
        } else {
            out.push(c);
        }
    }
}

/// A value of a type that is not a string: `#` and its DER encoding in hex (OpenSSL's `DUMP_DER`).
fn dump(v: &Any<'_>, out: &mut String) {
    out.push('#');
    for b in v.to_der_vec().unwrap_or_default() {
        let _ = write!(out, "{b:02X}");
    }
}
