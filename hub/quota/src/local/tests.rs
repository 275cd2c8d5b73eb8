use std::time::Duration;

use governor::clock::FakeRelativeClock;
use proptest::prelude::*;

use super::*;

fn key(s: &str) -> Vec<String> {
    vec![s.to_string()]
}

#[test]
fn five_per_minute_with_burst_four_allows_five_at_once_then_spaces() {
    let clock = FakeRelativeClock::default();
    let l = LocalLimiter::with_clock(
        LimitSpec::new(5, Duration::from_secs(60), 4).unwrap(),
        clock.clone(),
        100,
    );
    for _ in 0..5 {
        assert!(matches!(
            l.acquire_now(&key("u"), 1, false),
            Outcome::Granted { .. }
        ));
    }
    let Outcome::Denied { retry_after } = l.acquire_now(&key("u"), 1, false) else {
        panic!("sixth must be denied")
    };
    assert_eq!(retry_after, Duration::from_secs(12));
    assert!(
        matches!(
            l.acquire_now(&key("other"), 1, false),
            Outcome::Granted { .. }
        ),
        "buckets are per key"
    );
    clock.advance(Duration::from_secs(12));
    assert!(matches!(
        l.acquire_now(&key("u"), 1, false),
        Outcome::Granted { .. }
    ));
}

#[test]
fn best_effort_grants_what_is_left() {
    let l = LocalLimiter::with_clock(
        LimitSpec::new(1, Duration::from_secs(1), 2).unwrap(),
        FakeRelativeClock::default(),
        10,
    );
    assert!(matches!(
        l.acquire_now(&key("k"), 2, false),
        Outcome::Granted {
            granted: 2,
            remaining: 1,
            ..
        }
    ));
    assert!(matches!(
        l.acquire_now(&key("k"), 5, true),
        Outcome::Granted {
            granted: 1,
            remaining: 0,
            ..
        }
    ));
    assert!(matches!(
        l.acquire_now(&key("k"), 1, true),
        Outcome::Denied { .. }
    ));
}

#[test]
fn keys_are_bounded_and_evictions_counted() {
    let l = LocalLimiter::with_clock(
        LimitSpec::new(1, Duration::from_secs(3600), 0).unwrap(),
        FakeRelativeClock::default(),
        10,
    );
    for i in 0..35 {
        l.acquire_now(&key(&i.to_string()), 1, false);
    }
    assert!(l.keys() <= 10, "held {}", l.keys());
    assert!(l.evicted() >= 20, "evicted {}", l.evicted());
}

#[test]
fn an_unchanged_limit_keeps_its_buckets_across_reloads() {
    let b = LocalBackend::new(100);
    let spec = LimitSpec::new(1, Duration::from_secs(60), 0).unwrap();
    let first = b.limiter("default/a", spec);
    let again = b.limiter("default/a", spec);
    assert!(std::sync::Arc::ptr_eq(&first, &again));
    let changed = b.limiter(
        "default/a",
        LimitSpec::new(2, Duration::from_secs(60), 0).unwrap(),
    );
    assert!(!std::sync::Arc::ptr_eq(&first, &changed));
}

proptest! {
    /// In any window of length `per`, a bucket never grants more than `requests + burst` units.
    #[test]
    fn never_more_than_limit_plus_burst_per_window(
        requests in 1u32..6,
        per_ms in 10u64..2000,
        burst in 0u32..4,
        steps in proptest::collection::vec((0u64..400, 1u32..4, any::<bool>()), 1..200),
    ) {
        let clock = FakeRelativeClock::default();
        let per = Duration::from_millis(per_ms);
        let spec = LimitSpec::new(requests, per, burst).unwrap();
        let l = LocalLimiter::with_clock(spec, clock.clone(), 10);
        let mut now = Duration::ZERO;
        let mut grants: Vec<(Duration, u32)> = Vec::new();
        for (gap_ms, amount, best_effort) in steps {
            clock.advance(Duration::from_millis(gap_ms));
            now += Duration::from_millis(gap_ms);
            if let Outcome::Granted { granted, .. } = l.acquire_now(&key("k"), amount, best_effort) {
                grants.push((now, granted));
            }
        }
        for (i, (start, _)) in grants.iter().enumerate() {
            let in_window: u32 = grants[i..].iter().take_while(|(t, _)| *t < *start + per).map(|(_, g)| g).sum();
            prop_assert!(in_window <= requests + burst, "{} granted in a window of {:?} (limit {} + burst {})", in_window, per, requests, burst);
        }
    }
}
