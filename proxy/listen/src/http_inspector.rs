//! Envoy's `http_inspector` listener filter, as Envoy 1.40 runs it (the Balsa HTTP/1 parser): whether a plain
//! connection starts with HTTP/2's prior-knowledge preface or an HTTP/1 request line, told from its first
//! bytes. The listener peeks at them (they stay in the socket for the chain that takes the connection) and
//! hands each longer view to the same [`Sniffer`], which reads only the bytes it has not read yet.
//!
//! What Envoy accepts as a request line: a method that is an RFC 9110 token (custom methods allowed, so every
//! method of Envoy's list and any other token), a target its URL check accepts (`/path`, `*`, `scheme://host
//! /path`, an authority after `CONNECT`), and either no version (HTTP/0.9) or `HTTP/d.d`, separated by any
//! run of bytes up to space, ended by LF (a CR before it is trailing whitespace). The line's protocol is
//! `http/1.1` when it ends in `HTTP/1.1`, else `http/1.0`. Envoy answers only once the line has ended; this
//! answers "not HTTP" at the first byte no such line could continue with, which Envoy would refuse at the
//! line's end (or close the connection on, past 64 KiB).

/// Envoy's bound on the bytes read for the request line (`MAX_INSPECT_SIZE`): past it the connection closes.
pub(crate) const MAX_INSPECT_BYTES: usize = 64 * 1024;
/// The first peek's size, doubled while the request line is unfinished (as Envoy grows its buffer).
pub(crate) const FIRST_PEEK_BYTES: usize = 1024;

/// HTTP/2's connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the inspector found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    /// A request line ending in `HTTP/1.1`.
    Http11,
    /// Any other request line (`HTTP/1.0`, HTTP/0.9 without a version, other `HTTP/d.d`).
    Http10,
    /// HTTP/2's prior-knowledge preface.
    H2c,
    /// Not HTTP.
    NotHttp,
    /// [`MAX_INSPECT_BYTES`] read without the end of a request line: Envoy closes the connection.
    TooLong,
}

impl Found {
    /// The application protocol chains match (`None`: the connection has none).
    pub(crate) fn application_protocol(self) -> Option<&'static str> {
        match self {
            Found::Http11 => Some("http/1.1"),
            Found::Http10 => Some("http/1.0"),
            Found::H2c => Some("h2c"),
            Found::NotHttp | Found::TooLong => None,
        }
    }
}

/// Where in a request line the reading is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    Start,
    Method,
    AfterMethod,
    Target(Url),
    AfterTarget,
    /// In the version, after this many of its bytes.
    Version(usize),
    AfterVersion,
}

/// Where in a request target the reading is (Envoy's `isUrlValid`, byte by byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Url {
    Start,
    Scheme,
    /// After the scheme's `:`, having read this many of the `//` that must follow.
    Slashes(u8),
    /// In the authority; `at`: its last byte was `@` (two in a row are refused).
    Host {
        at: bool,
    },
    Path,
}

/// Reads a connection's first bytes as they arrive.
#[derive(Debug)]
pub(crate) struct Sniffer {
    /// Bytes of the request line read so far.
    read: usize,
    line: Line,
    /// Whether the method is `CONNECT` (its target is an authority).
    connect: bool,
    /// Where the target starts and the version starts.
    target_start: usize,
    version_start: usize,
}

impl Default for Sniffer {
    fn default() -> Sniffer {
        Sniffer {
            read: 0,
            line: Line::Start,
            connect: false,
            target_start: 0,
            version_start: 0,
        }
    }
}

/// A byte that separates the request line's parts: Balsa takes any byte up to space.
fn separator(b: u8) -> bool {
    b <= b' '
}

/// An RFC 9110 token character (what Envoy allows in a method).
fn token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!$%&'()*+,-.:;=@[]_~".contains(&b)
}

impl Url {
    /// The state after `b` (never a separator), or `None` when no valid target starts so.
    fn next(self, b: u8, connect: bool) -> Option<Url> {
        let host = |at: bool| match b {
            b'/' | b'?' => Some(Url::Path),
            b'@' if at => None,
            _ if host_byte(b) => Some(Url::Host { at: b == b'@' }),
            _ => None,
        };
        match self {
            Url::Start => match b {
                b'/' | b'*' => Some(Url::Path),
                // CONNECT's target is an authority; any other's is a path or has a scheme.
                _ if connect => host(false),
                _ if b.is_ascii_alphabetic() => Some(Url::Scheme),
                _ => None,
            },
            Url::Scheme => match b {
                b':' => Some(Url::Slashes(0)),
                _ if b.is_ascii_alphanumeric() || b"+-.".contains(&b) => Some(Url::Scheme),
                _ => None,
            },
            Url::Slashes(n) => (b == b'/').then_some(if n == 0 {
                Url::Slashes(1)
            } else {
                Url::Host { at: false }
            }),
            Url::Host { at } => host(at),
            Url::Path => (b <= b'~').then_some(Url::Path),
        }
    }

