//! The hub's CEL evaluation against a reference.
//!
//! The hub evaluates expressions against the request's bag in place: a lazy resolver answers qualified names,
//! string maps are served without copying, reads are recorded. The reference is the CEL interpreter itself over
//! a plain context in which every attribute was converted to an ordinary CEL value up front: `request` is a map
//! holding `headers`, `path`, `auth` (a map), and so on, and a map attribute the request lacks is an empty map,
//! as the hub defines it. Random well-typed expressions over the vocabulary, on random bags, must evaluate to
//! the same value (or both fail).
//!
//! A second property covers caching: a decision lists the attributes it referenced; any request that agrees
//! on those (same values, same presence, same keys) must get the same decision.
//!
//! `PROPTEST_CASES` sets the number of cases (the default, 256 per property, is what `.ci/test` runs;
//! `bench/oracle.sh` runs many more).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cel::objects::{Key, Map, Value as CelValue};
use hub_policy::{BagResolver, Presence, ReadSet};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use sextant_attributes::{AttrId, AttrType, Bag, Span, Time, Value};

/// The attributes the generator uses (a sample of every type of the vocabulary).
const ATTRS: &[&str] = &[
    "request.path",
    "request.method",
    "request.headers",
    "request.auth.principal",
    "request.auth.claims",
    "request.size",
    "request.time",
    "response.code",
    "response.duration",
    "source.ip",
    "source.principal",
    "destination.service.name",
    "connection.mtls",
];

const KEYS: &[&str] = &["xa", "xb", "user", "yc"];
const STRINGS: &[&str] = &[
    "",
    "a",
    "xa",
    "GET",
    "/api",
    "/api/v1",
    "guest",
    "1",
    "10.0.0.0/8",
];

fn id(name: &str) -> AttrId {
    sextant_attributes::lookup(name).unwrap_or_else(|| panic!("{name} is in the vocabulary"))
}

fn lit(s: &str) -> String {
    format!("{s:?}")
}

/// A string-valued leaf. `local` is a comprehension variable over a map's keys, when in scope.
fn string_leaf(local: Option<&'static str>) -> BoxedStrategy<String> {
    let mut leaves: Vec<BoxedStrategy<String>> = vec![
        proptest::sample::select(STRINGS).prop_map(lit).boxed(),
        proptest::sample::select(
            &[
                "request.path",
                "request.method",
                "request.auth.principal",
                "source.ip",
                "source.principal",
                "destination.service.name",
            ][..],
        )
        .prop_map(str::to_string)
        .boxed(),
        proptest::sample::select(KEYS)
            .prop_map(|k| format!("request.headers[{k:?}]"))
            .boxed(),
        proptest::sample::select(KEYS)
            .prop_map(|k| format!("request.headers.{k}"))
            .boxed(),
        proptest::sample::select(KEYS)
            .prop_map(|k| format!("request.auth.claims[{k:?}]"))
            .boxed(),
        proptest::sample::select(KEYS)
            .prop_map(|k| format!("request.headers[?{k:?}].orValue(\"none\")"))
            .boxed(),
    ];
    if let Some(v) = local {
        leaves.push(Just(v.to_string()).boxed());
        leaves.push(Just(format!("request.headers[{v}]")).boxed());
    }
    proptest::strategy::Union::new(leaves).boxed()
}

fn string_expr(local: Option<&'static str>) -> BoxedStrategy<String> {
    string_leaf(local)
        .prop_recursive(2, 8, 2, move |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} + {b})")),
                inner.clone().prop_map(|a| format!("{a}.lowerAscii()")),
                inner.clone().prop_map(|a| format!("{a}.upperAscii()")),
                (inner.clone(), inner.clone())
                    .prop_map(|(a, b)| format!("{a}.replace({b}, \"-\")")),
                (inner.clone(), 0i64..4).prop_map(|(a, i)| format!("{a}.substring({i})")),
                inner.clone().prop_map(|a| format!("string({a})")),
                inner
                    .clone()
                    .prop_map(|a| format!("{a}.split(\"/\").join(\",\")")),
                inner.prop_map(|a| format!("{a}.trim()")),
            ]
        })
        .boxed()
}

