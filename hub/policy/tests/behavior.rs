//! Behaviour fixtures: each file under `fixtures/` holds a configuration and cases (attributes → expected
//! decision). Cases of a file run in order against one snapshot, so rate-limit cases see earlier charges.

use std::path::Path;
use std::time::Duration;

use hub_policy::{Decision, Presence, QuotaRequest};
use serde::Deserialize;
use serde_json::Value as Json;
use sextant_attributes::{AttrType, Bag, Span, Time, Value};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixture {
    config: String,
    #[serde(default)]
    cases: Vec<Case>,
    #[serde(default)]
    invalid: Vec<Invalid>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Invalid {
    name: String,
    config: String,
    error: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default)]
    attributes: serde_json::Map<String, Json>,
    #[serde(default)]
    quotas: Vec<Quota>,
    expect: Expect,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Quota {
    name: String,
    amount: u32,
    #[serde(default, rename = "bestEffort")]
    best_effort: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Expect {
    code: String,
    http: Option<u16>,
    message: Option<String>,
    cacheable: Option<bool>,
    referenced: Option<Vec<String>>,
    headers: Option<Vec<String>>,
    hits: Option<Vec<String>>,
    failures: Option<Vec<String>>,
    failure_policy: Option<String>,
    quotas: Option<Vec<String>>,
}

fn value(ty: AttrType, j: &Json) -> Value {
    match (ty, j) {
        (AttrType::String, Json::String(s)) => Value::String(s.clone()),
        (AttrType::IpAddress, Json::String(s)) => Value::Ip(s.parse().expect("IP in fixture")),
        (AttrType::Int64, Json::Number(n)) => Value::Int64(n.as_i64().expect("int in fixture")),
        (AttrType::Double, Json::Number(n)) => {
            Value::Double(n.as_f64().expect("number in fixture"))
        }
        (AttrType::Bool, Json::Bool(b)) => Value::Bool(*b),
        (AttrType::Bytes, Json::String(s)) => Value::Bytes(s.as_bytes().to_vec()),
        (AttrType::StringMap, Json::Object(m)) => Value::StringMap(
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().expect("string map value").to_string()))
                .collect(),
        ),
        (AttrType::Timestamp, Json::String(s)) => {
            let t = chrono::DateTime::parse_from_rfc3339(s).expect("RFC 3339 timestamp");
            Value::Timestamp(Time {
                seconds: t.timestamp(),
                nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
            })
        }
        (AttrType::Duration, Json::String(s)) => {
            let d = hub_config::parse_duration(s).expect("duration");
            Value::Duration(Span {
                seconds: i64::try_from(d.as_secs()).unwrap_or(0),
                nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
            })
        }
        (ty, j) => panic!("fixture value {j} does not fit type {}", ty.name()),
    }
}

fn bag(attrs: &serde_json::Map<String, Json>) -> Bag {
    let mut bag = Bag::new();
    for (name, j) in attrs {
        let id = sextant_attributes::lookup(name)
            .unwrap_or_else(|| panic!("fixture uses unknown attribute {name}"));
        bag.set(id, value(id.ty(), j)).expect("typed");
    }
    bag
}

