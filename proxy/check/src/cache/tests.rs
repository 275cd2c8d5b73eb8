use std::time::{Duration, Instant};

use sextant_attributes::{Bag, Value};
use sextant_proto::google::protobuf::Duration as PbDuration;
use sextant_proto::mixer::attribute_match::Condition;
use sextant_proto::mixer::{
    AttributeMatch, CheckResponse, PreconditionResult, ReferencedAttributes,
};

use super::*;

fn bag(pairs: &[(&str, Value)]) -> Bag {
    let mut b = Bag::new();
    for (name, v) in pairs {
        b.set_by_name(name, v.clone())
            .expect("a vocabulary attribute");
    }
    b
}

fn s(v: &str) -> Value {
    Value::String(v.into())
}

fn headers(pairs: &[(&str, &str)]) -> Value {
    Value::StringMap(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

/// An answer with `code`, valid for `secs` and `uses`, referencing `matches` (name, map key, absent).
fn answer(
    code: i32,
    secs: i64,
    uses: i32,
    revision: u64,
    matches: &[(&str, &str, bool)],
) -> CheckResponse {
    CheckResponse {
        precondition: Some(PreconditionResult {
            status: Some(sextant_proto::google::rpc::Status {
                code,
                ..Default::default()
            }),
            valid_duration: Some(PbDuration {
                seconds: secs,
                nanos: 0,
            }),
            valid_use_count: uses,
            config_revision: revision,
            referenced_attributes: Some(ReferencedAttributes {
                attribute_matches: matches
                    .iter()
                    .map(|(name, key, absent)| AttributeMatch {
                        name: name.to_string(),
                        map_key: key.to_string(),
                        condition: if *absent {
                            Condition::Absence
                        } else {
                            Condition::Exact
                        } as i32,
                    })
                    .collect(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn code(a: &PreconditionResult) -> i32 {
    a.status.as_ref().map_or(0, |s| s.code)
}

#[test]
fn an_answer_serves_requests_that_agree_on_what_it_referenced() {
    let mut cache = CheckCache::new(Limits::default());
    let now = Instant::now();
    let admin = bag(&[("request.path", s("/admin")), ("request.method", s("GET"))]);
    assert!(cache.lookup(&admin, now).is_none());
    cache.insert(
        &admin,
        &answer(7, 60, 100, 1, &[("request.path", "", false)]),
        now,
    );
    // Another method, same path: the decision did not depend on the method.
    let post = bag(&[("request.path", s("/admin")), ("request.method", s("POST"))]);
    assert_eq!(cache.lookup(&post, now).map(|a| code(&a)), Some(7));
    let other = bag(&[("request.path", s("/"))]);
    assert!(cache.lookup(&other, now).is_none());
    assert_eq!(
        (
            cache.stats().hits,
            cache.stats().misses,
            cache.stats().inserts
        ),
        (1, 2, 1)
    );
}

#[test]
fn map_keys_and_absence_are_part_of_the_key() {
    let mut cache = CheckCache::new(Limits::default());
    let now = Instant::now();
    let guest = bag(&[(
        "request.headers",
        headers(&[("x-user", "guest"), ("accept", "*/*")]),
    )]);
    // Denied because x-user is guest, and allowed only while x-debug is absent.
    cache.insert(
        &guest,
        &answer(
            7,
            60,
            100,
            1,
            &[
                ("request.headers", "x-user", false),
                ("request.headers", "x-debug", true),
            ],
        ),
        now,
    );
    let same_user = bag(&[("request.headers", headers(&[("x-user", "guest")]))]);
    assert_eq!(cache.lookup(&same_user, now).map(|a| code(&a)), Some(7));
    let debug = bag(&[(
        "request.headers",
        headers(&[("x-user", "guest"), ("x-debug", "1")]),
    )]);
    assert!(
        cache.lookup(&debug, now).is_none(),
        "x-debug was absent when decided"
    );
    let admin = bag(&[("request.headers", headers(&[("x-user", "admin")]))]);
    assert!(cache.lookup(&admin, now).is_none());
    let none = bag(&[]);
    assert!(
        cache.lookup(&none, now).is_none(),
        "x-user was present when decided"
    );
}

#[test]
fn duration_and_use_count_bound_an_answer() {
    let mut cache = CheckCache::new(Limits::default());
    let now = Instant::now();
    let b = bag(&[("request.path", s("/"))]);
    let refs = [("request.path", "", false)];
    cache.insert(&b, &answer(0, 10, 3, 1, &refs), now);
    // The asking request used one of three.
    assert!(cache.lookup(&b, now).is_some());
    assert!(cache.lookup(&b, now).is_some());
    assert!(cache.lookup(&b, now).is_none(), "three uses in all");
    cache.insert(&b, &answer(0, 10, 100, 1, &refs), now);
    assert!(cache.lookup(&b, now + Duration::from_secs(9)).is_some());
    assert!(
        cache.lookup(&b, now + Duration::from_secs(10)).is_none(),
        "expired"
    );
    for uncacheable in [
        answer(0, 0, 100, 1, &refs),
        answer(0, 10, 1, 1, &refs),
        answer(0, 10, 100, 1, &[("no.such.attribute", "", false)]),
    ] {
        cache.insert(&b, &uncacheable, now);
    }
    assert_eq!(cache.stats().uncacheable, 3);
    assert_eq!(cache.len(), 1, "only the cacheable answer is kept");
}

#[test]
fn an_ended_answer_stands_in_for_the_hub_while_stale_then_tells_its_failure_policy() {
    use sextant_proto::mixer::FailurePolicy;
    let mut cache = CheckCache::new(Limits {
        stale_for: Duration::from_secs(30),
        ..Limits::default()
    });
    let now = Instant::now();
    let b = bag(&[("request.path", s("/pay"))]);
    let other = bag(&[("request.path", s("/other"))]);
    let refs = [("request.path", "", false)];
    let with_policy = |policy: FailurePolicy| {
        let mut a = answer(0, 10, 2, 1, &refs);
        if let Some(p) = a.precondition.as_mut() {
            p.failure_policy = policy as i32;
        }
        a
    };
    cache.insert(&b, &with_policy(FailurePolicy::FailOpen), now);
    assert!(cache.lookup(&b, now).is_some());
    assert!(cache.lookup(&b, now).is_none(), "both uses spent");
    let stale = |c: &mut CheckCache, at| match c.fallback(&b, at) {
        Some(Fallback::Stale(a)) => code(&a),
        other => panic!("expected a stale answer, got {other:?}"),
    };
    assert_eq!(stale(&mut cache, now), 0, "spent but within its time");
    assert_eq!(stale(&mut cache, now + Duration::from_secs(39)), 0);
    assert_eq!(
        cache.fallback(&b, now + Duration::from_secs(40)),
        Some(Fallback::Policy(FailurePolicy::FailOpen as i32))
    );
    assert_eq!(cache.fallback(&other, now), None, "nothing known of /other");
    assert_eq!(cache.stats().stale, 2);
    // FAIL_CLOSE policies' answers are never served stale.
    cache.insert(&other, &with_policy(FailurePolicy::FailClose), now);
    assert_eq!(
        cache.fallback(&other, now + Duration::from_secs(11)),
        Some(Fallback::Policy(FailurePolicy::FailClose as i32))
    );
}

#[test]
fn a_newer_revision_empties_the_cache_and_an_older_one_is_not_kept() {
    let mut cache = CheckCache::new(Limits::default());
    let now = Instant::now();
    let a = bag(&[("request.path", s("/a"))]);
    let b = bag(&[("request.path", s("/b"))]);
    let refs = [("request.path", "", false)];
    cache.insert(&a, &answer(7, 60, 100, 1, &refs), now);
    cache.insert(&b, &answer(0, 60, 100, 2, &refs), now);
    assert!(cache.lookup(&a, now).is_none(), "decided under revision 1");
    assert!(cache.lookup(&b, now).is_some());
    assert_eq!(cache.stats().invalidations, 1);
    cache.insert(&a, &answer(7, 60, 100, 1, &refs), now);
    assert!(
        cache.lookup(&a, now).is_none(),
        "an answer of an older revision is not kept"
    );
}

#[test]
fn bounded_in_entries_and_shapes() {
    let mut cache = CheckCache::new(Limits {
        entries: 2,
        shapes: 1,
        ..Limits::default()
    });
    let now = Instant::now();
    let refs = [("request.path", "", false)];
    for p in ["/1", "/2", "/3"] {
        cache.insert(
            &bag(&[("request.path", s(p))]),
            &answer(0, 60, 100, 1, &refs),
            now,
        );
    }
    assert_eq!(cache.len(), 2);
    assert_eq!(cache.stats().evictions, 1);
    assert!(
        cache
            .lookup(&bag(&[("request.path", s("/1"))]), now)
            .is_none(),
        "the oldest went"
    );
    let b = bag(&[("request.method", s("GET"))]);
    cache.insert(
        &b,
        &answer(0, 60, 100, 1, &[("request.method", "", false)]),
        now,
    );
    assert_eq!(cache.stats().shape_overflow, 1);
    assert!(cache.lookup(&b, now).is_none());
}
