use super::*;

fn judged(entries: &[(&str, i64)]) -> BTreeMap<PathBuf, i64> {
    entries
        .iter()
        .map(|(p, g)| (PathBuf::from(p), *g))
        .collect()
}

fn invalid(path: &str, kind: &str, name: &str) -> ConfigError {
    ConfigError::Invalid {
        at: hub_config::Location {
            file: std::path::Path::new(path).into(),
            line: 7,
        },
        kind: kind.into(),
        name: name.into(),
        field: "spec.rules[0].when".into(),
        message: "undeclared reference to 'reqest'".into(),
    }
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).expect("a time"))
}

#[test]
fn accepted_and_refused_resources_say_so_with_the_field() {
    let j = judged(&[
        ("kubernetes/Policy/shop/good", 3),
        ("kubernetes/Policy/shop/typo", 5),
    ]);
    let verdict = Verdict {
        applied: true,
        errors: vec![invalid(
            "kubernetes/Policy/shop/typo",
            "Policy",
            "shop/typo",
        )],
        kept: vec!["Policy shop/typo".into()],
    };
    let out = desired(&j, &verdict, |_| None, now());
    assert_eq!(out.len(), 2);
    let (_, good) = &out[0];
    assert_eq!(good.observed_generation, Some(3));
    assert_eq!(good.conditions[0].status, "True");
    assert_eq!(good.conditions[0].reason, "Accepted");
    let (_, typo) = &out[1];
    let c = &typo.conditions[0];
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "InvalidKeptLastValid")
    );
    assert_eq!(c.observed_generation, Some(5));
    assert!(
        c.message
            .starts_with("Policy shop/typo: spec.rules[0].when: undeclared reference"),
        "the message is the field-level one, without the document's line: {}",
        c.message
    );
    assert!(
        c.message.ends_with("its last valid version keeps serving"),
        "{}",
        c.message
    );
}

#[test]
fn a_refused_change_leaves_the_blameless_alone_and_times_only_move_on_change() {
    let j = judged(&[
        ("kubernetes/Adapter/shop/broken", 2),
        ("kubernetes/Policy/shop/fine", 1),
    ]);
    let verdict = Verdict {
        applied: false,
        errors: vec![invalid(
            "kubernetes/Adapter/shop/broken",
            "Adapter",
            "shop/broken",
        )],
        kept: vec![],
    };
    let out = desired(&j, &verdict, |_| None, now());
    assert_eq!(out.len(), 1, "only the resource at fault: {out:?}");
    assert!(
        out[0].1.conditions[0]
            .message
            .contains("refused the change")
    );

    // An unchanged condition keeps its transition time; `same` ignores the time.
    let earlier = Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).expect("a time"));
    let mut before = out[0].1.clone();
    before.conditions[0].last_transition_time = earlier.clone();
    let again = desired(&j, &verdict, |_| Some(before.clone()), now());
    assert_eq!(again[0].1.conditions[0].last_transition_time, earlier);
    assert!(same(Some(&before), &again[0].1));
    assert!(!same(None, &again[0].1));
}

#[test]
fn paths_name_their_resource() {
    let key = ("shop".to_string(), "reviews-guard".to_string());
    let path = crate::objects::path(Kind::Policy, &key);
    assert_eq!(path, PathBuf::from("kubernetes/Policy/shop/reviews-guard"));
    assert_eq!(crate::objects::of_path(&path), Some((Kind::Policy, key)));
    assert_eq!(
        crate::objects::of_path(std::path::Path::new("policies/a.yaml")),
        None
    );
}