fn render(d: &Decision) -> Expect {
    let presence = |p: Presence| {
        if p == Presence::Exact {
            "EXACT"
        } else {
            "ABSENT"
        }
    };
    Expect {
        code: if d.code == 0 {
            "OK".into()
        } else {
            hub_policy::code_name(d.code).into()
        },
        http: Some(d.http_status),
        message: Some(d.message.clone()),
        cacheable: Some(d.cacheable),
        referenced: Some(
            d.referenced
                .iter()
                .map(|r| match &r.map_key {
                    Some(k) => format!("{}[{k}]:{}", r.name, presence(r.presence)),
                    None => format!("{}:{}", r.name, presence(r.presence)),
                })
                .collect(),
        ),
        headers: Some(
            d.headers
                .iter()
                .map(|h| format!("{:?} {:?} {}: {}", h.target, h.action, h.name, h.value))
                .collect(),
        ),
        hits: Some(
            d.hits
                .iter()
                .map(|h| {
                    format!(
                        "{}:{}:{}{}",
                        h.policy,
                        h.rule,
                        h.action,
                        if h.dry_run { ":dry" } else { "" }
                    )
                })
                .collect(),
        ),
        failures: Some(
            d.failures
                .iter()
                .map(|f| format!("{} {} {:?}", f.resource, f.field, f.kind))
                .collect(),
        ),
        failure_policy: Some(d.failure_policy.map_or("NONE".into(), |f| format!("{f:?}"))),
        quotas: Some(
            d.quotas
                .iter()
                .map(|(n, g)| {
                    format!(
                        "{n}={}{}",
                        g.granted,
                        g.error
                            .as_ref()
                            .map(|e| format!(" ({e})"))
                            .unwrap_or_default()
                    )
                })
                .collect(),
        ),
    }
}

fn compare(want: &Expect, got: &Expect) -> Vec<String> {
    let mut diffs = Vec::new();
    if want.code != got.code {
        diffs.push(format!(
            "code: want {} got {} ({:?})",
            want.code, got.code, got.message
        ));
    }
    macro_rules! field {
        ($f:ident) => {
            if want.$f.is_some() && want.$f != got.$f {
                diffs.push(format!(
                    "{}: want {:?} got {:?}",
                    stringify!($f),
                    want.$f,
                    got.$f
                ));
            }
        };
    }
    field!(http);
    field!(cacheable);
    field!(referenced);
    field!(headers);
    field!(hits);
    field!(failures);
    field!(failure_policy);
    field!(quotas);
    if let (Some(w), Some(g)) = (&want.message, &got.message)
        && !g.contains(w.as_str())
    {
        diffs.push(format!("message: want it to contain {w:?}, got {g:?}"));
    }
    diffs
}

fn snapshot(file: &Path, config: &str) -> Result<hub_policy::Snapshot, String> {
    let set = hub_config::load_texts([(file, config)]).map_err(|e| e.to_string())?;
    let validated = hub_policy::validate(set).map_err(|e| e.to_string())?;
    let backend = hub_quota::LocalBackend::new(1000);
    Ok(validated.build(1, &backend, Duration::from_secs(60), 1000))
}

#[tokio::test]
async fn behaviour_fixtures() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixtures dir")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    let (mut cases, mut failures) = (0, Vec::new());
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read fixture");
        let fixture: Fixture =
            serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let snap = snapshot(&file, &fixture.config)
            .unwrap_or_else(|e| panic!("{}: config does not load: {e}", file.display()));
        for case in &fixture.cases {
            cases += 1;
            let quotas: Vec<_> = case
                .quotas
                .iter()
                .map(|q| QuotaRequest {
                    name: q.name.clone(),
                    amount: q.amount,
                    best_effort: q.best_effort,
                })
                .collect();
            let decision = hub_policy::check(&snap, &bag(&case.attributes), &quotas).await;
            for d in compare(&case.expect, &render(&decision)) {
                failures.push(format!(
                    "{} / {}: {d}",
                    file.file_name().unwrap_or_default().to_string_lossy(),
                    case.name
                ));
            }
        }
        for inv in &fixture.invalid {
            cases += 1;
            match snapshot(Path::new("bad.yaml"), &inv.config) {
                Ok(_) => failures.push(format!(
                    "{}: loads but should fail with {:?}",
                    inv.name, inv.error
                )),
                Err(e) if !e.contains(&inv.error) => failures.push(format!(
                    "{}: error {e:?} does not contain {:?}",
                    inv.name, inv.error
                )),
                Err(_) => {}
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cases} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(cases >= 40, "only {cases} behaviour cases");
}
