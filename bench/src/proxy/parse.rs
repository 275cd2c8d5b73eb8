//! Reading the load generators' results: wrk's and h2load's summaries (requests, status classes, errors, rate)
//! and h2load's per-request log (`--log-file`: start µs, status, µs to the end of the response), from which
//! the latency percentiles are computed exactly (h2load's own summary has only min/max/mean/sd).

use std::time::Duration;

use anyhow::Context as _;
use hdrhistogram::Histogram;

/// What one load run did.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Requests that got a response.
    pub responses: u64,
    /// Responses with a 2xx (wrk: 2xx or 3xx) status.
    pub ok: u64,
    /// Requests without a response: socket errors and timeouts (wrk), errored and timed out streams (h2load).
    pub errors: u64,
    /// The generator's own account of its errors and non-2xx responses, when there were any.
    pub error_detail: String,
    /// Responses per second, as the generator reports it.
    pub rps: f64,
    /// Latency percentiles, when known.
    pub latency: Option<Percentiles>,
}

/// Latency percentiles of one run.
#[derive(Clone, Copy, Debug)]
pub struct Percentiles {
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// 99.9th percentile (`None` from wrk, which does not report it).
    pub p999: Option<Duration>,
    /// Requests the percentiles are over.
    pub samples: u64,
}

