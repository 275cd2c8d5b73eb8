//! Typed attribute values.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::vocabulary::AttrType;

/// A point in time: seconds and nanoseconds since the Unix epoch (as google.protobuf.Timestamp).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time {
    /// Seconds since the epoch.
    pub seconds: i64,
    /// Nanoseconds within the second, 0..1e9.
    pub nanos: i32,
}

/// A signed span of time (as google.protobuf.Duration).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span {
    /// Whole seconds.
    pub seconds: i64,
    /// Nanoseconds, with the same sign as `seconds`.
    pub nanos: i32,
}

/// An attribute value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// UTF-8 text.
    String(String),
    /// 64-bit integer.
    Int64(i64),
    /// 64-bit float.
    Double(f64),
    /// Boolean.
    Bool(bool),
    /// Bytes.
    Bytes(Vec<u8>),
    /// Point in time.
    Timestamp(Time),
    /// Span of time.
    Duration(Span),
    /// String to string map.
    StringMap(HashMap<String, String>),
    /// IP address.
    Ip(IpAddr),
}

impl Value {
    /// The vocabulary type this value has.
    pub fn ty(&self) -> AttrType {
        match self {
            Value::String(_) => AttrType::String,
            Value::Int64(_) => AttrType::Int64,
            Value::Double(_) => AttrType::Double,
            Value::Bool(_) => AttrType::Bool,
            Value::Bytes(_) => AttrType::Bytes,
            Value::Timestamp(_) => AttrType::Timestamp,
            Value::Duration(_) => AttrType::Duration,
            Value::StringMap(_) => AttrType::StringMap,
            Value::Ip(_) => AttrType::IpAddress,
        }
    }

    /// The value as text, when it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
}