fn int_expr(local: Option<&'static str>) -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        (-3i64..1000).prop_map(|i| i.to_string()),
        Just("request.size".to_string()),
        Just("response.code".to_string()),
        Just("size(request.headers)".to_string()),
        Just("request.headers.size()".to_string()),
        string_leaf(local).prop_map(|s| format!("size({s})")),
        string_leaf(local).prop_map(|s| format!("int({s})")),
        Just("request.time.getHours()".to_string()),
        Just("request.time.getDayOfWeek(\"Europe/Paris\")".to_string()),
        Just("response.duration.getMilliseconds()".to_string()),
        Just("ip(source.ip).family()".to_string()),
        Just("request.path.indexOf(\"/\")".to_string()),
        Just("size(request.headers.filter(k, k.startsWith(\"x\")))".to_string()),
        Just("size(request.headers.map(k, request.headers[k]))".to_string()),
        Just("size(request.auth.claims)".to_string()),
    ];
    leaf.prop_recursive(2, 8, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} + {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} - {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} * {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} / {b})")),
            (inner.clone(), inner).prop_map(|(a, b)| format!("({a} % {b})")),
        ]
    })
    .boxed()
}

/// A predicate over a map key `k` (inside a comprehension over `request.headers` or a claims map).
fn key_predicate() -> BoxedStrategy<String> {
    bool_expr(Some("k"), 1)
}

fn bool_leaf(local: Option<&'static str>) -> BoxedStrategy<String> {
    let s = move || string_expr(local);
    let i = move || int_expr(local);
    prop_oneof![
        Just("true".to_string()),
        Just("false".to_string()),
        Just("connection.mtls".to_string()),
        Just("has(request.auth.principal)".to_string()),
        Just("has(source.ip)".to_string()),
        proptest::sample::select(KEYS).prop_map(|k| format!("has(request.headers.{k})")),
        proptest::sample::select(KEYS).prop_map(|k| format!("{k:?} in request.headers")),
        proptest::sample::select(KEYS).prop_map(|k| format!("{k:?} in request.auth.claims")),
        proptest::sample::select(KEYS).prop_map(|k| format!("request.headers[?{k:?}].hasValue()")),
        (s(), s()).prop_map(|(a, b)| format!("{a} == {b}")),
        (s(), s()).prop_map(|(a, b)| format!("{a} != {b}")),
        (s(), s()).prop_map(|(a, b)| format!("{a} < {b}")),
        (s(), s()).prop_map(|(a, b)| format!("{a}.startsWith({b})")),
        (s(), s()).prop_map(|(a, b)| format!("{a}.endsWith({b})")),
        (s(), s()).prop_map(|(a, b)| format!("{a}.contains({b})")),
        (
            s(),
            proptest::sample::select(&["^a", "x.$", "^/api(/|$)", "[", ""][..])
        )
            .prop_map(|(a, re)| format!("{a}.matches({re:?})")),
        (
            s(),
            proptest::collection::vec(proptest::sample::select(STRINGS), 0..3)
        )
            .prop_map(|(a, l)| format!(
                "{a} in [{}]",
                l.iter().map(|x| lit(x)).collect::<Vec<_>>().join(", ")
            )),
        (i(), i()).prop_map(|(a, b)| format!("{a} < {b}")),
        (i(), i()).prop_map(|(a, b)| format!("{a} >= {b}")),
        (i(), i()).prop_map(|(a, b)| format!("{a} == {b}")),
        Just("request.time > timestamp(\"2026-06-01T00:00:00Z\")".to_string()),
        Just("request.time - timestamp(\"2026-06-01T00:00:00Z\") < duration(\"24h\")".to_string()),
        Just("response.duration > duration(\"100ms\")".to_string()),
        Just("cidr(\"10.0.0.0/8\").containsIP(source.ip)".to_string()),
        Just("cidr(\"10.0.0.0/8\").containsIP(ip(source.ip))".to_string()),
        Just("ip(source.ip).isLoopback()".to_string()),
        Just("isIP(source.ip)".to_string()),
        s().prop_map(|a| format!("isCIDR({a})")),
        s().prop_map(|a| format!("cidr({a}).containsIP(\"10.1.2.3\")")),
    ]
    .boxed()
}