/// A duration as wrk prints it: `412.00us`, `1.23ms`, `2.00s`, `1.00m`.
fn wrk_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let v: f64 = number.parse().ok()?;
    let secs = match unit {
        "us" => v / 1e6,
        "ms" => v / 1e3,
        "s" => v,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

/// The numbers after `key` in a line, in order (`Socket errors: connect 0, read 1` → [0, 1]).
fn numbers_after(line: &str, key: &str) -> Vec<f64> {
    line.split_once(key)
        .map(|(_, rest)| {
            rest.split(|c: char| c.is_whitespace() || c == ',')
                .filter_map(|w| w.parse::<f64>().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// wrk's output (with `--latency`).
pub fn wrk(out: &str) -> anyhow::Result<Outcome> {
    let mut o = Outcome::default();
    let mut detail = Vec::new();
    let mut non_ok = 0u64;
    let (mut p50, mut p90, mut p99) = (None, None, None);
    for line in out.lines() {
        let t = line.trim();
        if let Some(n) = t
            .split_whitespace()
            .next()
            .filter(|_| t.contains(" requests in "))
        {
            o.responses = n.parse().context("wrk's request count")?;
        } else if t.starts_with("Socket errors:") {
            o.errors = numbers_after(t, "Socket errors:").iter().sum::<f64>() as u64;
            detail.push(t.to_string());
        } else if t.starts_with("Non-2xx or 3xx responses:") {
            non_ok = numbers_after(t, ":").first().copied().unwrap_or(0.0) as u64;
            detail.push(t.to_string());
        } else if t.starts_with("Requests/sec:") {
            o.rps = numbers_after(t, ":").first().copied().unwrap_or(0.0);
        } else if let Some(v) = t.strip_prefix("50%") {
            p50 = wrk_duration(v.trim());
        } else if let Some(v) = t.strip_prefix("90%") {
            p90 = wrk_duration(v.trim());
        } else if let Some(v) = t.strip_prefix("99%") {
            p99 = wrk_duration(v.trim());
        }
    }
    anyhow::ensure!(
        o.rps > 0.0 || o.responses > 0,
        "wrk printed no results:\n{out}"
    );
    o.ok = o.responses.saturating_sub(non_ok);
    o.error_detail = detail.join("; ");
    o.latency = p50.zip(p90).zip(p99).map(|((p50, p90), p99)| Percentiles {
        p50,
        p90,
        p99,
        p999: None,
        samples: o.responses,
    });
    Ok(o)
}

/// h2load's summary (percentiles come from its log file, see [`h2load_log`]).
pub fn h2load(out: &str) -> anyhow::Result<Outcome> {
    let mut o = Outcome::default();
    let mut detail = Vec::new();
    let mut seen = false;
    for line in out.lines() {
        let t = line.trim();
        if t.starts_with("finished in") {
            // `finished in 10.00s, 7999.90 req/s, 8.59MB/s`
            o.rps = t
                .split(", ")
                .find_map(|p| p.strip_suffix(" req/s")?.parse().ok())
                .unwrap_or(0.0);
        } else if let Some(rest) = t.strip_prefix("requests:") {
            // `requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout`
            seen = true;
            let field = |name: &str| -> u64 {
                rest.split(',')
                    .find_map(|p| {
                        let (n, what) = p.trim().split_once(' ')?;
                        (what == name).then(|| n.parse().ok())?
                    })
                    .unwrap_or(0)
            };
            // `failed` counts non-2xx responses and `errored` streams (reset, connection lost); only the
            // latter went without a response.
            o.responses = field("done").saturating_sub(field("errored"));
            o.errors = field("errored") + field("timeout");
            if field("failed") + o.errors > 0 {
                detail.push(t.to_string());
            }
        } else if let Some(rest) = t.strip_prefix("status codes:") {
            let counts = numbers_after(rest, "");
            o.ok = counts.first().copied().unwrap_or(0.0) as u64;
            if counts.iter().skip(1).any(|c| *c > 0.0) {
                detail.push(t.to_string());
            }
        }
    }
    anyhow::ensure!(seen, "h2load printed no results:\n{out}");
    // A stream whose headers arrived before the end but whose body did not is counted by status, not as done.
    o.ok = o.ok.min(o.responses);
    o.error_detail = detail.join("; ");
    Ok(o)
}

/// Latency percentiles of the 2xx responses in h2load's `--log-file` text, and how many rows were left out
/// (failed streams, status -1, and other statuses: a fast 404 must not pass for a fast proxy).
pub fn h2load_log(text: &str) -> (Option<Percentiles>, u64) {
    // 1 µs to 10 min, 3 significant digits: the percentiles are exact to 0.1 %.
    let Ok(mut h) = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3) else {
        return (None, 0);
    };
    let mut failed = 0;
    for line in text.lines() {
        let mut cols = line.split('\t');
        let (Some(_start), Some(status), Some(us)) = (cols.next(), cols.next(), cols.next()) else {
            continue;
        };
        if !status.trim().starts_with('2') {
            failed += 1;
            continue;
        }
        if let Ok(us) = us.trim().parse::<u64>() {
            h.saturating_record(us.max(1));
        }
    }
    if h.is_empty() {
        return (None, failed);
    }
    let at = |q: f64| Duration::from_micros(h.value_at_quantile(q));
    let p = Percentiles {
        p50: at(0.5),
        p90: at(0.9),
        p99: at(0.99),
        p999: Some(at(0.999)),
        samples: h.len(),
    };
    (Some(p), failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK: &str = "Running 2s test @ http://127.0.0.1:4000/
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   610.31us  120.50us   4.39ms   90.12%
    Req/Sec    26.12k     1.02k   27.47k    75.00%
  Latency Distribution
     50%  594.00us
     75%  640.00us
     90%  707.00us
     99%    1.05ms
  51983 requests in 2.00s, 57.30MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 7
Requests/sec:  25990.21
Transfer/sec:     28.65MB
";

    const H2LOAD: &str = "starting benchmark...
finished in 2.00s, 40123.50 req/s, 42.10MB/s
requests: 80247 total, 80407 started, 80247 done, 80240 succeeded, 7 failed, 0 errored, 0 timeout
status codes: 80240 2xx, 0 3xx, 0 4xx, 7 5xx
traffic: 84.21MB (88302312) total, 1.23MB (1290000) headers (space savings 95.12%), 78.36MB (82172928) data
";

    #[test]
    fn wrk_counts_rate_errors_and_percentiles() {
        let o = wrk(WRK).expect("parsed");
        assert_eq!(o.responses, 51983);
        assert_eq!(o.ok, 51976);
        assert_eq!(o.errors, 3);
        assert!((o.rps - 25990.21).abs() < 1e-6);
        let p = o.latency.expect("percentiles");
        assert_eq!(p.p50, Duration::from_micros(594));
        assert_eq!(p.p90, Duration::from_micros(707));
        assert_eq!(p.p99, Duration::from_micros(1050));
        assert!(o.error_detail.contains("Non-2xx or 3xx responses: 7"));
    }

    #[test]
    fn h2load_counts_rate_and_status_classes() {
        let o = h2load(H2LOAD).expect("parsed");
        assert_eq!(o.responses, 80247);
        assert_eq!(o.ok, 80240);
        assert_eq!(o.errors, 0);
        assert!((o.rps - 40123.5).abs() < 1e-6);
        assert!(o.error_detail.contains("7 5xx"));
    }

    #[test]
    fn no_summary_is_an_error() {
        assert!(wrk("unable to connect to 127.0.0.1:1 Connection refused").is_err());
        assert!(h2load("No protocol negotiated").is_err());
    }

    #[test]
    fn h2load_log_percentiles_leave_failed_streams_out() {
        let mut log = String::new();
        for i in 1..=1000u64 {
            log.push_str(&format!("1700000000000000\t200\t{i}\n"));
        }
        log.push_str("1700000000000000\t-1\t5\n1700000000000000\t404\t7\n");
        let (p, failed) = h2load_log(&log);
        let p = p.expect("percentiles");
        assert_eq!(failed, 2);
        assert_eq!(p.samples, 1000);
        assert_eq!(p.p50, Duration::from_micros(500));
        assert_eq!(p.p90, Duration::from_micros(900));
        assert_eq!(p.p99, Duration::from_micros(990));
        assert_eq!(p.p999, Some(Duration::from_micros(999)));
    }
}
