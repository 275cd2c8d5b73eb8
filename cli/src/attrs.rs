//! Attribute arguments of `sextant check`: `name=value`, `map[key]=value`, typed by the vocabulary.

use std::collections::HashMap;

use anyhow::{Context, bail};
use sextant_attributes::{AttrType, Bag, Span, Time, Value};

/// Builds a bag from `name=value` arguments.
pub fn parse(args: &[String]) -> anyhow::Result<Bag> {
    let mut bag = Bag::new();
    let mut maps: HashMap<String, HashMap<String, String>> = HashMap::new();
    for arg in args {
        let (lhs, text) = arg
            .split_once('=')
            .with_context(|| format!("attribute {arg:?} is not name=value"))?;
        if let Some((name, key)) = lhs.strip_suffix(']').and_then(|l| l.split_once('[')) {
            maps.entry(name.to_string())
                .or_default()
                .insert(key.to_string(), text.to_string());
            continue;
        }
        let id = sextant_attributes::lookup(lhs).with_context(|| unknown(lhs))?;
        let value = match id.ty() {
            AttrType::String => Value::String(text.to_string()),
            AttrType::IpAddress => Value::Ip(
                text.parse()
                    .with_context(|| format!("{lhs}: {text:?} is not an IP address"))?,
            ),
            AttrType::Int64 => Value::Int64(
                text.parse()
                    .with_context(|| format!("{lhs}: {text:?} is not an integer"))?,
            ),
            AttrType::Double => Value::Double(
                text.parse()
                    .with_context(|| format!("{lhs}: {text:?} is not a number"))?,
            ),
            AttrType::Bool => Value::Bool(
                text.parse()
                    .with_context(|| format!("{lhs}: {text:?} is not true or false"))?,
            ),
            AttrType::Bytes => Value::Bytes(text.as_bytes().to_vec()),
            AttrType::Timestamp => {
                let t = humantime::parse_rfc3339(text)
                    .with_context(|| format!("{lhs}: {text:?} is not an RFC 3339 time"))?;
                let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                Value::Timestamp(Time {
                    seconds: i64::try_from(d.as_secs())?,
                    nanos: i32::try_from(d.subsec_nanos())?,
                })
            }
            AttrType::Duration => {
                let d = humantime::parse_duration(text)
                    .with_context(|| format!("{lhs}: {text:?} is not a duration"))?;
                Value::Duration(Span {
                    seconds: i64::try_from(d.as_secs())?,
                    nanos: i32::try_from(d.subsec_nanos())?,
                })
            }
            AttrType::StringMap => bail!("{lhs} is a map: write {lhs}[key]=value"),
        };
        bag.set(id, value)?;
    }
    for (name, map) in maps {
        let id = sextant_attributes::lookup(&name).with_context(|| unknown(&name))?;
        bag.set(id, Value::StringMap(map))
            .with_context(|| format!("{name}[..]"))?;
    }
    Ok(bag)
}

fn unknown(name: &str) -> String {
    match sextant_attributes::suggest(name) {
        Some(s) => format!("unknown attribute {name:?} (did you mean {s:?}?)"),
        None => format!("unknown attribute {name:?} (see docs/attributes.md)"),
    }
}
