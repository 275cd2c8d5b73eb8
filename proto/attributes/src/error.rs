//! Why an attribute bag could not be decoded.

/// An attribute bag that cannot be accepted. Every variant names the attribute or index at fault.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    /// The name is not in the vocabulary.
    #[error("unknown attribute `{name}`{}", hint(.suggestion))]
    UnknownAttribute {
        /// The name as sent.
        name: String,
        /// A close vocabulary name, when there is one.
        suggestion: Option<&'static str>,
    },
    /// The value's type is not the attribute's type.
    #[error("attribute `{name}` is a {expected} but a {got} value was sent")]
    WrongType {
        /// Attribute name.
        name: &'static str,
        /// Its vocabulary type.
        expected: &'static str,
        /// What was sent.
        got: &'static str,
    },
    /// An `AttributeValue` with no value set.
    #[error("attribute `{name}` has an empty value (no case of the oneof is set)")]
    EmptyValue {
        /// Attribute name.
        name: String,
    },
    /// An IP address attribute that is neither 4/16 bytes nor IP text.
    #[error(
        "attribute `{name}`: {detail} is not an IP address (send 4 or 16 bytes, or text like 10.0.0.1)"
    )]
    BadIp {
        /// Attribute name.
        name: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// A timestamp or duration whose nanos are out of range.
    #[error("attribute `{name}`: nanos {nanos} out of range")]
    BadNanos {
        /// Attribute name.
        name: &'static str,
        /// The nanos sent.
        nanos: i32,
    },
    /// The client's global dictionary is newer than the hub's.
    #[error(
        "compressed attributes use a global dictionary of {client} words but this hub knows {hub}: \
         upgrade the hub or send the plain form"
    )]
    DictionaryMismatch {
        /// Words the client claims.
        client: u32,
        /// Words this hub knows.
        hub: u32,
    },
    /// A dictionary index that names no word.
    #[error(
        "compressed attributes: word index {index} is out of range ({global} global words, {local} message words)"
    )]
    BadIndex {
        /// The index sent.
        index: i32,
        /// Global words usable.
        global: u32,
        /// Per-message words sent.
        local: usize,
    },
    /// One attribute given twice (possible in the compressed form, under two types).
    #[error("attribute `{name}` is given more than once")]
    Duplicate {
        /// Attribute name.
        name: &'static str,
    },
    /// Bytes that are not a valid protobuf encoding of the message (truncated, wrong wire type, bad UTF-8).
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// The message or field at fault (`ReportRequest.attributes[3]`).
        what: String,
        /// What was wrong.
        detail: &'static str,
    },
    /// Both plain and compressed forms in one request.
    #[error("send either `attributes` or `compressed`, not both")]
    BothForms,
}

fn hint(suggestion: &Option<&'static str>) -> String {
    match suggestion {
        Some(s) => format!(" (did you mean `{s}`?)"),
        None => " (see docs/attributes.md for the vocabulary)".to_string(),
    }
}
