//! String matches (compiled, regexes in RE2 syntax), header operations and subnets of routes.

use regex::RegexBuilder;

use super::Errs;
use crate::model::Matcher;
use crate::types::{Headers, StringMatch, VirtualServiceSpec};

/// The errors of one VirtualService.
pub(super) type E<'a> = Errs<'a, VirtualServiceSpec>;

/// Compiled size limit of one regex (the `regex` crate's default), so a pathological pattern cannot take
/// unbounded memory. Perl classes (`\w`, `\d`) are Unicode-aware here and ASCII-only in RE2, which makes
/// their compiled programs larger; `\w{1,100}` still fits.
pub const REGEX_SIZE_LIMIT: usize = 10 * 1024 * 1024;

/// Compiles a string match. `present_ok`: `{}` means "present" (headers, query parameters).
pub(super) fn string_match(
    e: &mut E<'_>,
    field: &str,
    sm: &StringMatch,
    present_ok: bool,
    ignore_case: bool,
) -> Option<Matcher> {
    match (&sm.exact, &sm.prefix, &sm.regex) {
        (None, None, None) if present_ok => Some(Matcher::Present),
        (None, None, None) => {
            e.push(field, "empty match; set exact, prefix or regex");
            None
        }
        (Some(s), None, None) => Some(Matcher::Exact(s.clone())),
        (None, Some(s), None) => Some(Matcher::Prefix(s.clone())),
        (None, None, Some(r)) => match RegexBuilder::new(&format!("^(?:{r})$"))
            .case_insensitive(ignore_case)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
        {
            Ok(re) => Some(Matcher::Regex(re)),
            Err(err) => {
                let text = err.to_string();
                let why = text
                    .lines()
                    .rev()
                    .find_map(|l| l.strip_prefix("error: "))
                    .unwrap_or(&text);
                e.push(
                    &format!("{field}.regex"),
                    format!("invalid regex {r:?} (RE2 syntax): {why}"),
                );
                None
            }
        },
        _ => {
            e.push(field, "set only one of exact, prefix and regex");
            None
        }
    }
}

pub(super) fn headers(e: &mut E<'_>, field: &str, h: &Headers) {
    for (which, ops) in [("request", &h.request), ("response", &h.response)] {
        let Some(ops) = ops else { continue };
        let names = ops
            .set
            .keys()
            .chain(ops.add.keys())
            .chain(ops.remove.iter());
        for name in names {
            if name.is_empty() || name.bytes().any(|b| !b.is_ascii_graphic()) {
                e.push(
                    &format!("{field}.{which}"),
                    format!("{name:?} is not a header name"),
                );
            }
        }
    }
}

pub(super) fn subnet_problem(s: &str) -> Option<String> {
    let (addr, len) = s.split_once('/').unwrap_or((s, ""));
    let Ok(ip) = addr.parse::<std::net::IpAddr>() else {
        return Some(format!("{s:?} is not an IP address or CIDR"));
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if !len.is_empty() && len.parse::<u8>().map_or(true, |l| l > max) {
        return Some(format!("{s:?}: prefix length must be 0-{max}"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_patterns_fit_the_size_limit() {
        for p in [
            "/api/v[0-9]+/.*",
            r"\w+@\w+\.example\.com",
            "[a-z0-9-]{1,64}",
            "(?i)jason|admin",
            r".*\.(png|jpe?g|gif|svg)",
            r"\w{1,100}",
        ] {
            let built = RegexBuilder::new(&format!("^(?:{p})$"))
                .size_limit(REGEX_SIZE_LIMIT)
                .build();
            assert!(built.is_ok(), "{p}: {built:?}");
        }
        assert!(
            RegexBuilder::new(r"\w{1000}\w{1000}")
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .is_err(),
            "a pathological pattern is refused"
        );
    }

    #[test]
    fn subnets() {
        assert_eq!(subnet_problem("10.0.0.0/8"), None);
        assert_eq!(subnet_problem("10.1.2.3"), None);
        assert_eq!(subnet_problem("fd00::/64"), None);
        assert!(subnet_problem("fd00::/129").is_some());
        assert!(subnet_problem("ten/8").is_some());
    }
}
