//! String and regex matchers, as Envoy's `StringMatcher` and `RegexMatcher` define them.

use regex::Regex;
use sextant_proto::envoy::r#type::matcher::v3 as pb;

use crate::error::{Partial, at};

/// Compiled regexes are bounded: a resource cannot make the proxy build an automaton of unbounded size.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// How a string value is compared.
#[derive(Debug, Clone)]
pub enum StringMatch {
    /// Equal to.
    Exact(String),
    /// Starts with.
    Prefix(String),
    /// Ends with.
    Suffix(String),
    /// Contains.
    Contains(String),
    /// The whole value matches (Envoy's `safe_regex`: RE2 syntax, anchored at both ends).
    Regex(Regex),
}

/// A [`StringMatch`] and whether case is ignored (never for regexes, as in Envoy).
#[derive(Debug, Clone)]
pub struct StringMatcher {
    /// The comparison.
    pub pattern: StringMatch,
    /// Compare ASCII case-insensitively.
    pub ignore_case: bool,
}

impl PartialEq for StringMatcher {
    fn eq(&self, other: &StringMatcher) -> bool {
        use StringMatch::*;
        self.ignore_case == other.ignore_case
            && match (&self.pattern, &other.pattern) {
                (Exact(a), Exact(b))
                | (Prefix(a), Prefix(b))
                | (Suffix(a), Suffix(b))
                | (Contains(a), Contains(b)) => a == b,
                (Regex(a), Regex(b)) => a.as_str() == b.as_str(),
                _ => false,
            }
    }
}

impl StringMatcher {
    /// A matcher of whole values by an RE2-syntax regex (Envoy's `safe_regex`), compiled as configuration's
    /// are; the error says why the pattern is refused.
    pub fn full_regex(pattern: &str) -> Result<StringMatcher, String> {
        Ok(StringMatcher {
            pattern: StringMatch::Regex(full_regex(pattern).map_err(|(_, why)| why)?),
            ignore_case: false,
        })
    }

    /// Whether `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        let fold = self.ignore_case;
        match &self.pattern {
            StringMatch::Exact(s) if fold => value.eq_ignore_ascii_case(s),
            StringMatch::Exact(s) => value == s,
            StringMatch::Prefix(s) => value.get(..s.len()).is_some_and(|head| {
                if fold {
                    head.eq_ignore_ascii_case(s)
                } else {
                    head == s
                }
            }),
            StringMatch::Suffix(s) => value
                .len()
                .checked_sub(s.len())
                .and_then(|start| value.get(start..))
                .is_some_and(|tail| {
                    if fold {
                        tail.eq_ignore_ascii_case(s)
                    } else {
                        tail == s
                    }
                }),
            StringMatch::Contains(s) if fold => {
                value.to_ascii_lowercase().contains(&s.to_ascii_lowercase())
            }
            StringMatch::Contains(s) => value.contains(s.as_str()),
            StringMatch::Regex(r) => r.is_match(value),
        }
    }
}

/// A regex that must match a whole value.
pub(crate) fn full_regex(pattern: &str) -> Partial<Regex> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .or_else(|e| at("regex", format!("invalid regex {pattern:?}: {e}")))
}

/// Converts a `StringMatcher`.
pub(crate) fn string_matcher(m: &pb::StringMatcher) -> Partial<StringMatcher> {
    use pb::string_matcher::MatchPattern as P;
    let pattern = match &m.match_pattern {
        Some(P::Exact(s)) => StringMatch::Exact(s.clone()),
        Some(P::Prefix(s)) => StringMatch::Prefix(s.clone()),
        Some(P::Suffix(s)) => StringMatch::Suffix(s.clone()),
        Some(P::Contains(s)) => StringMatch::Contains(s.clone()),
        Some(P::SafeRegex(r)) => {
            StringMatch::Regex(crate::error::within("safe_regex", full_regex(&r.regex))?)
        }
        Some(P::Custom(_)) => return at("custom", "custom string matchers are not implemented"),
        None => return at("", "a string matcher without a pattern"),
    };
    Ok(StringMatcher {
        pattern,
        ignore_case: m.ignore_case,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: StringMatch, ignore_case: bool) -> StringMatcher {
        StringMatcher {
            pattern,
            ignore_case,
        }
    }

    #[test]
    fn each_pattern_compares_as_envoy_does() {
        assert!(m(StringMatch::Exact("Jason".into()), false).matches("Jason"));
        assert!(!m(StringMatch::Exact("Jason".into()), false).matches("jason"));
        assert!(m(StringMatch::Exact("Jason".into()), true).matches("jASON"));
        assert!(m(StringMatch::Prefix("/api".into()), false).matches("/api/v1"));
        assert!(!m(StringMatch::Prefix("/api".into()), false).matches("/ap"));
        assert!(m(StringMatch::Suffix(".js".into()), true).matches("A.JS"));
        assert!(!m(StringMatch::Suffix("long suffix".into()), false).matches("short"));
        assert!(m(StringMatch::Contains("mid".into()), true).matches("aMIDb"));
        let r = full_regex("v[0-9]+").map_err(|e| e.1).expect("valid regex");
        assert!(m(StringMatch::Regex(r.clone()), false).matches("v12"));
        assert!(
            !m(StringMatch::Regex(r), false).matches("xv12"),
            "a regex matches the whole value"
        );
        // Multi-byte characters at a prefix boundary do not panic.
        assert!(!m(StringMatch::Prefix("ab".into()), false).matches("é"));
    }

    #[test]
    fn an_invalid_regex_is_refused_with_its_pattern() {
        let (path, reason) = full_regex("(unclosed").expect_err("invalid");
        assert_eq!(path, "regex");
        assert!(reason.contains("(unclosed"), "{reason}");
    }
}