    /// Whether a target may end here.
    fn complete(self) -> bool {
        matches!(self, Url::Host { .. } | Url::Path)
    }
}

impl Sniffer {
    /// Reads `seen`, the connection's first bytes (each call's a prefix of the next's): `None` while they
    /// do not tell yet.
    pub(crate) fn feed(&mut self, seen: &[u8]) -> Option<Found> {
        // Envoy looks for the preface first, on every read; bytes that leave it fall to the request line.
        let n = seen.len().min(H2_PREFACE.len());
        if seen[..n] == H2_PREFACE[..n] {
            return (n == H2_PREFACE.len()).then_some(Found::H2c);
        }
        while let Some(&b) = seen.get(self.read) {
            let found = self.step(seen, b);
            self.read += 1;
            if found.is_some() {
                return found;
            }
        }
        (seen.len() >= MAX_INSPECT_BYTES).then_some(Found::TooLong)
    }

    /// Reads byte `b` at `self.read` of `seen`: `Some` when the line is decided.
    fn step(&mut self, seen: &[u8], b: u8) -> Option<Found> {
        let i = self.read;
        let not_http = Some(Found::NotHttp);
        match self.line {
            // Envoy refuses a line starting with CR or LF, Balsa one starting with any other separator.
            Line::Start if token(b) => self.line = Line::Method,
            Line::Start => return not_http,
            // A method alone has no target, which Envoy's URL check refuses.
            Line::Method | Line::AfterMethod if b == b'\n' => return not_http,
            Line::Method if separator(b) => {
                self.connect = &seen[..i] == b"CONNECT";
                self.line = Line::AfterMethod;
            }
            Line::Method if token(b) => {}
            Line::Method => return not_http,
            Line::AfterMethod if separator(b) => {}
            Line::AfterMethod => {
                self.target_start = i;
                self.line = Line::Target(Url::Start);
                return self.step(seen, b);
            }
            Line::Target(url) if separator(b) => {
                if !url.complete() {
                    return not_http;
                }
                self.line = Line::AfterTarget;
                if b == b'\n' {
                    return Some(self.http09(&seen[..i]));
                }
            }
            Line::Target(url) => match url.next(b, self.connect) {
                Some(next) => self.line = Line::Target(next),
                None => return not_http,
            },
            Line::AfterTarget if b == b'\n' => return Some(self.http09(&seen[..i])),
            Line::AfterTarget if separator(b) => {}
            Line::AfterTarget => {
                self.version_start = i;
                self.line = Line::Version(0);
                return self.step(seen, b);
            }
            // `HTTP/` and a digit, a dot, a digit, then nothing but separators.
            Line::Version(8) if separator(b) => {
                self.line = Line::AfterVersion;
                return self.step(seen, b);
            }
            Line::Version(k) => {
                let fits = match k {
                    0..5 => b == b"HTTP/"[k],
                    5 | 7 => b.is_ascii_digit(),
                    6 => b == b'.',
                    _ => false,
                };
                if !fits {
                    return not_http;
                }
                self.line = Line::Version(k + 1);
            }
            Line::AfterVersion if b == b'\n' => {
                let version = &seen[self.version_start..self.version_start + 8];
                return Some(if version == b"HTTP/1.1" {
                    Found::Http11
                } else {
                    Found::Http10
                });
            }
            Line::AfterVersion if separator(b) => {}
            Line::AfterVersion => return not_http,
        }
        None
    }

    /// A line without a version (HTTP/0.9) ending at `line`'s end: Envoy's `isHttp11` reads whether the line
    /// ends in `HTTP/1.1`, which a target can.
    fn http09(&self, line: &[u8]) -> Found {
        let target = &line[self.target_start..];
        let end = target
            .iter()
            .rposition(|b| !separator(*b))
            .map_or(0, |last| last + 1);
        if target[..end].ends_with(b"HTTP/1.1") {
            Found::Http11
        } else {
            Found::Http10
        }
    }
}

#[cfg(test)]
mod tests;
