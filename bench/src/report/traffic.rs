//! The Reports sent: realistic HTTP attribute bags (the attributes an Istio proxy reports, 19 per bag), 100
//! per Report, delta-encoded (the first bag whole, then only the attributes that changed from the previous
//! one). What identifies and times a request (its id, start and end, duration, sizes) differs in every bag, as
//! it does in real traffic; the id is a per-message word of each entry. Each Report comes from one proxy (one source workload and reporter kind); its bags go to a handful of
//! destinations with a handful of response codes, so metric label sets repeat as in real traffic.

use std::sync::Arc;

use anyhow::Context as _;
use prost::Message as _;
use sextant_attributes::{Bag, Span, Time, Value};
use sextant_proto::mixer;

/// Bags per Report.
pub const BAGS_PER_REPORT: usize = 100;
/// Distinct Reports in the pool (cycled through).
const POOL: usize = 16;

/// Source workloads (one per simulated proxy).
const SOURCES: [&str; 4] = [
    "productpage-v1",
    "frontend-v3",
    "checkout-v2",
    "ingressgateway",
];
/// Destination (workload, service, version).
const DESTINATIONS: [(&str, &str, &str); 5] = [
    ("reviews-v1", "reviews", "v1"),
    ("reviews-v2", "reviews", "v2"),
    ("reviews-v3", "reviews", "v3"),
    ("ratings-v1", "ratings", "v1"),
    ("details-v1", "details", "v1"),
];
/// Response codes; 200 dominates as in real traffic.
const CODES: [i64; 8] = [200, 200, 200, 200, 200, 201, 404, 503];
/// Request paths.
const PATHS: [&str; 3] = ["/api/v1/items", "/api/v1/items/42", "/healthz"];

/// The request pool, shared by every client.
pub struct Pool {
    /// The Reports, cycled through in order.
    pub requests: Arc<[mixer::ReportRequest]>,
    /// Mean encoded size of a Report, bytes.
    pub mean_bytes: usize,
    /// Attributes in a whole bag.
    pub attributes_per_bag: usize,
    /// Distinct (source, reporter, destination, code) label sets in the pool.
    pub label_sets: usize,
}

/// A small deterministic generator (xorshift), so every run sends the same traffic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[(self.next() % from.len() as u64) as usize]
    }
}

fn set(b: &mut Bag, name: &str, v: Value) -> anyhow::Result<()> {
    b.set_by_name(name, v)
        .with_context(|| format!("attribute {name}"))?;
    Ok(())
}

/// One request as a proxy reports it.
fn bag(rng: &mut Rng, source: &str, outbound: bool, seq: u64) -> anyhow::Result<Bag> {
    let (workload, service, version) = rng.pick(&DESTINATIONS);
    let s = |v: &str| Value::String(v.to_string());
    let mut b = Bag::new();
    let kind = if outbound { "outbound" } else { "inbound" };
    set(&mut b, "context.reporter.kind", s(kind))?;
    set(&mut b, "source.workload.name", s(source))?;
    set(&mut b, "source.workload.namespace", s("shop"))?;
    set(
        &mut b,
        "source.principal",
        Value::String(format!("spiffe://cluster.local/ns/shop/sa/{source}")),
    )?;
    set(&mut b, "destination.workload.name", s(workload))?;
    set(&mut b, "destination.workload.namespace", s("shop"))?;
    set(
        &mut b,
        "destination.service.host",
        Value::String(format!("{service}.shop.svc.cluster.local")),
    )?;
    set(&mut b, "destination.service.name", s(service))?;
    set(
        &mut b,
        "destination.labels",
        Value::StringMap([("version".to_string(), version.to_string())].into()),
    )?;
    set(&mut b, "request.protocol", s("http"))?;
    set(&mut b, "request.path", s(rng.pick(&PATHS)))?;
    set(&mut b, "response.code", Value::Int64(rng.pick(&CODES)))?;
    let millis = 1 + rng.next() % 200;
    set(
        &mut b,
        "request.id",
        Value::String(format!("{:016x}-{:016x}", rng.next(), rng.next())),
    )?;
    // One request every 2 ms from a fixed start, each lasting `millis`.
    let start_ns = 1_760_000_000_000_000_000u64 + seq * 2_000_000;
    let end_ns = start_ns + millis * 1_000_000;
    let at = |ns: u64| Time {
        seconds: i64::try_from(ns / 1_000_000_000).unwrap_or(i64::MAX),
        nanos: i32::try_from(ns % 1_000_000_000).unwrap_or(0),
    };
    set(&mut b, "request.time", Value::Timestamp(at(start_ns)))?;
    set(&mut b, "response.time", Value::Timestamp(at(end_ns)))?;
    set(
        &mut b,
        "response.duration",
        Value::Duration(Span {
            seconds: 0,
            nanos: i32::try_from(millis * 1_000_000).unwrap_or(i32::MAX),
        }),
    )?;
    set(
        &mut b,
        "request.total_size",
        Value::Int64(200 + (rng.next() % 2000) as i64),
    )?;
    set(
        &mut b,
        "response.total_size",
        Value::Int64(300 + (rng.next() % 20_000) as i64),
    )?;
    set(&mut b, "connection.mtls", Value::Bool(true))?;
    Ok(b)
}

/// A delta-encoded Report: the first entry whole, then only what changed from the previous bag.
fn report(bags: &[Bag]) -> anyhow::Result<mixer::ReportRequest> {
    let mut entries = Vec::with_capacity(bags.len());
    let mut prev: Option<&Bag> = None;
    for b in bags {
        let entry = match prev {
            None => sextant_attributes::to_compressed(b),
            Some(p) => {
                let mut delta = Bag::new();
                for (id, v) in b.iter() {
                    if p.get(id) != Some(v) {
                        delta.set(id, v.clone()).context("delta entry")?;
                    }
                }
                sextant_attributes::to_compressed(&delta)
            }
        };
        entries.push(entry);
        prev = Some(b);
    }
    Ok(mixer::ReportRequest {
        attributes: entries,
        default_words: Vec::new(),
        global_word_count: sextant_attributes::global_word_count(),
        repeated_attributes_semantics:
            mixer::report_request::RepeatedAttributesSemantics::DeltaEncoding as i32,
    })
}

impl Pool {
    /// Builds the pool (deterministically).
    pub fn build() -> anyhow::Result<Self> {
        let mut rng = Rng(0x5e7a_4711_cafe_f00d);
        let mut requests = Vec::with_capacity(POOL);
        let mut attributes_per_bag = 0;
        let mut sets = std::collections::HashSet::new();
        for i in 0..POOL {
            let source = SOURCES[i % SOURCES.len()];
            let outbound = (i / SOURCES.len()).is_multiple_of(2);
            let bags = (0..BAGS_PER_REPORT)
                .map(|k| bag(&mut rng, source, outbound, (i * BAGS_PER_REPORT + k) as u64))
                .collect::<anyhow::Result<Vec<_>>>()?;
            for b in &bags {
                attributes_per_bag = attributes_per_bag.max(b.len());
                sets.insert(format!(
                    "{source} {outbound} {:?} {:?}",
                    b.get_by_name("destination.workload.name"),
                    b.get_by_name("response.code")
                ));
            }
            requests.push(report(&bags)?);
        }
        let mean_bytes = requests.iter().map(|r| r.encoded_len()).sum::<usize>() / POOL;
        Ok(Pool {
            requests: requests.into(),
            mean_bytes,
            attributes_per_bag,
            label_sets: sets.len(),
        })
    }
}
