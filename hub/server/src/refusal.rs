//! Why a native request was refused before it was decided: the `INVALID_ARGUMENT` a client can act on,
//! naming the message and the field at fault.

use tonic::Status;

/// Why a native request was refused before it was decided. Each variant names the message and, when known,
/// the field at fault; it becomes an `INVALID_ARGUMENT` status.
#[derive(Debug, PartialEq, thiserror::Error)]
pub(crate) enum RequestError {
    /// Bytes that are not a protobuf encoding of the message (garbage, a wrong wire type, truncated).
    #[error("malformed {path}: {detail}")]
    Malformed {
        /// The message and the field path where decoding failed (`CheckRequest.attributes.values`).
        path: String,
        /// What was wrong (`buffer underflow`).
        detail: String,
    },
    /// A message over the hub's size limit.
    #[error("{message} is {}; the hub accepts at most {limit}", size(*.bytes))]
    TooLarge {
        /// The message type (`CheckRequest`).
        message: &'static str,
        /// Its length as its gRPC frame declared it, when known.
        bytes: Option<usize>,
        /// The limit, in bytes.
        limit: usize,
    },
    /// What [`sextant_attributes::ReportWire`] found wrong, when prost did not name a field.
    #[error(transparent)]
    Report(sextant_attributes::DecodeError),
}

/// "N bytes", or "too large" when the size is unknown.
fn size(bytes: Option<usize>) -> String {
    bytes.map_or_else(|| "too large".to_string(), |n| format!("{n} bytes"))
}

impl RequestError {
    /// Restates prost's error for `message`: prost records the fields it was in as `Message.field` frames,
    /// innermost first, before the description; they are turned into one path from the top-level message
    /// (`CheckRequest.attributes.values: buffer underflow`). prost exposes the frames only through `Display`,
    /// so they are read back from its text; anything not shaped like a frame is kept as the description.
    pub(crate) fn malformed(message: &'static str, e: &prost::DecodeError) -> Self {
        let text = e.to_string();
        let mut rest = text
            .strip_prefix("failed to decode Protobuf message: ")
            .unwrap_or(&text);
        let mut frames = Vec::new();
        while let Some((head, tail)) = rest.split_once(": ")
            && let Some(frame) = frame(head)
        {
            frames.push(frame);
            rest = tail;
        }
        let mut path = frames
            .last()
            .map_or(message, |(outer, _)| *outer)
            .to_string();
        for (_, field) in frames.iter().rev() {
            path.push('.');
            path.push_str(field);
        }
        RequestError::Malformed {
            path,
            detail: rest.to_string(),
        }
    }

    pub(crate) fn into_status(self) -> Status {
        Status::invalid_argument(self.to_string())
    }
}

/// A `Message.field` frame of prost's error text.
fn frame(s: &str) -> Option<(&str, &str)> {
    let ident =
        |w: &str| !w.is_empty() && w.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    s.split_once('.').filter(|(m, f)| ident(m) && ident(f))
}

#[cfg(test)]
mod tests {
    use sextant_proto::mixer;

    use super::*;

    fn check_error(hex: &str) -> String {
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect();
        let e = <mixer::CheckRequest as prost::Message>::decode(bytes.as_slice())
            .expect_err("malformed");
        RequestError::malformed("CheckRequest", &e).to_string()
    }

    #[test]
    fn prost_errors_name_the_field_path_from_the_top() {
        assert_eq!(
            check_error("0aff01deadbeef"),
            "malformed CheckRequest.attributes: buffer underflow"
        );
        assert_eq!(
            check_error("0801"),
            "malformed CheckRequest.attributes: invalid wire type: Varint (expected LengthDelimited)"
        );
        // attributes { values { key: "ab", value: <claims 9 bytes, has 1> } }
        assert_eq!(
            check_error("0a090a070a02616212090a"),
            "malformed CheckRequest.attributes.values: buffer underflow"
        );
        // No field entered: the message is named.
        assert_eq!(
            check_error("07"),
            "malformed CheckRequest: invalid wire type value: 7"
        );
    }
}
