//! The calling workload, as its certificate says: with client certificates required (`--tls-client-ca-file`),
//! the attributes that name the workload making a call are bound to the SPIFFE ID its certificate carries,
//! instead of being taken on the caller's word.
//!
//! Which attributes name the caller depends on which side of the request it is. A sidecar checking or
//! reporting an inbound request (Envoy's ext_authz filter, the Sextant proxy's inbound hub filter,
//! `context.reporter.kind` absent or `inbound`) is the destination: `destination.principal` and
//! `destination.namespace` are its own, while `source.principal` is what it verified of its client over mesh
//! mTLS, which the hub trusts because the sidecar itself is authenticated. A client-side sidecar
//! (`context.reporter.kind: outbound`) is the source: `source.principal` and `source.namespace` are its own.
//! A call whose attributes name another workload than its certificate is overridden (the certificate's
//! values replace the claim; the default) or refused with `PERMISSION_DENIED` (`--caller-identity
//! reject`); either way it is counted in `sextant_hub_caller_mismatches_total{door,action}`. Absent
//! attributes are filled in.

use std::sync::Arc;

use sextant_attributes::{AttrId, Bag, Value, attr};
use sextant_tls_incoming::{PeerInfo, spiffe_namespace};

use crate::metrics::Metrics;

/// What a call claiming another workload than its certificate's gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CallerIdentity {
    /// The certificate's identity replaces the claim.
    #[default]
    Override,
    /// The call is refused with `PERMISSION_DENIED`.
    Reject,
}

/// The caller's verified SPIFFE ID, from a request's extensions (none without TLS or a client certificate).
pub(crate) fn identity_of(extensions: &tonic::Extensions) -> Option<Arc<str>> {
    extensions
        .get::<PeerInfo>()
        .and_then(|p| p.identity.clone())
}

/// A bag naming another workload than its caller's certificate: what was claimed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Mismatch {
    /// The attribute (`destination.principal`).
    pub attribute: &'static str,
    /// Its value in the call.
    pub claimed: String,
}

/// The attributes naming the caller of a call with these attributes: the destination's unless the reporter
/// is the client side.
fn caller_side(bag: &Bag) -> (AttrId, AttrId) {
    let outbound = matches!(
        bag.get(attr!("context.reporter.kind", String)),
        Some(Value::String(k)) if k == "outbound"
    );
    if outbound {
        (
            attr!("source.principal", String),
            attr!("source.namespace", String),
        )
    } else {
        (
            attr!("destination.principal", String),
            attr!("destination.namespace", String),
        )
    }
}

/// The first of the caller's attributes in `bag` that names another workload than `identity`, if any.
pub(crate) fn mismatch(bag: &Bag, identity: &str) -> Option<Mismatch> {
    let (principal, namespace) = caller_side(bag);
    let expected = [
        (principal, Some(identity)),
        (namespace, spiffe_namespace(identity)),
    ];
    expected
        .into_iter()
        .find_map(|(id, want)| match bag.get(id) {
            Some(Value::String(claimed)) if Some(claimed.as_str()) != want => Some(Mismatch {
                attribute: id.name(),
                claimed: claimed.clone(),
            }),
            _ => None,
        })
}

/// Whether `bag` already names exactly `identity` as the caller (nothing to set).
pub(crate) fn bound(bag: &Bag, identity: &str) -> bool {
    let (principal, namespace) = caller_side(bag);
    let is = |id: AttrId, want: Option<&str>| match (bag.get(id), want) {
        (Some(Value::String(v)), Some(w)) => v == w,
        (None, None) => true,
        _ => false,
    };
    is(principal, Some(identity)) && is(namespace, spiffe_namespace(identity))
}

/// Sets the caller's attributes of `bag` to `identity`'s.
pub(crate) fn bind(bag: &mut Bag, identity: &str) {
    let (principal, namespace) = caller_side(bag);
    crate::fill::set(bag, principal, Value::String(identity.to_string()));
    if let Some(ns) = spiffe_namespace(identity) {
        crate::fill::set(bag, namespace, Value::String(ns.to_string()));
    }
}

/// Binds the caller's attributes of `bag` to `identity` as `mode` says, counting a claim of another
/// workload for `door`; `Err` is the refusal to answer with.
pub(crate) fn apply(
    bag: &mut Bag,
    identity: &str,
    mode: CallerIdentity,
    door: &'static str,
    metrics: &Metrics,
) -> Result<(), tonic::Status> {
    if bound(bag, identity) {
        return Ok(());
    }
    if let Some(m) = mismatch(bag, identity) {
        if mode == CallerIdentity::Reject {
            metrics.caller_mismatch(door, "rejected");
            return Err(refusal(&m, identity));
        }
        metrics.caller_mismatch(door, "overridden");
    }
    bind(bag, identity);
    Ok(())
}

/// The refusal of a call whose attributes name another workload than its certificate.
pub(crate) fn refusal(m: &Mismatch, identity: &str) -> tonic::Status {
    tonic::Status::permission_denied(format!(
        "the call's {} is {:?}, but its client certificate is {identity:?} (--caller-identity reject)",
        m.attribute, m.claimed
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REVIEWS: &str = "spiffe://cluster.local/ns/shop/sa/reviews";

    fn bag(pairs: &[(&str, &str)]) -> Bag {
        let mut b = Bag::new();
        for (k, v) in pairs {
            b.set_by_name(k, Value::String(v.to_string()))
                .expect("attribute");
        }
        b
    }

    #[test]
    fn an_inbound_caller_is_the_destination_and_its_client_is_left_alone() {
        let client = "spiffe://cluster.local/ns/web/sa/frontend";
        let mut b = bag(&[
            ("source.principal", client),
            (
                "destination.principal",
                "spiffe://cluster.local/ns/shop/sa/ratings",
            ),
        ]);
        let m = mismatch(&b, REVIEWS).expect("a claim of another workload");
        assert_eq!(m.attribute, "destination.principal");
        assert!(!bound(&b, REVIEWS));
        bind(&mut b, REVIEWS);
        assert!(bound(&b, REVIEWS) && mismatch(&b, REVIEWS).is_none());
        assert_eq!(
            b.get_by_name("destination.namespace"),
            Some(&Value::String("shop".into()))
        );
        assert_eq!(
            b.get_by_name("source.principal"),
            Some(&Value::String(client.into())),
            "what the sidecar verified of its client stays"
        );
    }

    #[test]
    fn an_outbound_caller_is_the_source() {
        let mut b = bag(&[
            ("context.reporter.kind", "outbound"),
            ("source.namespace", "other"),
        ]);
        assert_eq!(
            mismatch(&b, REVIEWS).map(|m| m.attribute),
            Some("source.namespace")
        );
        bind(&mut b, REVIEWS);
        assert_eq!(
            b.get_by_name("source.principal"),
            Some(&Value::String(REVIEWS.into()))
        );
        assert_eq!(b.get_by_name("destination.principal"), None);
        // Nothing claimed is no mismatch; it is filled in.
        let empty = Bag::new();
        assert!(mismatch(&empty, REVIEWS).is_none() && !bound(&empty, REVIEWS));
    }
}
