//! The JSON line of one log entry.

use std::fmt::Write as _;

use sextant_adapter_sdk::{LogRef, Value};

const FIXED_KEYS: [&str; 4] = ["adapter", "name", "severity", "time"];

/// Appends the JSON line (with its `\n`) of `entry` to `out`.
pub fn json_line(out: &mut Vec<u8>, adapter: &str, entry: &LogRef<'_, '_>) {
    let mut line = String::with_capacity(256);
    line.push('{');
    key_str(&mut line, "adapter", adapter);
    line.push(',');
    key_str(&mut line, "name", entry.name());
    line.push(',');
    key_str(&mut line, "severity", entry.severity().as_str());
    line.push(',');
    key_str(&mut line, "time", &rfc3339(entry.time_nanos() as i64));
    for f in entry.fields() {
        line.push(',');
        if FIXED_KEYS.contains(&f.key) {
            string(&mut line, &format!("field.{}", f.key));
        } else {
            string(&mut line, f.key);
        }
        line.push(':');
        value(&mut line, f.value);
    }
    line.push_str("}\n");
    out.extend_from_slice(line.as_bytes());
}

fn key_str(out: &mut String, key: &str, v: &str) {
    string(out, key);
    out.push(':');
    string(out, v);
}

fn string(out: &mut String, s: &str) {
    // serde_json's escaping; serializing a &str cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

fn value(out: &mut String, v: Value<'_>) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Str(s) => string(out, s),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        // JSON has no NaN or infinity.
        Value::Double(d) if !d.is_finite() => out.push_str("null"),
        Value::Double(d) => {
            let _ = write!(out, "{d:?}");
        }
        Value::Bool(b) => {
            let _ = write!(out, "{b}");
        }
        Value::Bytes(b) => {
            out.push('"');
            for byte in b {
                let _ = write!(out, "{byte:02x}");
            }
            out.push('"');
        }
        Value::Timestamp(ns) => string(out, &rfc3339(ns)),
        Value::Duration(ns) => {
            let sign = if ns < 0 { "-" } else { "" };
            let abs = ns.unsigned_abs();
            let _ = write!(
                out,
                "\"{sign}{}.{:09}s\"",
                abs / 1_000_000_000,
                abs % 1_000_000_000
            );
        }
    }
}

/// RFC 3339 UTC time with nanoseconds, from nanoseconds since the Unix epoch.
pub fn rfc3339(unix_nanos: i64) -> String {
    let secs = unix_nanos.div_euclid(1_000_000_000);
    let nanos = unix_nanos.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}
