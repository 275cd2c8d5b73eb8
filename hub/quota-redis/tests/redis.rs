//! GLOBAL limits against real `redis-server` processes (Debian's Redis 7, started here on free ports): hubs
//! sharing one budget, Redis killed and back, a Redis Cluster and its failover, and servers that answer
//! garbage or nothing (those two are test doubles: no real Redis misbehaves on purpose). A decision's time is
//! checked against 250 ms: that catches a decision waiting on Redis (other limiters take 1–10 s when Redis is
//! gone), not a busy machine's scheduling; the 1 ms budget itself is enforced by a timer.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hub_quota::{LimitSpec, OnBackendFailure, Outcome, QuotaBackend, Scope};
use hub_quota_redis::{Options, RedisBackend, Topology};
use sextant_redis_harness::{Cluster, Redis, cli, wait_until};

/// A hub's backend with its worker running.
fn hub(url: &str, tweak: impl FnOnce(&mut Options)) -> Arc<RedisBackend> {
    let mut o = Options::new(Topology::parse(url).expect("a Redis URL"));
    o.heartbeat = Duration::from_millis(100);
    tweak(&mut o);
    let b = RedisBackend::new(o).expect("valid options");
    tokio::spawn(b.clone().run());
    b
}

fn spec(requests: u32, per: Duration, burst: u32, on_failure: OnBackendFailure) -> LimitSpec {
    LimitSpec::new(requests, per, burst)
        .expect("a valid limit")
        .scoped(Scope::Global, on_failure)
}

fn metrics(b: &RedisBackend) -> String {
    let mut r = prometheus_client::registry::Registry::default();
    b.register_metrics(&mut r);
    let mut s = String::new();
    prometheus_client::encoding::text::encode(&mut s, &r).expect("metrics encode");
    s
}

