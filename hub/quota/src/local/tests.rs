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

fn granted(o: Outcome) -> bool {
    matches!(o, Outcome::Granted { .. })
}

#[test]
fn keys_are_bounded_and_new_keys_share_the_overflow_bucket() {
    let l = LocalLimiter::with_clock(
        LimitSpec::new(1, Duration::from_secs(3600), 0).unwrap(),
        FakeRelativeClock::default(),
        10,
    );
    let outcomes: Vec<bool> = (0..35)
        .map(|i| granted(l.acquire_now(&key(&i.to_string()), 1, false)))
        .collect();
    assert!(
        outcomes[..10].iter().all(|g| *g),
        "the first ten have buckets"
    );
    assert!(outcomes[10], "the overflow bucket grants its one unit");
    assert!(
        !outcomes[11..].iter().any(|g| *g),
        "then the newcomers share its limit"
    );
    assert_eq!(l.keys(), 10);
    assert_eq!(l.overflowed(), 25);
    assert_eq!(l.evicted(), 0, "no bucket in use was dropped");
}

/// The defect of 41954b2: reaching the key bound reset every bucket, so a flood of distinct keys forgave
/// everyone, the flooder included.
#[test]
fn a_flood_of_distinct_keys_forgives_nobody() {
    let clock = FakeRelativeClock::default();
    let l = LocalLimiter::with_clock(
        LimitSpec::new(2, Duration::from_secs(60), 1).unwrap(),
        clock.clone(),
        1000,
    );
    assert!(granted(l.acquire_now(&key("abuser"), 2, false)));
    assert!(!granted(l.acquire_now(&key("abuser"), 1, false)));
    for i in 0..100_000 {
        l.acquire_now(&key(&format!("flood-{i}")), 1, false);
        if i % 10_000 == 0 {
            clock.advance(Duration::from_millis(100));
        }
    }
    assert!(
        !granted(l.acquire_now(&key("abuser"), 1, false)),
        "the abuser's bucket survived the flood"
    );
    assert!(l.keys() <= 1000, "held {}", l.keys());
    assert!(l.overflowed() >= 99_000, "overflowed {}", l.overflowed());
}

#[test]
fn idle_buckets_make_room_and_deny_mode_refuses_newcomers() {
    let clock = FakeRelativeClock::default();
    let l = LocalLimiter::with_overflow(
        LimitSpec::new(1, Duration::from_secs(10), 0).unwrap(),
        clock.clone(),
        3,
        Overflow::Deny,
    );
    for k in ["a", "b", "c"] {
        assert!(granted(l.acquire_now(&key(k), 1, false)));
    }
    let Outcome::Denied { retry_after } = l.acquire_now(&key("d"), 1, false) else {
        panic!("a fourth key is refused while the three buckets are in use");
    };
    assert!(retry_after > Duration::ZERO);
    assert_eq!(l.overflowed(), 1);
    clock.advance(Duration::from_secs(11));
    assert!(
        granted(l.acquire_now(&key("d"), 1, false)),
        "once the buckets are full again they are dropped for the newcomer"
    );
    assert_eq!(l.evicted(), 3);
    assert_eq!(l.keys(), 1);
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
                prop_assert!(granted <= amount && (best_effort || granted == amount));
                grants.push((now, granted));
            }
        }
        for (i, (start, _)) in grants.iter().enumerate() {
            let in_window: u32 = grants[i..].iter().take_while(|(t, _)| *t < *start + per).map(|(_, g)| g).sum();
            prop_assert!(in_window <= requests + burst, "{} granted in a window of {:?} (limit {} + burst {})", in_window, per, requests, burst);
        }
    }
}

proptest! {
    /// The same decisions as governor's GCRA (the limiter this one replaced), request by request, with the same
    /// wait when it refuses.
    #[test]
    fn decides_as_governor_does(
        requests in 1u32..6,
        per_ms in 10u64..2000,
        burst in 0u32..4,
        steps in proptest::collection::vec((0u64..400, 1u32..6), 1..200),
    ) {
        use governor::{Quota, RateLimiter};
        use std::num::NonZeroU32;
        let clock = FakeRelativeClock::default();
        let spec = LimitSpec::new(requests, Duration::from_millis(per_ms), burst).unwrap();
        let ours = LocalLimiter::with_clock(spec, clock.clone(), 10);
        let quota = Quota::with_period(spec.emission_interval())
            .unwrap()
            .allow_burst(NonZeroU32::new(spec.capacity()).unwrap());
        let reference = RateLimiter::direct_with_clock(quota, clock.clone());
        for (gap_ms, amount) in steps {
            clock.advance(Duration::from_millis(gap_ms));
            let theirs = reference.check_n(NonZeroU32::new(amount).unwrap());
            match (ours.acquire_now(&key("k"), amount, false), theirs) {
                (Outcome::Granted { granted, .. }, Ok(Ok(()))) => prop_assert_eq!(granted, amount),
                (Outcome::Denied { retry_after }, Ok(Err(not_until))) => {
                    use governor::clock::Clock as _;
                    prop_assert_eq!(retry_after, not_until.wait_time_from(clock.now()));
                }
                (Outcome::Denied { retry_after }, Err(_)) => prop_assert_eq!(retry_after, Duration::MAX),
                (o, t) => prop_assert!(false, "ours {:?}, governor {:?}", o, t.map(|r| r.is_ok())),
            }
        }
    }
}
