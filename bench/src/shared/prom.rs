//! Sums over a Prometheus (or OpenMetrics) text exposition: the hub's `/metrics` and its adapter runtime's
//! registry, read around a measured window.

/// Sum of the samples of `name` whose labels contain `labels` (e.g. `adapter="x"`; empty: every sample of
/// it, whatever its labels). Other names, even longer ones starting with `name`, are left out.
pub fn sum(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let metric = series.split('{').next()?;
            (metric == name && series.contains(labels)).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_summed_over_labels_and_other_names_left_out() {
        let text = "# TYPE sextant_hub_checks counter\n\
                    sextant_hub_checks_total{front_door=\"mixer\",result=\"ok\"} 3\n\
                    sextant_hub_checks_total{front_door=\"envoy_authz\",result=\"ok\"} 4\n\
                    sextant_hub_checks_total_other 100\n\
                    sextant_hub_reports_total{front_door=\"mixer\",result=\"accepted\"} 7\n\
                    sextant_hub_reports_total 1\n";
        assert_eq!(sum(text, "sextant_hub_checks_total", ""), 7.0);
        assert_eq!(sum(text, "sextant_hub_reports_total", ""), 8.0);
        assert_eq!(
            sum(text, "sextant_hub_checks_total", "front_door=\"mixer\""),
            3.0
        );
        assert_eq!(sum(text, "sextant_hub_checks", ""), 0.0);
    }
}
