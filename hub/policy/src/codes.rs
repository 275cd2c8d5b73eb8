//! google.rpc status codes by name, and the HTTP status each usually maps to.

/// (name, code, HTTP status) of every google.rpc code.
const CODES: &[(&str, i32, u16)] = &[
    ("OK", 0, 200),
    ("CANCELLED", 1, 499),
    ("UNKNOWN", 2, 500),
    ("INVALID_ARGUMENT", 3, 400),
    ("DEADLINE_EXCEEDED", 4, 504),
    ("NOT_FOUND", 5, 404),
    ("ALREADY_EXISTS", 6, 409),
    ("PERMISSION_DENIED", 7, 403),
    ("RESOURCE_EXHAUSTED", 8, 429),
    ("FAILED_PRECONDITION", 9, 400),
    ("ABORTED", 10, 409),
    ("OUT_OF_RANGE", 11, 400),
    ("UNIMPLEMENTED", 12, 501),
    ("INTERNAL", 13, 500),
    ("UNAVAILABLE", 14, 503),
    ("DATA_LOSS", 15, 500),
    ("UNAUTHENTICATED", 16, 401),
];

/// The numeric code and usual HTTP status of a code name.
pub fn by_name(name: &str) -> Option<(i32, u16)> {
    CODES
        .iter()
        .find(|(n, ..)| *n == name)
        .map(|(_, c, h)| (*c, *h))
}

/// The name of a numeric code.
pub fn name_of(code: i32) -> &'static str {
    CODES
        .iter()
        .find(|(_, c, _)| *c == code)
        .map_or("UNKNOWN", |(n, ..)| n)
}

/// The valid names, for error messages.
pub fn names() -> String {
    CODES
        .iter()
        .skip(1)
        .map(|(n, ..)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// PERMISSION_DENIED.
pub const PERMISSION_DENIED: i32 = 7;
/// RESOURCE_EXHAUSTED.
pub const RESOURCE_EXHAUSTED: i32 = 8;
/// UNAVAILABLE.
pub const UNAVAILABLE: i32 = 14;

/// The google.rpc code that usually goes with an HTTP error status (PERMISSION_DENIED when none does).
pub fn for_http(status: u16) -> i32 {
    match status {
        400 => 3,
        401 => 16,
        404 => 5,
        409 => 10,
        429 => RESOURCE_EXHAUSTED,
        501 => 12,
        503 => UNAVAILABLE,
        504 => 4,
        _ => PERMISSION_DENIED,
    }
}
