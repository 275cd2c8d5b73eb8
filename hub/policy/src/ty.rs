//! What static analysis knows of a CEL expression's type, shared by the compiler and the function table.

use sextant_attributes::AttrType;

/// What static analysis knows of an expression's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    /// bool
    Bool,
    /// int
    Int,
    /// uint
    Uint,
    /// double
    Double,
    /// string
    String,
    /// bytes
    Bytes,
    /// timestamp
    Timestamp,
    /// duration
    Duration,
    /// map
    Map,
    /// list
    List,
    /// null
    Null,
    /// an IP address (`ip("10.0.0.1")`)
    Ip,
    /// an IP prefix (`cidr("10.0.0.0/8")`)
    Cidr,
    /// an optional value (`m[?"k"]`)
    Optional,
    /// unknown until run time
    Dyn,
}

impl Ty {
    pub(crate) fn of(t: AttrType) -> Ty {
        match t {
            AttrType::String | AttrType::IpAddress => Ty::String,
            AttrType::Int64 => Ty::Int,
            AttrType::Double => Ty::Double,
            AttrType::Bool => Ty::Bool,
            AttrType::Bytes => Ty::Bytes,
            AttrType::Timestamp => Ty::Timestamp,
            AttrType::Duration => Ty::Duration,
            AttrType::StringMap => Ty::Map,
        }
    }

    /// The CEL name of the type.
    pub fn name(self) -> &'static str {
        match self {
            Ty::Bool => "bool",
            Ty::Int => "int",
            Ty::Uint => "uint",
            Ty::Double => "double",
            Ty::String => "string",
            Ty::Bytes => "bytes",
            Ty::Timestamp => "timestamp",
            Ty::Duration => "duration",
            Ty::Map => "map",
            Ty::List => "list",
            Ty::Null => "null",
            Ty::Ip => "ip",
            Ty::Cidr => "cidr",
            Ty::Optional => "optional",
            Ty::Dyn => "dyn",
        }
    }

    pub(crate) fn numeric(self) -> bool {
        matches!(self, Ty::Int | Ty::Uint | Ty::Double)
    }

    pub(crate) fn comparable_with(self, other: Ty) -> bool {
        self == other
            || self == Ty::Dyn
            || other == Ty::Dyn
            || self == Ty::Null
            || other == Ty::Null
            || (self.numeric() && other.numeric())
    }
}