fn bool_expr(local: Option<&'static str>, depth: u32) -> BoxedStrategy<String> {
    bool_leaf(local)
        .prop_recursive(depth, 16, 3, move |inner| {
            let mut options: Vec<BoxedStrategy<String>> = vec![
                (inner.clone(), inner.clone())
                    .prop_map(|(a, b)| format!("({a} && {b})"))
                    .boxed(),
                (inner.clone(), inner.clone())
                    .prop_map(|(a, b)| format!("({a} || {b})"))
                    .boxed(),
                inner.clone().prop_map(|a| format!("!({a})")).boxed(),
                (inner.clone(), inner.clone(), inner.clone())
                    .prop_map(|(c, a, b)| format!("({c} ? {a} : {b})"))
                    .boxed(),
            ];
            if local.is_none() {
                let p = key_predicate();
                options.extend([
                    p.clone()
                        .prop_map(|p| format!("request.headers.exists(k, {p})"))
                        .boxed(),
                    p.clone()
                        .prop_map(|p| format!("request.headers.all(k, {p})"))
                        .boxed(),
                    p.clone()
                        .prop_map(|p| format!("request.headers.exists_one(k, {p})"))
                        .boxed(),
                    p.clone()
                        .prop_map(|p| format!("request.auth.claims.exists(k, {p})"))
                        .boxed(),
                    p.clone()
                        .prop_map(|p| format!("[\"xa\", \"user\", \"/api\"].all(k, {p})"))
                        .boxed(),
                    (p.clone(), 0i64..3)
                        .prop_map(|(p, n)| format!("size(request.headers.filter(k, {p})) > {n}"))
                        .boxed(),
                    p.prop_map(|p| format!("\"xa\" in request.headers.map(k, {p} ? k : \"-\")"))
                        .boxed(),
                ]);
            }
            proptest::strategy::Union::new(options).boxed()
        })
        .boxed()
}

/// One attribute's random value.
fn value_of(name: &'static str) -> BoxedStrategy<Value> {
    let strings = |v: &'static [&'static str]| {
        proptest::sample::select(v)
            .prop_map(|s| Value::String(s.to_string()))
            .boxed()
    };
    let map = || {
        proptest::collection::hash_map(
            proptest::sample::select(KEYS).prop_map(str::to_string),
            proptest::sample::select(&["1", "a", "guest", "", "xa"][..]).prop_map(str::to_string),
            0..4,
        )
        .prop_map(Value::StringMap)
        .boxed()
    };
    match name {
        "request.path" => strings(&["/api", "/api/v1/x", "/x", "", "A/B"]),
        "request.method" => strings(&["GET", "POST", "get"]),
        "request.auth.principal" | "source.principal" => strings(&["guest", "spiffe://a", ""]),
        "destination.service.name" => strings(&["reviews", "xa", "a"]),
        "request.headers" | "request.auth.claims" => map(),
        "request.size" | "response.code" => {
            proptest::sample::select(&[0i64, 1, 200, 404, 1 << 20, i64::MAX, -1][..])
                .prop_map(Value::Int64)
                .boxed()
        }
        "request.time" => (1_780_000_000i64..1_800_000_000, 0i32..1_000_000_000)
            .prop_map(|(seconds, nanos)| Value::Timestamp(Time { seconds, nanos }))
            .boxed(),
        "response.duration" => (0i64..5, 0i32..1_000_000_000)
            .prop_map(|(seconds, nanos)| Value::Duration(Span { seconds, nanos }))
            .boxed(),
        "source.ip" => proptest::sample::select(
            &["10.1.2.3", "127.0.0.1", "192.168.0.1", "::1", "fd00::1"][..],
        )
        .prop_map(|s| Value::Ip(s.parse().expect("IP")))
        .boxed(),
        "connection.mtls" => any::<bool>().prop_map(Value::Bool).boxed(),
        other => panic!("no generator for {other}"),
    }
}

/// A random bag over [`ATTRS`]: each attribute present or not.
fn bag() -> BoxedStrategy<Bag> {
    let parts: Vec<BoxedStrategy<Option<(AttrId, Value)>>> = ATTRS
        .iter()
        .map(|name| {
            proptest::option::weighted(0.8, value_of(name).prop_map(move |v| (id(name), v))).boxed()
        })
        .collect();
    parts
        .prop_map(|values| {
            let mut bag = Bag::new();
            for (id, v) in values.into_iter().flatten() {
                bag.set(id, v).expect("typed value");
            }
            bag
        })
        .boxed()
}

/// The plain CEL value of an attribute value.
fn plain(v: &Value) -> CelValue {
    match v {
        Value::String(s) => CelValue::String(Arc::new(s.clone())),
        Value::Int64(i) => CelValue::Int(*i),
        Value::Double(d) => CelValue::Float(*d),
        Value::Bool(b) => CelValue::Bool(*b),
        Value::Bytes(b) => CelValue::Bytes(Arc::new(b.clone())),
        Value::Ip(ip) => CelValue::String(Arc::new(ip.to_string())),
        Value::StringMap(m) => CelValue::Map(Map::from(m.clone())),
        Value::Timestamp(t) => CelValue::Timestamp(
            chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
                .unwrap_or_default()
                .fixed_offset(),
        ),
        Value::Duration(d) => CelValue::Duration(
            chrono::Duration::seconds(d.seconds)
                + chrono::Duration::nanoseconds(i64::from(d.nanos)),
        ),
    }
}