/// The sum of a metric's samples whose line contains every one of `with`.
fn metric(b: &RedisBackend, name: &str, with: &[&str]) -> f64 {
    metrics(b)
        .lines()
        .filter(|l| l.starts_with(name) && with.iter().all(|w| l.contains(w)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn granted(o: Outcome) -> bool {
    matches!(o, Outcome::Granted { .. })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubs_share_one_budget_with_few_redis_calls() {
    let redis = Redis::start(&[]);
    // A generous decision budget: this test is about sharing, and two cores running every test at once can
    // delay a first lease past 1 ms.
    let hubs: Vec<_> = (0..3)
        .map(|_| hub(&redis.url(), |o| o.budget = Duration::from_millis(200)))
        .collect();
    // 1000 per 100 s with a burst of 999: the first thousand requests are allowed, the rest wait ~0.1 s
    // each; 1% overshoot allows 10 more.
    let s = spec(1000, Duration::from_secs(100), 999, OnBackendFailure::Deny);
    let limiters: Vec<_> = hubs.iter().map(|h| h.limiter("ns/shared", s)).collect();
    let key = vec!["tenant-a".to_string()];
    let start = Instant::now();
    let mut allowed = 0u32;
    for i in 0..3000 {
        if granted(limiters[i % 3].acquire(&key, 1, false).await) {
            allowed += 1;
        }
    }
    let refill = (start.elapsed().as_secs_f64() * 10.0).ceil() as u32;
    assert!(
        (1000..=1000 + 10 + refill).contains(&allowed),
        "allowed {allowed} of 3000 across three hubs (limit 1000 + overshoot 10 + refill {refill})"
    );
    let evalsha = redis.calls("evalsha") + redis.calls("eval");
    assert!(
        evalsha * 10 < 3000,
        "{evalsha} script calls for 3000 decisions: leases should make it far fewer"
    );
    for h in &hubs {
        assert_eq!(metric(h, "sextant_quota_fallback_total", &[]), 0.0);
    }
    // The buckets expire in Redis; the heartbeat counted three hubs.
    wait_until("three live hubs", Duration::from_secs(5), || {
        hubs.iter().all(|h| h.hubs() == 3)
    });
    let bucket = redis.keys("sextant:quota:*tenant-a");
    assert_eq!(
        bucket.len(),
        1,
        "one Redis bucket for the dimension: {bucket:?}"
    );
    let ttl: i64 = cli(redis.port, &["PTTL", &bucket[0]])
        .parse()
        .expect("PTTL answers a number");
    assert!(ttl > 0, "bucket keys carry a TTL, got {ttl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_gone_falls_back_in_budget_and_recovers_without_a_burst() {
    let mut redis = Redis::start(&[]);
    let h = hub(&redis.url(), |_| {});
    // 100 per 10 s, burst 0: one every 100 ms.
    let s = spec(100, Duration::from_secs(10), 0, OnBackendFailure::Local);
    let l = h.limiter("ns/down", s);
    let key = vec!["k".to_string()];
    assert!(granted(l.acquire(&key, 1, false).await));
    redis.kill();
    // Every decision ends quickly; the fallback decides and is counted.
    let mut slowest = Duration::ZERO;
    let mut allowed = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(600) {
        let t = Instant::now();
        if granted(l.acquire(&key, 1, false).await) {
            allowed += 1;
        }
        slowest = slowest.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        slowest < Duration::from_millis(250),
        "a decision took {slowest:?} with Redis gone"
    );
    assert!(metric(&h, "sextant_quota_fallback_total", &["unavailable"]) > 0.0);
    assert!(metric(&h, "sextant_quota_redis_errors_total", &["connection"]) > 0.0);
    // The fallback holds the limit too (one hub: the whole limit), 600 ms → at most 1 + 6 (+1 in flight).
    assert!(
        allowed <= 8,
        "fallback allowed {allowed} in 600 ms of a 10/s limit"
    );
    // Redis back (empty: it kept nothing): the bucket is counted globally again, charged with what the
    // fallback allowed, so no burst follows.
    assert!(redis.restart(), "redis-server restarted on its port");
    // Decisions go on; the first after Redis is back re-syncs the bucket.
    let start = Instant::now();
    while redis.keys("sextant:quota:*:ns/down:k").is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the bucket never reached Redis again"
        );
        l.acquire(&key, 1, false).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = metric(&h, "sextant_quota_fallback_total", &[]);
    let mut burst = 0;
    for _ in 0..50 {
        if granted(l.acquire(&key, 1, false).await) {
            burst += 1;
        }
    }
    assert!(
        burst <= 2,
        "{burst} allowed at once right after Redis came back"
    );
    let after = metric(&h, "sextant_quota_fallback_total", &[]);
    assert!(
        after - before <= 2.0,
        "still falling back after Redis answered ({before} → {after})"
    );
}

/// A server that accepts connections and `answer`s every read (or nothing at all).
fn misbehaving(answer: Option<&'static [u8]>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let port = listener.local_addr().expect("bound").port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    if let Some(a) = answer
                        && conn.write_all(a).is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_silence_are_bounded_and_counted() {
    for (what, answer, failure) in [
        (
            "garbage",
            Some(&b"HTTP/1.1 400 Bad Request\r\n\r\n"[..]),
            "protocol",
        ),
        ("silence", None, "timeout"),
    ] {
        let port = misbehaving(answer);
        let h = hub(&format!("redis://127.0.0.1:{port}"), |o| {
            o.timeout = Duration::from_millis(50)
        });
        let l = h.limiter(
            "ns/bad",
            spec(10, Duration::from_secs(1), 0, OnBackendFailure::Allow),
        );
        let key = vec!["k".to_string()];
        let start = Instant::now();
        for _ in 0..200 {
            let t = Instant::now();
            assert!(
                granted(l.acquire(&key, 1, false).await),
                "{what}: ALLOW on failure"
            );
            assert!(
                t.elapsed() < Duration::from_millis(250),
                "{what}: a decision took {:?}",
                t.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(start.elapsed() < Duration::from_secs(5));
        wait_until(
            &format!("{what} counted as {failure}"),
            Duration::from_secs(5),
            || metric(&h, "sextant_quota_redis_errors_total", &[failure]) > 0.0,
        );
        assert!(
            metric(&h, "sextant_quota_fallback_total", &[]) > 0.0,
            "{what}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_hubs_leases_age_out() {
    let redis = Redis::start(&[]);
    // 20 per 2 s, burst 19: a full bucket is 20 units; a lease may take them all.
    let s = spec(20, Duration::from_secs(2), 19, OnBackendFailure::Deny);
    let key = vec!["k".to_string()];
    let dead = hub(&redis.url(), |_| {});
    let l = dead.limiter("ns/leak", s);
    // A burst makes the hub lease most of the bucket; it then "dies" holding units (never given back).
    for _ in 0..30 {
        l.acquire(&key, 1, false).await;
    }
    drop(l);
    std::mem::forget(dead);
    let other = hub(&redis.url(), |_| {});
    let l = other.limiter("ns/leak", s);
    // Within one window the bucket is full again: the other hub gets the whole limit.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let mut allowed = 0;
    for _ in 0..40 {
        if granted(l.acquire(&key, 1, false).await) {
            allowed += 1;
        }
    }
    assert!(
        (20..=22).contains(&allowed),
        "allowed {allowed} of a full bucket of 20"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_shares_the_budget_and_survives_a_failover() {
    let mut cluster = Cluster::start(1);
    let hubs: Vec<_> = (0..2).map(|_| hub(&cluster.url(), |_| {})).collect();
    let s = spec(1000, Duration::from_secs(100), 99, OnBackendFailure::Local);
    let limiters: Vec<_> = hubs.iter().map(|h| h.limiter("ns/cluster", s)).collect();
    // Keys spread over the three masters' slots.
    let keys: Vec<Vec<String>> = (0..6).map(|i| vec![format!("tenant-{i}")]).collect();
    for key in &keys {
        let mut allowed = 0;
        for i in 0..300 {
            if granted(limiters[i % 2].acquire(key, 1, false).await) {
                allowed += 1;
            }
        }
        assert!(
            (100..=115).contains(&allowed),
            "{key:?}: allowed {allowed} of a burst of 100"
        );
    }
    // Kill a master: its replica takes over after the node timeout; decisions never stall meanwhile.
    let master = cluster
        .nodes
        .iter()
        .position(|n| cli(n.port, &["ROLE"]).starts_with("master"))
        .expect("a master");
    cluster.nodes[master].kill();
    let fresh: Vec<Vec<String>> = (0..6).map(|i| vec![format!("after-{i}")]).collect();
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut recovered = false;
    while start.elapsed() < Duration::from_secs(20) && !recovered {
        for key in &fresh {
            let t = Instant::now();
            limiters[0].acquire(key, 1, false).await;
            slowest = slowest.max(t.elapsed());
        }
        let live = cluster
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != master)
            .all(|(_, n)| cli(n.port, &["CLUSTER", "INFO"]).contains("cluster_state:ok"));
        if live {
            let before = metric(&hubs[0], "sextant_quota_fallback_total", &[]);
            tokio::time::sleep(Duration::from_millis(600)).await;
            for key in &fresh {
                limiters[0].acquire(key, 1, false).await;
            }
            recovered = metric(&hubs[0], "sextant_quota_fallback_total", &[]) == before;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        recovered,
        "decisions went back to Redis after the failover:\n{}\n{}",
        metrics(&hubs[0]),
        cluster
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != master)
            .map(|(_, n)| format!("{}: {}", n.port, cli(n.port, &["CLUSTER", "NODES"])))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        slowest < Duration::from_millis(500),
        "a decision took {slowest:?} during the failover"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_auth() {
    let redis = Redis::start_tls("s3cret");
    let port = redis.tls_port.expect("a TLS port");
    let ca = std::fs::read(redis.ca_file()).expect("the CA file");
    let with_ca = |o: &mut Options| o.tls.ca = Some(ca.clone());
    let s = spec(100, Duration::from_secs(10), 9, OnBackendFailure::Deny);
    let key = vec!["k".to_string()];

    // The right password over TLS, trusting the run's CA: counted in Redis.
    // A generous decision budget: the first lease may be slow on a busy machine (this test is about TLS).
    let good = hub(&format!("rediss://:s3cret@127.0.0.1:{port}"), |o| {
        with_ca(o);
        o.budget = Duration::from_millis(500);
    });
    wait_until("the heartbeat over TLS", Duration::from_secs(10), || {
        metric(&good, "sextant_quota_redis_up", &[]) == 1.0
    });
    let l = good.limiter("ns/tls", s);
    assert!(granted(l.acquire(&key, 1, false).await));
    assert_eq!(redis.keys("sextant:quota:*:ns/tls:k").len(), 1);

    // A wrong password, and a server certificate the system's roots do not trust: refused, counted, bounded.
    for (url, tweak) in [
        (format!("rediss://:wrong@127.0.0.1:{port}"), true),
        (format!("rediss://:s3cret@127.0.0.1:{port}"), false),
    ] {
        let h = hub(&url, |o| {
            if tweak {
                with_ca(o)
            }
        });
        let l = h.limiter("ns/tls-bad", s);
        let t = Instant::now();
        assert!(
            !granted(l.acquire(&key, 1, false).await),
            "{url}: DENY on failure"
        );
        assert!(t.elapsed() < Duration::from_millis(250));
        wait_until(
            &format!("{url}: the failure counted"),
            Duration::from_secs(5),
            || metric(&h, "sextant_quota_redis_errors_total", &[]) > 0.0,
        );
    }
    assert!(redis.keys("sextant:quota:*:ns/tls-bad:*").is_empty());

    // Plain text to the TLS port, or a CA with a plain URL, is refused before anything connects.
    let mut o = Options::new(Topology::parse("redis://127.0.0.1:1").expect("a URL"));
    o.tls.ca = Some(ca.clone());
    assert!(RedisBackend::new(o).unwrap_err().contains("rediss://"));
}

/// The documented bound, as a property: random bursts and pauses of one key spread over three hubs; in
/// every window of length `per`, the grants of all hubs together stay within R + B + 1 + ⌊f·R⌋.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_window_stays_within_the_bound() {
    let redis = Redis::start(&[]);
    let hubs: Vec<_> = (0..3)
        .map(|_| hub(&redis.url(), |o| o.budget = Duration::from_millis(50)))
        .collect();
    let (requests, burst, per) = (200u32, 9u32, Duration::from_secs(2));
    let s = spec(requests, per, burst, OnBackendFailure::Deny);
    let limiters: Vec<_> = hubs.iter().map(|h| h.limiter("ns/prop", s)).collect();
    let key = vec!["k".to_string()];
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut grants = Vec::new();
    let mut offered = 0usize;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        // A burst of 1–40 requests at random hubs, then a pause of 0–80 ms.
        for _ in 0..1 + next() % 40 {
            offered += 1;
            let h = (next() % 3) as usize;
            if granted(limiters[h].acquire(&key, 1, false).await) {
                grants.push(Instant::now());
            }
        }
        tokio::time::sleep(Duration::from_millis(next() % 80)).await;
    }
    let bound = (requests + burst + 1) as usize + (0.01 * f64::from(requests)).floor() as usize;
    let worst = (0..grants.len())
        .map(|i| {
            grants[i..]
                .iter()
                .take_while(|t| **t < grants[i] + per)
                .count()
        })
        .max()
        .unwrap_or(0);
    eprintln!(
        "worst window {worst} of bound {bound}; {} grants",
        grants.len()
    );
    assert!(
        worst <= bound,
        "{worst} grants in one window of {per:?} (bound {bound}; {} grants in all)",
        grants.len()
    );
    // And the limit is used, not starved: at least half of what was offered, or of what 5 s of a 100/s limit
    // allows, is granted (a busy machine slows the leases, the offered load too).
    let allowed = (requests + burst + 1) as usize + 5 * 100;
    assert!(
        grants.len() * 2 >= offered.min(allowed),
        "only {} grants of {offered} requests in 5 s",
        grants.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_names_the_master_and_its_successor() {
    let mut master = Redis::start(&[]);
    let replica = Redis::start(&["--replicaof", "127.0.0.1", &master.port.to_string()]);
    wait_until("the replica in sync", Duration::from_secs(30), || {
        replica
            .cli(&["INFO", "replication"])
            .contains("master_link_status:up")
    });
    let sentinel = Redis::start_sentinel("mymaster", master.port);
    let h = hub(
        &format!("redis+sentinel://127.0.0.1:{}/mymaster", sentinel.port),
        |_| {},
    );
    wait_until(
        "the heartbeat through the Sentinel",
        Duration::from_secs(10),
        || metric(&h, "sextant_quota_redis_up", &[]) == 1.0,
    );
    let l = h.limiter(
        "ns/sentinel",
        spec(1000, Duration::from_secs(100), 99, OnBackendFailure::Local),
    );
    let key = vec!["k".to_string()];
    assert!(granted(l.acquire(&key, 1, false).await));
    assert_eq!(master.keys("sextant:quota:*:ns/sentinel:k").len(), 1);

    // The master dies: the Sentinel promotes the replica; decisions never stall, and go back to Redis, now
    // the replica, through the Sentinel.
    master.kill();
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    while replica.keys("sextant:quota:*:ns/sentinel:after").is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never counted in the promoted replica (the Sentinel says {})",
            sentinel.master_of("mymaster")
        );
        let t = Instant::now();
        l.acquire(&["after".to_string()], 1, false).await;
        slowest = slowest.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        sentinel.master_of("mymaster"),
        format!("127.0.0.1:{}", replica.port)
    );
    assert!(
        slowest < Duration::from_millis(250),
        "a decision took {slowest:?} during the failover"
    );
}
