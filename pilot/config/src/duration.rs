//! Durations as Istio writes them: a sequence of decimal numbers each with a unit, as Go's
//! `time.ParseDuration` reads them (`1s`, `0.5s`, `100ms`, `1m30s`, `1h`), never negative.

use std::fmt;
use std::time::Duration as StdDuration;

use serde::{Deserialize, Deserializer};

/// A duration written the Istio way (`"1s"`, `"0.5s"`, `"100ms"`, `"1m30s"`), to millisecond precision as
/// Istio requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub StdDuration);

impl Duration {
    /// The standard library duration.
    pub fn get(self) -> StdDuration {
        self.0
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.subsec_nanos() == 0 {
            write!(f, "{}s", d.as_secs())
        } else if d.subsec_nanos().is_multiple_of(1_000_000) {
            write!(f, "{}ms", d.as_millis())
        } else {
            write!(f, "{}ns", d.as_nanos())
        }
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let d = parse(&text).map_err(serde::de::Error::custom)?;
        if !d.subsec_nanos().is_multiple_of(1_000_000) {
            return Err(serde::de::Error::custom(format!(
                "{text:?} is finer than a millisecond; Istio durations have millisecond precision"
            )));
        }
        Ok(Duration(d))
    }
}

/// A string in the schema (the field table of docs/istio-fields.md).
impl schemars::JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "format": "duration"})
    }
}

/// Units Go's `time.ParseDuration` knows, in nanoseconds.
const UNITS: [(&str, u128); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Longest duration accepted, in seconds: ten years, far beyond any timeout.
const MAX_SECONDS: u64 = 10 * 365 * 86_400;

/// Parses `1s`, `0.5s`, `100ms`, `1m30s`, `2h`; `0` alone is zero. Exact: decimal fractions are computed in
/// integer nanoseconds (digits beyond a nanosecond are dropped), never through floating point.
pub fn parse(text: &str) -> Result<StdDuration, String> {
    let bad = |why: &str| {
        format!("{text:?} is not a duration ({why}); write e.g. 1s, 0.5s, 100ms, 1m30s")
    };
    let t = text.trim();
    if t == "0" {
        return Ok(StdDuration::ZERO);
    }
    if t.is_empty() {
        return Err(bad("empty"));
    }
    let max_nanos = u128::from(MAX_SECONDS) * 1_000_000_000;
    let mut rest = t;
    let mut nanos: u128 = 0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| bad("a number without a unit"))?;
        let (whole, frac) = rest[..num_len]
            .split_once('.')
            .unwrap_or((&rest[..num_len], ""));
        if (whole.is_empty() && frac.is_empty()) || frac.contains('.') {
            return Err(bad(if num_len == 0 {
                "expected a number"
            } else {
                "not a decimal number"
            }));
        }
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let scale = UNITS
            .iter()
            .find(|(u, _)| *u == unit)
            .map(|(_, s)| *s)
            .ok_or_else(|| bad(&format!("unknown unit {unit:?}; use h, m, s, ms, us or ns")))?;
        rest = &rest[unit_len..];
        // More digits than this cannot matter below a nanosecond, and more whole digits exceed the maximum.
        if whole.len() > 20 {
            return Err(bad("longer than ten years"));
        }
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| bad("not a decimal number"))?
        };
        let frac = &frac[..frac.len().min(18)];
        let frac_nanos = if frac.is_empty() {
            0
        } else {
            let digits: u128 = frac.parse().map_err(|_| bad("not a decimal number"))?;
            digits * scale / 10u128.pow(frac.len() as u32)
        };
        nanos = nanos
            .saturating_add(whole.saturating_mul(scale))
            .saturating_add(frac_nanos);
        if nanos > max_nanos {
            return Err(bad("longer than ten years"));
        }
    }
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| bad("longer than ten years"))?;
    let sub = u32::try_from(nanos % 1_000_000_000).map_err(|_| bad("not a decimal number"))?;
    Ok(StdDuration::new(secs, sub))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_spellings() {
        assert_eq!(parse("1s").unwrap(), StdDuration::from_secs(1));
        assert_eq!(parse("0.5s").unwrap(), StdDuration::from_millis(500));
        assert_eq!(parse("100ms").unwrap(), StdDuration::from_millis(100));
        assert_eq!(parse("1m30s").unwrap(), StdDuration::from_secs(90));
        assert_eq!(parse("2h").unwrap(), StdDuration::from_secs(7200));
        assert_eq!(parse("250us").unwrap(), StdDuration::from_micros(250));
        assert_eq!(parse("0").unwrap(), StdDuration::ZERO);
        assert_eq!(parse("1.1s").unwrap(), StdDuration::from_millis(1100));
        assert_eq!(parse(".5s").unwrap(), StdDuration::from_millis(500));
        assert_eq!(parse("1.5h").unwrap(), StdDuration::from_secs(5400));
    }

    #[test]
    fn refusals_say_why() {
        for (text, why) in [
            ("", "empty"),
            ("10", "without a unit"),
            ("1d", "unknown unit \"d\""),
            ("-1s", "expected a number"),
            ("1.2.3s", "not a decimal"),
            ("999999999h", "ten years"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn fields_take_milliseconds_at_most() {
        let d: Duration = serde_json::from_value(serde_json::json!("1.5s")).unwrap();
        assert_eq!(d.get(), StdDuration::from_millis(1500));
        let err = serde_json::from_value::<Duration>(serde_json::json!("250us")).unwrap_err();
        assert!(err.to_string().contains("millisecond precision"), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn display_parses_back(ms in 0u64..10 * 365 * 86_400_000) {
            let d = Duration(StdDuration::from_millis(ms));
            proptest::prop_assert_eq!(parse(&d.to_string()).unwrap(), d.0);
        }

        #[test]
        fn never_panics(text in "[0-9.a-zµ]{0,12}") {
            let _ = parse(&text);
        }
    }

    #[test]
    fn displays_compactly() {
        assert_eq!(Duration(StdDuration::from_secs(7)).to_string(), "7s");
        assert_eq!(
            Duration(StdDuration::from_millis(1500)).to_string(),
            "1500ms"
        );
    }
}