/// A nested map under construction: `request` → `auth` → `principal`.
#[derive(Default)]
struct Tree(HashMap<String, Node>);

enum Node {
    Leaf(CelValue),
    Branch(Tree),
}

impl Tree {
    fn insert(&mut self, path: &[&str], value: Option<CelValue>) {
        match path {
            [] => {}
            [last] => {
                if let Some(v) = value {
                    self.0.insert((*last).to_string(), Node::Leaf(v));
                }
            }
            [first, rest @ ..] => {
                let node = self
                    .0
                    .entry((*first).to_string())
                    .or_insert_with(|| Node::Branch(Tree::default()));
                if let Node::Branch(t) = node {
                    t.insert(rest, value);
                }
            }
        }
    }

    fn into_value(self) -> CelValue {
        let map: HashMap<Key, CelValue> = self
            .0
            .into_iter()
            .map(|(k, n)| {
                let v = match n {
                    Node::Leaf(v) => v,
                    Node::Branch(t) => t.into_value(),
                };
                (Key::String(Arc::new(k)), v)
            })
            .collect();
        CelValue::Map(Map { map: Arc::new(map) })
    }
}

/// The reference evaluation: the whole bag converted into nested CEL maps, one variable per first segment.
fn reference(expr: &str, bag: &Bag) -> Result<CelValue, String> {
    let mut tree = Tree::default();
    for d in sextant_attributes::VOCABULARY {
        let segments: Vec<&str> = d.name.split('.').collect();
        let value = match sextant_attributes::lookup(d.name).and_then(|id| bag.get(id)) {
            Some(v) => Some(plain(v)),
            // Map attributes are never absent, only empty; the namespaces above every attribute exist.
            None if d.ty == AttrType::StringMap => {
                Some(CelValue::Map(Map::from(HashMap::<String, String>::new())))
            }
            None => None,
        };
        tree.insert(&segments, value);
    }
    let program = hub_policy::ENV.compile(expr).map_err(|e| e.to_string())?;
    let mut ctx = cel::Context::with_env(hub_policy::ENV.clone());
    for (name, node) in tree.0 {
        let value = match node {
            Node::Leaf(v) => v,
            Node::Branch(t) => t.into_value(),
        };
        ctx.add_variable_from_value(name, value);
    }
    program.execute(&ctx).map_err(|e| e.to_string())
}

