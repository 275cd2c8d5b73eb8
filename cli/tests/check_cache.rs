//! The proxy's check cache against the real hub, as a differential test: 400 seeded random requests over
//! the example bookinfo policies (a guest denial keyed by a header, a principal check, an audit rule, a
//! per-user rate limit) are each checked by `sextant hub` over the native Check API in the compressed form,
//! and whenever the cache (fed with the hub's earlier answers, keyed by the attributes each referenced)
//! has an answer, it must be the hub's answer. A cached decision that disagrees with the hub — a
//! referenced attribute missing from the hub's answer, or a cache key that ignores one — fails here.

mod common;

use std::time::Instant;

use common::{Hub, repo};
use proxy_check::{CheckCache, Limits};
use sextant_attributes::{Bag, Value};
use sextant_proto::mixer::{self, mixer_client::MixerClient};

/// A small seeded generator (xorshift), so a failure replays.
struct Rng(u64);

impl Rng {
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        from[(self.0 % from.len() as u64) as usize]
    }
}

fn request(rng: &mut Rng) -> Bag {
    let mut b = Bag::new();
    let mut set = |name: &str, v: &str| {
        if !v.is_empty() {
            b.set_by_name(name, Value::String(v.into()))
                .expect("vocabulary");
        }
    };
    set(
        "destination.service.name",
        rng.pick(&["reviews", "ratings", "details"]),
    );
    set("request.method", rng.pick(&["GET", "POST"]));
    set("request.path", rng.pick(&["/", "/reviews/1", "/api/v1"]));
    set(
        "source.principal",
        rng.pick(&[
            "",
            "spiffe://cluster.local/ns/default/sa/bookinfo-reviews",
            "spiffe://cluster.local/ns/default/sa/other",
        ]),
    );
    let user = rng.pick(&["", "guest", "bob@staff", "alice"]);
    let accept = rng.pick(&["", "text/html"]);
    let mut headers = std::collections::HashMap::new();
    if !user.is_empty() {
        headers.insert("x-user".to_string(), user.to_string());
    }
    if !accept.is_empty() {
        headers.insert("accept".to_string(), accept.to_string());
    }
    if !headers.is_empty() {
        b.set_by_name("request.headers", Value::StringMap(headers))
            .expect("vocabulary");
    }
    b
}

#[test]
fn cached_answers_are_the_hubs_answers() {
    let hub = Hub::start(&repo().join("examples/policies"));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut client = runtime
        .block_on(MixerClient::connect(format!("http://{}", hub.grpc)))
        .expect("connect to the hub");
    let mut cache = CheckCache::new(Limits::default());
    let mut rng = Rng(0x5eed_cafe_f00d);
    let mut compared = 0;
    for i in 0..400 {
        let bag = request(&mut rng);
        let now = Instant::now();
        let cached = cache.lookup(&bag, now);
        let req = mixer::CheckRequest {
            compressed: Some(sextant_attributes::to_compressed(&bag)),
            ..Default::default()
        };
        let answer = runtime
            .block_on(client.check(req))
            .expect("the hub answers")
            .into_inner();
        let p = answer.precondition.clone().expect("a precondition");
        let code = |p: &mixer::PreconditionResult| p.status.as_ref().map_or(0, |s| s.code);
        if let Some(c) = cached {
            compared += 1;
            assert_eq!(
                (code(&c), &c.header_operations, &c.direct_response),
                (code(&p), &p.header_operations, &p.direct_response),
                "request {i}: the cache answered differently from the hub for {bag:?}"
            );
        }
        cache.insert(&bag, &answer, now);
    }
    let stats = cache.stats();
    eprintln!("{stats:?}");
    assert!(
        compared > 50,
        "the cache answered only {compared} of 400: {stats:?}"
    );
}
