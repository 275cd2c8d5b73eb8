//! The bounds of [`crate::limits`] on the two protocols' state machines, request by request.

use sextant_proto::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use sextant_proto::google::rpc::Status as RpcStatus;

use crate::limits::{MAX_NAME_BYTES, MAX_NAMES};
use crate::types::{self, CLUSTER, ENDPOINT};
use crate::{Answer, Delta, Protocol, Refusal, Snapshot, SnapshotBuilder, Sotw, build};

fn ask<P: Protocol>(
    p: &mut P,
    request: P::Request,
    snapshot: &Snapshot,
) -> Result<Answer<P::Response>, Refusal> {
    p.on_request(P::parse(request, snapshot), snapshot)
}

fn snapshot() -> Snapshot {
    let mut b = SnapshotBuilder::new();
    b.cluster(&build::eds_cluster("a", 1000))
        .endpoints(&build::assignment(
            "a",
            &[(std::net::SocketAddr::from(([127, 0, 0, 1], 1)), 1)],
        ));
    b.build()
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:06}")).collect()
}

#[test]
fn unknown_types_are_refused_without_state_and_labelled_other() {
    let snap = snapshot();
    let mut s = Sotw::default();
    let mut d = Delta::default();
    for i in 0..1000 {
        let url = format!("type.googleapis.com/abuse.Type{i}");
        let sotw = DiscoveryRequest {
            type_url: url.clone(),
            resource_names: vec!["x".into()],
            ..Default::default()
        };
        let refusal = ask(&mut s, sotw, &snap).unwrap_err();
        assert_eq!(
            refusal,
            Refusal::UnknownType {
                type_url: url.clone()
            }
        );
        assert_eq!(refusal.reason(), "unknown_type");
        assert!(
            refusal.status().is_none(),
            "ignored, not closing the stream"
        );
        let delta = DeltaDiscoveryRequest {
            type_url: url,
            resource_names_subscribe: vec!["x".into()],
            ..Default::default()
        };
        assert!(matches!(
            ask(&mut d, delta, &snap),
            Err(Refusal::UnknownType { .. })
        ));
    }
    assert!(s.watched().is_empty() && d.watched().is_empty());
    // The streams still serve what pilot has.
    let cds = DiscoveryRequest {
        type_url: CLUSTER.into(),
        ..Default::default()
    };
    assert!(ask(&mut s, cds, &snap).unwrap().response.is_some());
    assert_eq!(s.watched(), [CLUSTER]);
    assert_eq!(
        types::short_name("type.googleapis.com/abuse.Type1"),
        "other"
    );
    // A type URL of a megabyte is not repeated whole.
    let long = "x".repeat(1 << 20);
    let refusal = Refusal::unknown_type(&long);
    assert!(
        refusal.to_string().len() < 200,
        "{}",
        refusal.to_string().len()
    );
}

#[test]
fn delta_names_accumulate_up_to_the_bound_then_the_stream_is_refused() {
    let snap = snapshot();
    let mut d = Delta::default();
    let request = |subscribe: Vec<String>| DeltaDiscoveryRequest {
        type_url: ENDPOINT.into(),
        resource_names_subscribe: subscribe,
        ..Default::default()
    };
    let step = MAX_NAMES / 2;
    ask(&mut d, request(names("a", step)), &snap).unwrap();
    ask(&mut d, request(names("b", step)), &snap).unwrap();
    let refusal = ask(&mut d, request(names("c", 1)), &snap).unwrap_err();
    assert_eq!(
        refusal,
        Refusal::TooManyNames {
            short: "eds",
            count: MAX_NAMES + 1
        }
    );
    let status = refusal.status().expect("closes the stream");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert!(status.message().contains("100000"), "{}", status.message());

    // Bytes too: few names, long ones.
    let mut d = Delta::default();
    let long = |p: &str| {
        (0..40)
            .map(|i| format!("{p}{i}{}", "x".repeat(128 << 10)))
            .collect()
    };
    ask(&mut d, request(long("a")), &snap).unwrap();
    let refusal = ask(&mut d, request(long("b")), &snap).unwrap_err();
    assert!(
        matches!(refusal, Refusal::NamesTooLarge { short: "eds", bytes } if bytes > MAX_NAME_BYTES),
        "{refusal:?}"
    );
    assert_eq!(refusal.reason(), "names_too_large");

    // One request over the bound is refused when read, its names dropped at once.
    let mut d = Delta::default();
    let parsed = Delta::parse(request(names("a", MAX_NAMES + 1)), &snap);
    assert!(
        Delta::cost(&parsed) < 1024,
        "names kept: {}",
        Delta::cost(&parsed)
    );
    assert!(matches!(
        d.on_request(parsed, &snap),
        Err(Refusal::TooManyNames { .. })
    ));
    assert!(d.watched().is_empty());
}

#[test]
fn sotw_requests_over_the_bound_are_refused_and_nack_details_are_cut() {
    let snap = snapshot();
    let mut s = Sotw::default();
    let parsed = Sotw::parse(
        DiscoveryRequest {
            type_url: ENDPOINT.into(),
            resource_names: names("a", MAX_NAMES + 1),
            ..Default::default()
        },
        &snap,
    );
    assert!(Sotw::cost(&parsed) < 1024);
    assert!(matches!(
        s.on_request(parsed, &snap),
        Err(Refusal::TooManyNames { short: "eds", .. })
    ));
    assert!(s.watched().is_empty());

    // A NACK's detail is kept cut, whatever its size.
    let eds = DiscoveryRequest {
        type_url: ENDPOINT.into(),
        resource_names: vec!["a".into()],
        ..Default::default()
    };
    let sent = ask(&mut s, eds.clone(), &snap).unwrap().response.unwrap();
    let nack = DiscoveryRequest {
        response_nonce: sent.nonce,
        error_detail: Some(RpcStatus {
            code: 3,
            message: "é".repeat(1 << 20),
            details: vec![],
        }),
        ..eds
    };
    let parsed = Sotw::parse(nack, &snap);
    assert!(Sotw::cost(&parsed) <= 5000);
    match s.on_request(parsed, &snap).unwrap().verdict {
        Some(crate::Verdict::Nack { message, .. }) => {
            assert!(message.len() <= 4096 && message.starts_with('é'))
        }
        other => panic!("expected a NACK, got {other:?}"),
    }
}
