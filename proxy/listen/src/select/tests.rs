use proxy_config::listener::ChainMatch;

use super::{Connection, select_chain};
use crate::inspect::Detected;

fn chain(port: Option<u16>, names: &[&str], transport: &str, protocols: &[&str]) -> ChainMatch {
    ChainMatch {
        destination_port: port,
        server_names: names.iter().map(|n| n.to_string()).collect(),
        transport_protocol: transport.into(),
        application_protocols: protocols.iter().map(|p| p.to_string()).collect(),
    }
}

fn plain(protocol: Option<&str>) -> Detected {
    Detected {
        application_protocols: protocol.into_iter().map(String::from).collect(),
        ..Detected::plain()
    }
}

fn tls(sni: Option<&str>, alpn: &[&str]) -> Detected {
    Detected {
        server_name: sni.map(String::from),
        transport: "tls",
        application_protocols: alpn.iter().map(|p| p.to_string()).collect(),
    }
}

fn select(chains: &[ChainMatch], port: u16, detected: &Detected) -> Option<usize> {
    select_chain(
        chains,
        Connection {
            destination_port: port,
            detected,
        },
    )
}

/// Istio's sniffing virtualInbound for port 9080 (mTLS chains for HTTP and TCP, plain chains for HTTP and
/// TCP), a TCP-only port 3306, and a chain for any other port.
fn virtual_inbound() -> Vec<ChainMatch> {
    let mtls_http = ["istio-http/1.0", "istio-http/1.1", "istio-h2"];
    vec![
        chain(Some(9080), &[], "tls", &mtls_http),
        chain(Some(9080), &[], "tls", &[]),
        chain(Some(9080), &[], "raw_buffer", &["http/1.1", "h2c"]),
        chain(Some(9080), &[], "raw_buffer", &[]),
        chain(Some(3306), &[], "raw_buffer", &[]),
        chain(None, &[], "raw_buffer", &[]),
    ]
}

#[test]
fn the_destination_port_comes_first() {
    let chains = virtual_inbound();
    assert_eq!(select(&chains, 9080, &plain(Some("http/1.1"))), Some(2));
    assert_eq!(select(&chains, 9080, &plain(Some("h2c"))), Some(2));
    // HTTP/1.0 is not among the chain's protocols: the port's TCP chain.
    assert_eq!(select(&chains, 9080, &plain(Some("http/1.0"))), Some(3));
    assert_eq!(select(&chains, 9080, &plain(None)), Some(3));
    assert_eq!(select(&chains, 9080, &tls(None, &["istio-h2"])), Some(0));
    assert_eq!(select(&chains, 9080, &tls(None, &["h2"])), Some(1));
    // HTTP on a port whose chains are TCP only stays TCP.
    assert_eq!(select(&chains, 3306, &plain(Some("http/1.1"))), Some(4));
    // A port no chain names: the chain naming none.
    assert_eq!(select(&chains, 7070, &plain(Some("http/1.1"))), Some(5));
}

#[test]
fn a_port_match_beats_a_more_specific_chain_without_one() {
    let chains = vec![
        chain(None, &["reviews.example"], "tls", &["h2"]),
        chain(Some(9443), &[], "", &[]),
    ];
    assert_eq!(
        select(&chains, 9443, &tls(Some("reviews.example"), &["h2"])),
        Some(1)
    );
    assert_eq!(
        select(&chains, 443, &tls(Some("reviews.example"), &["h2"])),
        Some(0)
    );
    assert_eq!(
        select(&chains, 443, &tls(Some("other.example"), &["h2"])),
        None
    );
}

#[test]
fn a_port_branch_without_a_match_falls_to_the_default_chain_not_to_portless_chains() {
    // Envoy: "There is entry for specific port but none of the filter chain matches": the default chain.
    let chains = vec![
        chain(Some(9080), &[], "tls", &[]),
        chain(None, &[], "raw_buffer", &[]),
    ];
    assert_eq!(select(&chains, 9080, &plain(None)), None);
    assert_eq!(select(&chains, 9081, &plain(None)), Some(1));
}

