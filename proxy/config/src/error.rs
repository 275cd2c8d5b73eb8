//! Why a resource was refused.

/// A resource the proxy refuses: which one, where in it, and why. Its `Display` is the NACK's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {name:?}: {}{reason}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct Error {
    /// The kind of resource (`Listener`, `Cluster`, …).
    pub kind: &'static str,
    /// Its name, or its position when it has none.
    pub name: String,
    /// The path of the offending field from the resource, e.g. `virtual_hosts[0].routes[2].match.safe_regex`.
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

/// The result of turning one part of a resource into the proxy's types: on failure, the path within the
/// part and the reason, completed into an [`Error`] by the resource's decoder.
pub(crate) type Partial<T> = Result<T, (String, String)>;

/// A failure at `path` for `reason`.
pub(crate) fn at<T>(path: impl Into<String>, reason: impl Into<String>) -> Partial<T> {
    Err((path.into(), reason.into()))
}

/// Prefixes the path of a failure inside a part with the part's own path.
pub(crate) fn within<T>(prefix: &str, result: Partial<T>) -> Partial<T> {
    result.map_err(|(path, reason)| {
        let path = if path.is_empty() {
            prefix.to_string()
        } else if path.starts_with('[') {
            format!("{prefix}{path}")
        } else {
            format!("{prefix}.{path}")
        };
        (path, reason)
    })
}
