//! Quota leases (a proxy's prefetch): a leasing Check takes a tenth of a limit's window at once (as much as
//! its burst allows) and says the answer holds for that many requests; the bucket never grants more than
//! the limit over all leases.

use std::path::Path;
use std::time::Duration;

use hub_policy::{NoAdapters, check_leasing, check_with};
use sextant_attributes::{Bag, Value};

const CONFIG: &str = r#"apiVersion: policy.sextant.dev/v1alpha1
kind: RateLimit
metadata: {name: per-user}
spec:
  selector: 'request.path.startsWith("/api")'
  dimensions: {user: 'request.headers["x-user"]'}
  limit: {requests: 100, per: 100s, burst: 19}
"#;

fn snapshot() -> hub_policy::Snapshot {
    let set = hub_config::load_texts([(Path::new("lease.yaml"), CONFIG)]).expect("loads");
    let validated = hub_policy::validate(set).expect("validates");
    let backend = hub_quota::LocalBackend::new(1000);
    validated.build(1, &backend, Duration::from_secs(60), 1000)
}

fn request(user: &str) -> Bag {
    let mut bag = Bag::new();
    bag.set_by_name("request.path", Value::String("/api/x".into()))
        .expect("path");
    bag.set_by_name(
        "request.headers",
        Value::StringMap([("x-user".to_string(), user.to_string())].into()),
    )
    .expect("headers");
    bag
}

#[tokio::test]
async fn a_lease_covers_a_tenth_of_the_window_and_never_more_than_the_limit() {
    let snap = snapshot();
    let alice = request("alice");
    let first = check_leasing(&snap, &alice, &[], &NoAdapters, true).await;
    assert_eq!(first.code, 0);
    assert!(first.cacheable);
    assert_eq!(first.valid_use_count, 10, "a tenth of 100 requests");
    assert_eq!(
        first.valid_duration,
        Duration::from_secs(10),
        "ten requests at one a second"
    );
    // Leases over the whole window add up to the limit, then the limit refuses, cacheably until it
    // would let one through.
    let mut granted = first.valid_use_count;
    loop {
        let d = check_leasing(&snap, &alice, &[], &NoAdapters, true).await;
        if d.code != 0 {
            assert_eq!(d.http_status, 429);
            assert!(d.cacheable, "a refusal holds until retry_after");
            assert!(d.valid_duration <= d.retry_after.expect("retry_after"));
            break;
        }
        granted += d.valid_use_count;
        assert!(granted <= 100, "leases granted {granted} of a limit of 100");
    }
    // What the bucket held at once: its burst and one.
    assert_eq!(granted, 20);
    // Another bucket is untouched; a caller that does not lease is charged one request and not cached.
    let bob = check_with(&snap, &request("bob"), &[], &NoAdapters).await;
    assert_eq!(bob.code, 0);
    assert!(!bob.cacheable);
    assert_eq!(bob.valid_use_count, 0);
}