#[test]
fn server_names_exact_then_longest_wildcard_then_none() {
    let chains = vec![
        chain(None, &[], "", &[]),
        chain(None, &["*.example.com"], "", &[]),
        chain(None, &["*.reviews.example.com"], "", &[]),
        chain(None, &["a.reviews.example.com"], "", &[]),
    ];
    assert_eq!(
        select(&chains, 443, &tls(Some("a.reviews.example.com"), &[])),
        Some(3)
    );
    assert_eq!(
        select(&chains, 443, &tls(Some("b.reviews.example.com"), &[])),
        Some(2)
    );
    assert_eq!(
        select(&chains, 443, &tls(Some("ratings.example.com"), &[])),
        Some(1)
    );
    assert_eq!(
        select(&chains, 443, &tls(Some("example.com"), &[])),
        Some(0)
    );
    assert_eq!(select(&chains, 443, &tls(None, &[])), Some(0));
    assert_eq!(select(&chains, 443, &plain(None)), Some(0));
}

#[test]
fn transport_then_the_connections_first_protocol_a_chain_names() {
    let chains = vec![
        chain(None, &[], "", &[]),
        chain(None, &[], "tls", &["http/1.1"]),
        chain(None, &[], "tls", &["h2"]),
        chain(None, &[], "raw_buffer", &["h2c"]),
    ];
    assert_eq!(
        select(&chains, 80, &tls(None, &["h2", "http/1.1"])),
        Some(2)
    );
    assert_eq!(
        select(&chains, 80, &tls(None, &["http/1.1", "h2"])),
        Some(1)
    );
    // The TLS branch is taken; it has no chain for this protocol and none without protocols.
    assert_eq!(select(&chains, 80, &tls(None, &["spdy/3"])), None);
    assert_eq!(select(&chains, 80, &plain(Some("h2c"))), Some(3));
    assert_eq!(select(&chains, 80, &plain(Some("http/1.1"))), None);
}

/// pilot's chains for a workload port of undeclared protocol (`inbound.rs`): mesh mTLS carrying HTTP, other
/// mesh mTLS, plain text the HTTP inspector recognised (no transport named), anything else on the port; the
/// listener's default chain (passthrough) is not listed.
fn sniffed_port() -> Vec<ChainMatch> {
    vec![
        chain(
            Some(8080),
            &[],
            "tls",
            &["istio-http/1.0", "istio-http/1.1", "istio-h2"],
        ),
        chain(Some(8080), &[], "tls", &["istio-peer-exchange", "istio"]),
        chain(Some(8080), &[], "", &["http/1.0", "http/1.1", "h2c"]),
        chain(Some(8080), &[], "", &[]),
    ]
}

#[test]
fn a_sniffed_port_takes_mesh_http_by_the_clients_first_alpn_and_the_rest_as_tcp() {
    let chains = sniffed_port();
    // What Istio's and pilot's clients offer for HTTP, over HTTP/1.1 and HTTP/2.
    let http11 = tls(
        Some("outbound_.80_._.web"),
        &["istio-http/1.1", "istio", "http/1.1"],
    );
    assert_eq!(select(&chains, 8080, &http11), Some(0));
    let h2 = tls(None, &["istio-h2", "istio", "h2"]);
    assert_eq!(select(&chains, 8080, &h2), Some(0));
    // TCP keeps the clusters' ALPN.
    let tcp = tls(None, &["istio-peer-exchange", "istio"]);
    assert_eq!(select(&chains, 8080, &tcp), Some(1));
    // The client's order decides, as in Envoy: `istio` first names the TCP chain.
    let istio_first = tls(None, &["istio", "istio-http/1.1"]);
    assert_eq!(select(&chains, 8080, &istio_first), Some(1));
    // The application's own TLS is no chain of the port's: the listener's default chain.
    assert_eq!(select(&chains, 8080, &tls(None, &["h2", "http/1.1"])), None);
    // Plain text: HTTP as the inspector found it, anything else on to the port's TCP chain.
    for p in ["http/1.0", "http/1.1", "h2c"] {
        assert_eq!(select(&chains, 8080, &plain(Some(p))), Some(2), "{p}");
    }
    assert_eq!(select(&chains, 8080, &plain(None)), Some(3));
    // Another port: none of these.
    assert_eq!(select(&chains, 8081, &plain(Some("http/1.1"))), None);
}
