use super::*;

fn read(paths: &[&str]) -> Vec<PathBuf> {
    paths.iter().map(PathBuf::from).collect()
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

#[test]
fn accepted_and_refused_resources_say_so_with_the_field() {
    let paths = read(&["kubernetes/Policy/shop/good", "kubernetes/Policy/shop/typo"]);
    let verdict = Verdict {
        applied: true,
        errors: vec![invalid(
            "kubernetes/Policy/shop/typo",
            "Policy",
            "shop/typo",
        )],
        kept: vec!["Policy shop/typo".into()],
    };
    let out = judgements(&paths, &verdict);
    assert_eq!(out.len(), 2);
    let good = &out[&paths[0]];
    assert!(good.accepted);
    assert_eq!(good.reason, "Accepted");
    let typo = &out[&paths[1]];
    assert_eq!(
        (typo.accepted, typo.reason.as_str()),
        (false, "InvalidKeptLastValid")
    );
    assert!(
        typo.message
            .starts_with("Policy shop/typo: spec.rules[0].when: undeclared reference"),
        "the message is the field-level one, without the document's line: {}",
        typo.message
    );
    assert!(
        typo.message
            .ends_with("its last valid version keeps serving"),
        "{}",
        typo.message
    );
}

#[test]
fn a_refused_change_leaves_the_blameless_alone() {
    let paths = read(&[
        "kubernetes/Adapter/shop/broken",
        "kubernetes/Policy/shop/fine",
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
    let out = judgements(&paths, &verdict);
    assert_eq!(out.len(), 1, "only the resource at fault: {out:?}");
    assert!(out[&paths[0]].message.contains("refused the change"));
}
