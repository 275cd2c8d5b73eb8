//! A proxy's admin `/stats` text (Envoy's `name: value` lines, which `sextant proxy` serves too), read before
//! and after a run: xDS updates refused, 5xx answered, the hub filter's calls.

/// The sum of the counters in an admin `/stats` text body (`name: value` lines) whose name contains `part`.
pub fn sum_stats(body: &str, part: &str) -> u64 {
    body.lines()
        .filter_map(|l| l.split_once(": "))
        .filter(|(name, _)| name.contains(part))
        .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_summed_by_name_and_histograms_skipped() {
        let body = "cluster.a.update_rejected: 1\nlistener.x.update_rejected: 2\n\
                    cluster.a.upstream_cx_total: 7\nhttp.x.downstream_rq_time: P0(nan,1) P25(nan,2)\n";
        assert_eq!(sum_stats(body, "update_rejected"), 3);
        assert_eq!(sum_stats(body, "downstream_rq_time"), 0);
    }
}
