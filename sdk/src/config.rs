//! Typed adapter configuration.

use serde::de::DeserializeOwned;

/// Parses `config` (the JSON text [`crate::Adapter::init`] receives) into `T`.
///
/// Empty text and `null` are read as `{}`, so a config struct whose fields all have defaults accepts an
/// `Adapter` without `spec.config`. Errors name the line and column, ready to return from `init`.
pub fn parse_config<T: DeserializeOwned>(config: &str) -> Result<T, String> {
    let text = config.trim();
    let text = if text.is_empty() || text == "null" {
        "{}"
    } else {
        text
    };
    serde_json::from_str(text).map_err(|e| format!("invalid config: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Cfg {
        #[serde(default)]
        name: Option<String>,
    }

    #[test]
    fn empty_and_null_are_defaults() {
        assert_eq!(parse_config::<Cfg>("").unwrap(), Cfg { name: None });
        assert_eq!(parse_config::<Cfg>(" null ").unwrap(), Cfg { name: None });
        assert_eq!(
            parse_config::<Cfg>(r#"{"name":"a"}"#)
                .unwrap()
                .name
                .as_deref(),
            Some("a")
        );
    }

    #[test]
    fn unknown_fields_are_named() {
        let e = parse_config::<Cfg>(r#"{"nmae":"a"}"#).unwrap_err();
        assert!(e.contains("nmae"), "{e}");
    }
}