/// The hub's evaluation: the compiled expression over the bag through the lazy resolver.
fn hub(expr: &hub_policy::Expr, bag: &Bag) -> Result<CelValue, String> {
    let reads = ReadSet::default();
    let resolver = BagResolver::new(bag, &reads);
    let mut ctx = cel::Context::with_env(hub_policy::ENV.clone());
    ctx.set_variable_resolver(&resolver);
    expr.execute(&ctx).map_err(|e| e.to_string())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// Evaluations agree; the counts of what the cases came to, for the report.
#[derive(Debug, Default)]
struct Tally {
    cases: u64,
    true_: u64,
    false_: u64,
    failed: u64,
}

fn agree(expr: &str, bag: &Bag, tally: &mut Tally) -> Result<(), TestCaseError> {
    let compiled = hub_policy::compile_expr(expr, true)
        .map_err(|e| TestCaseError::fail(format!("{expr}: refused at load: {e}")))?;
    let ours = hub(&compiled, bag);
    let theirs = reference(expr, bag);
    tally.cases += 1;
    match (&ours, &theirs) {
        (Ok(a), Ok(b)) if a == b => {
            if *a == CelValue::Bool(true) {
                tally.true_ += 1;
            } else {
                tally.false_ += 1;
            }
            Ok(())
        }
        (Err(_), Err(_)) => {
            tally.failed += 1;
            Ok(())
        }
        _ => Err(TestCaseError::fail(format!(
            "{expr}\n  on {bag:?}\n  hub: {ours:?}\n  reference: {theirs:?}"
        ))),
    }
}

#[test]
fn the_hub_evaluates_every_expression_as_the_reference_does() {
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let tally = std::cell::RefCell::new(Tally::default());
    let result = runner.run(&(bool_expr(None, 3), bag()), |(expr, bag)| {
        agree(&expr, &bag, &mut tally.borrow_mut())
    });
    let tally = tally.into_inner();
    eprintln!("oracle: {tally:?}");
    if let Err(e) = result {
        panic!("{e}");
    }
    // The generator must exercise all three outcomes, or the comparison says little.
    assert!(
        tally.true_ > 0 && tally.false_ > 0 && tally.failed > 0,
        "{tally:?}"
    );
}

/// Cases the property test found, kept as regressions.
#[test]
fn regressions_found_by_the_oracle() {
    let bag = |pairs: &[(&str, Value)]| {
        let mut b = Bag::new();
        for (n, v) in pairs {
            b.set(id(n), v.clone()).expect("typed");
        }
        b
    };
    let headers = |kv: &[(&str, &str)]| {
        Value::StringMap(
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    };
    let mut tally = Tally::default();
    for (expr, b) in [
        // The issue's case: a comprehension over a map attribute's keys.
        (
            r#"request.headers.exists(k, k.startsWith("x-zz"))"#,
            bag(&[("request.headers", headers(&[("x-zz-a", "1")]))]),
        ),
        // A map attribute the request lacks is an empty map.
        (r#"request.headers.all(k, false)"#, bag(&[])),
        (r#"has(request.headers.xa)"#, bag(&[])),
    ] {
        agree(expr, &b, &mut tally).unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(tally.true_, 2, "{tally:?}");
}

/// A random bag that agrees with `bag` on what `referenced` lists and draws everything else anew.
fn agreeing(bag: &Bag, referenced: &[hub_policy::Reference], other: &Bag) -> Bag {
    let mut out = other.clone();
    for r in referenced {
        let id = id(r.name);
        match (&r.map_key, r.presence) {
            (None, Presence::Exact) => {
                out.set(
                    id,
                    bag.get(id).cloned().expect("an exact reference is present"),
                )
                .expect("typed");
            }
            (None, Presence::Absent) => {
                out.remove(id);
            }
            (Some(key), presence) => {
                let mut map = match out.get(id) {
                    Some(Value::StringMap(m)) => m.clone(),
                    _ => HashMap::new(),
                };
                match (presence, bag.get(id)) {
                    (Presence::Exact, Some(Value::StringMap(m))) => {
                        map.insert(key.clone(), m[key].clone());
                    }
                    _ => {
                        map.remove(key);
                    }
                }
                out.set(id, Value::StringMap(map)).expect("typed");
            }
        }
    }
    out
}

#[test]
fn a_decision_holds_for_every_request_that_matches_its_referenced_attributes() {
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let (checked, denied) = (std::cell::Cell::new(0u64), std::cell::Cell::new(0u64));
    let result = runner.run(
        &(bool_expr(None, 2), bool_expr(None, 2), bag(), bag()),
        |(when, selector, first, other)| {
            let config = format!(
                "apiVersion: policy.sextant.dev/v1alpha1\nkind: Policy\nmetadata: {{name: p}}\nspec:\n  selector: {}\n  rules:\n  - name: r\n    when: {}\n    action: DENY\n",
                serde_json::to_string(&selector).expect("json"),
                serde_json::to_string(&when).expect("json"),
            );
            let set = hub_config::load_texts([(std::path::Path::new("p.yaml"), config.as_str())])
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let snap = hub_policy::validate(set)
                .map_err(|e| TestCaseError::fail(e.to_string()))?
                .build(1, &hub_quota::LocalBackend::new(10), Duration::from_secs(60), 100);
            let d1 = rt.block_on(hub_policy::check(&snap, &first, &[]));
            if !d1.cacheable {
                // It read the clock or a request id: a proxy never reuses it.
                return Ok(());
            }
            let second = agreeing(&first, &d1.referenced, &other);
            let d2 = rt.block_on(hub_policy::check(&snap, &second, &[]));
            checked.set(checked.get() + 1);
            denied.set(denied.get() + u64::from(d1.code != 0));
            prop_assert_eq!(
                (d1.code, &d1.message),
                (d2.code, &d2.message),
                "selector {} when {}\nfirst {:?}\nreferenced {:?}\nsecond {:?}",
                selector,
                when,
                first,
                d1.referenced,
                second
            );
            Ok(())
        },
    );
    let (checked, denied) = (checked.get(), denied.get());
    eprintln!("referenced attributes: {checked} decisions re-checked, {denied} denials");
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(checked > 0 && denied > 0 && denied < checked);
}
