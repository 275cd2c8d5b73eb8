//! The plain wire form (`sextant.mixer.v1.Attributes`): attribute names to typed values.

use std::net::IpAddr;

use sextant_proto::google::protobuf as pbwk;
use sextant_proto::mixer::{self, attribute_value::Value as Pv};

use crate::bag::Bag;
use crate::error::DecodeError;
use crate::value::{Span, Time, Value};
use crate::vocabulary::{AttrId, AttrType};

/// Decodes the plain form, taking ownership so that strings move into the bag without copies.
pub fn from_plain(attrs: mixer::Attributes) -> Result<Bag, DecodeError> {
    let mut bag = Bag::new();
    for (name, value) in attrs.values {
        let id = crate::lookup(&name).ok_or_else(|| DecodeError::UnknownAttribute {
            suggestion: crate::suggest(&name),
            name: name.clone(),
        })?;
        let Some(value) = value.value else {
            return Err(DecodeError::EmptyValue { name });
        };
        let value = typed(id, value)?;
        bag.set(id, value)?;
    }
    Ok(bag)
}

/// Encodes a bag in the plain form.
pub fn to_plain(bag: &Bag) -> mixer::Attributes {
    let values = bag
        .iter()
        .map(|(id, v)| {
            let pv = match v {
                Value::String(s) => Pv::StringValue(s.clone()),
                Value::Int64(i) => Pv::Int64Value(*i),
                Value::Double(d) => Pv::DoubleValue(*d),
                Value::Bool(b) => Pv::BoolValue(*b),
                Value::Bytes(b) => Pv::BytesValue(b.clone()),
                Value::Timestamp(t) => Pv::TimestampValue(timestamp_to_pb(*t)),
                Value::Duration(d) => Pv::DurationValue(duration_to_pb(*d)),
                Value::StringMap(m) => Pv::StringMapValue(mixer::StringMap { entries: m.clone() }),
                Value::Ip(ip) => Pv::BytesValue(ip_bytes(*ip)),
            };
            (
                id.name().to_string(),
                mixer::AttributeValue { value: Some(pv) },
            )
        })
        .collect();
    mixer::Attributes { values }
}

/// Converts one wire value to the attribute's type, accepting the IP address spellings.
fn typed(id: AttrId, value: Pv) -> Result<Value, DecodeError> {
    let v = match value {
        Pv::StringValue(s) if id.ty() == AttrType::IpAddress => Value::Ip(parse_ip_text(id, &s)?),
        Pv::BytesValue(b) if id.ty() == AttrType::IpAddress => Value::Ip(parse_ip_bytes(id, &b)?),
        Pv::StringValue(s) => Value::String(s),
        Pv::Int64Value(i) => Value::Int64(i),
        Pv::DoubleValue(d) => Value::Double(d),
        Pv::BoolValue(b) => Value::Bool(b),
        Pv::BytesValue(b) => Value::Bytes(b),
        Pv::TimestampValue(t) => Value::Timestamp(timestamp_from_pb(id, t)?),
        Pv::DurationValue(d) => Value::Duration(duration_from_pb(id, d)?),
        Pv::StringMapValue(m) => Value::StringMap(m.entries),
    };
    Ok(v)
}

pub(crate) fn parse_ip_text(id: AttrId, s: &str) -> Result<IpAddr, DecodeError> {
    s.parse().map_err(|_| DecodeError::BadIp {
        name: id.name(),
        detail: format!("text {s:?}"),
    })
}

pub(crate) fn parse_ip_bytes(id: AttrId, b: &[u8]) -> Result<IpAddr, DecodeError> {
    if let Ok(v4) = <[u8; 4]>::try_from(b) {
        Ok(IpAddr::from(v4))
    } else if let Ok(v6) = <[u8; 16]>::try_from(b) {
        Ok(IpAddr::from(v6))
    } else {
        Err(DecodeError::BadIp {
            name: id.name(),
            detail: format!("{} bytes", b.len()),
        })
    }
}

pub(crate) fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

pub(crate) fn timestamp_from_pb(id: AttrId, t: pbwk::Timestamp) -> Result<Time, DecodeError> {
    if !(0..1_000_000_000).contains(&t.nanos) {
        return Err(DecodeError::BadNanos {
            name: id.name(),
            nanos: t.nanos,
        });
    }
    Ok(Time {
        seconds: t.seconds,
        nanos: t.nanos,
    })
}

pub(crate) fn duration_from_pb(id: AttrId, d: pbwk::Duration) -> Result<Span, DecodeError> {
    if d.nanos.unsigned_abs() >= 1_000_000_000
        || (d.seconds != 0 && d.nanos != 0 && d.seconds.signum() != i64::from(d.nanos.signum()))
    {
        return Err(DecodeError::BadNanos {
            name: id.name(),
            nanos: d.nanos,
        });
    }
    Ok(Span {
        seconds: d.seconds,
        nanos: d.nanos,
    })
}

pub(crate) fn timestamp_to_pb(t: Time) -> pbwk::Timestamp {
    pbwk::Timestamp {
        seconds: t.seconds,
        nanos: t.nanos,
    }
}

pub(crate) fn duration_to_pb(d: Span) -> pbwk::Duration {
    pbwk::Duration {
        seconds: d.seconds,
        nanos: d.nanos,
    }
}
