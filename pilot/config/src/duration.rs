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

/// Units Go's `time.ParseDuration` knows, longest spelling first so `ms` is not read as `m`.
const UNITS: [(&str, f64); 8] = [
    ("ns", 1e-9),
    ("us", 1e-6),
    ("µs", 1e-6),
    ("μs", 1e-6),
    ("ms", 1e-3),
    ("s", 1.0),
    ("m", 60.0),
    ("h", 3600.0),
];

/// Longest duration accepted: ten years, far beyond any timeout, and safe from float overflow.
const MAX_SECONDS: f64 = 10.0 * 365.0 * 86_400.0;

/// Parses `1s`, `0.5s`, `100ms`, `1m30s`, `2h`; `0` alone is zero.
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
    let mut rest = t;
    let mut seconds = 0.0_f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| bad("a number without a unit"))?;
        if num_len == 0 {
            return Err(bad("expected a number"));
        }
        let number: f64 = rest[..num_len]
            .parse()
            .map_err(|_| bad("not a decimal number"))?;
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
        seconds += number * scale;
        rest = &rest[unit_len..];
    }
    if !(0.0..=MAX_SECONDS).contains(&seconds) {
        return Err(bad("longer than ten years"));
    }
    Ok(StdDuration::from_secs_f64(seconds))
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

    #[test]
    fn displays_compactly() {
        assert_eq!(Duration(StdDuration::from_secs(7)).to_string(), "7s");
        assert_eq!(
            Duration(StdDuration::from_millis(1500)).to_string(),
            "1500ms"
        );
    }
}
