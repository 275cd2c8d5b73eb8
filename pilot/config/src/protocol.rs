//! Istio's port protocols, and how a port's name decides its protocol when `protocol` is not written.

use std::fmt;

/// What a gateway server on a port does with its connections; one port has one kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    /// Plain HTTP (`HTTP`, `HTTP2`, `GRPC`, `GRPC-WEB`), routed by VirtualService `http` routes.
    Http,
    /// TLS terminated and HTTP behind it (`HTTPS`), a filter chain per server chosen by SNI.
    Https,
    /// Opaque TCP (`TCP`, `MONGO`, `MYSQL`, `REDIS`), forwarded by VirtualService `tcp` routes.
    Tcp,
    /// TLS passed through untouched (`TLS`, mode `PASSTHROUGH`), a filter chain per SNI host of the
    /// VirtualService `tls` routes.
    Tls,
}

impl ServerKind {
    /// The kind of a server whose port says `protocol`; `None` for protocols gateways do not serve yet.
    pub fn of(protocol: &str) -> Option<ServerKind> {
        match Protocol::parse(protocol)? {
            Protocol::Http | Protocol::Http2 | Protocol::Grpc | Protocol::GrpcWeb => {
                Some(ServerKind::Http)
            }
            Protocol::Https => Some(ServerKind::Https),
            Protocol::Tcp | Protocol::Mongo | Protocol::Mysql | Protocol::Redis => {
                Some(ServerKind::Tcp)
            }
            Protocol::Tls => Some(ServerKind::Tls),
            Protocol::Udp | Protocol::Auto => None,
        }
    }

    /// How errors name it.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerKind::Http => "HTTP",
            ServerKind::Https => "HTTPS",
            ServerKind::Tcp => "TCP",
            ServerKind::Tls => "TLS",
        }
    }
}

/// The protocol a service port speaks, as Istio names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// HTTP/1.1 (and HTTP/2 when the client upgrades).
    Http,
    /// HTTP/2 (prior knowledge).
    Http2,
    /// gRPC (HTTP/2).
    Grpc,
    /// gRPC-Web (HTTP/1.1 or HTTP/2).
    GrpcWeb,
    /// HTTPS: TLS the proxy does not terminate, routed by SNI.
    Https,
    /// TLS, routed by SNI.
    Tls,
    /// Opaque TCP.
    Tcp,
    /// UDP (Istio does not proxy it; listed so a port naming it is not mistaken for TCP).
    Udp,
    /// MongoDB (proxied as TCP).
    Mongo,
    /// MySQL (proxied as TCP).
    Mysql,
    /// Redis (proxied as TCP).
    Redis,
    /// Not declared (no `protocol`, a port name that names none): as Istio, each connection is sniffed —
    /// HTTP/1.x and HTTP/2 (prior knowledge) are routed as HTTP, anything else proxied as TCP. Never
    /// written, so not in [`Protocol::ALL`].
    Auto,
}

impl Protocol {
    /// Every protocol, for error messages.
    pub const ALL: [Protocol; 11] = [
        Protocol::Http,
        Protocol::Http2,
        Protocol::Grpc,
        Protocol::GrpcWeb,
        Protocol::Https,
        Protocol::Tls,
        Protocol::Tcp,
        Protocol::Udp,
        Protocol::Mongo,
        Protocol::Mysql,
        Protocol::Redis,
    ];

    /// Istio's spelling (`HTTP`, `HTTP2`, `GRPC`, `GRPC-WEB`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "HTTP",
            Protocol::Http2 => "HTTP2",
            Protocol::Grpc => "GRPC",
            Protocol::GrpcWeb => "GRPC-WEB",
            Protocol::Https => "HTTPS",
            Protocol::Tls => "TLS",
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Mongo => "MONGO",
            Protocol::Mysql => "MYSQL",
            Protocol::Redis => "REDIS",
            Protocol::Auto => "auto",
        }
    }

    /// Reads a `protocol` field, case-insensitively as Istio does; `None` when unknown.
    pub fn parse(text: &str) -> Option<Protocol> {
        Protocol::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(text))
    }

    /// The protocol of a port: `protocol` when written, else from the name. Istio's convention: a name
    /// `<protocol>[-<suffix>]` (`http`, `http-web`, `grpc-api`, `grpc-web`, `tcp-db`, `mysql`) decides;
    /// any other name, or none, means [`Protocol::Auto`] (sniffed per connection).
    pub fn of_port(protocol: Option<&str>, name: Option<&str>) -> Option<Protocol> {
        match protocol {
            Some(p) => Protocol::parse(p),
            None => Some(name.map_or(Protocol::Auto, Protocol::from_port_name)),
        }
    }

    /// The protocol a port name implies (see [`Protocol::of_port`]); [`Protocol::Auto`] when it implies
    /// none.
    pub fn from_port_name(name: &str) -> Protocol {
        let lower = name.to_ascii_lowercase();
        // `grpc-web` is itself a protocol whose spelling contains the separator.
        if lower == "grpc-web" || lower.starts_with("grpc-web-") {
            return Protocol::GrpcWeb;
        }
        let prefix = lower.split('-').next().unwrap_or_default();
        Protocol::parse(prefix).unwrap_or(Protocol::Auto)
    }

    /// Whether the proxy routes this port with HTTP routes (VirtualService `http`), not TCP ones.
    pub fn is_http(self) -> bool {
        matches!(
            self,
            Protocol::Http | Protocol::Http2 | Protocol::Grpc | Protocol::GrpcWeb
        )
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_names_decide() {
        for (name, want) in [
            ("http", Protocol::Http),
            ("http-web", Protocol::Http),
            ("HTTP2", Protocol::Http2),
            ("http2-api", Protocol::Http2),
            ("grpc", Protocol::Grpc),
            ("grpc-api", Protocol::Grpc),
            ("grpc-web", Protocol::GrpcWeb),
            ("grpc-web-ui", Protocol::GrpcWeb),
            ("https-admin", Protocol::Https),
            ("tls", Protocol::Tls),
            ("mongo-primary", Protocol::Mongo),
            ("mysql", Protocol::Mysql),
            ("redis-cache", Protocol::Redis),
            ("tcp-db", Protocol::Tcp),
            ("web", Protocol::Auto),
            ("httpx", Protocol::Auto),
            ("", Protocol::Auto),
        ] {
            assert_eq!(Protocol::from_port_name(name), want, "{name}");
        }
    }

    #[test]
    fn written_protocol_wins_over_the_name() {
        assert_eq!(
            Protocol::of_port(Some("HTTP"), Some("tcp-x")),
            Some(Protocol::Http)
        );
        assert_eq!(
            Protocol::of_port(Some("grpc-web"), None),
            Some(Protocol::GrpcWeb)
        );
        assert_eq!(Protocol::of_port(Some("SCTP"), Some("http")), None);
        assert_eq!(Protocol::of_port(None, None), Some(Protocol::Auto));
        assert_eq!(Protocol::parse("auto"), None, "never written");
        assert!(Protocol::Grpc.is_http() && !Protocol::Tls.is_http());
    }
}
