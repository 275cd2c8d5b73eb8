//! The hub's service port: as `--hub-service HOST:PORT` names it ([`HubService`], checked for syntax only),
//! and as each translation finds it in the registry ([`Hub`]), which the hub's cluster
//! ([`crate::cluster::add_hub`]) and the filters calling it ([`crate::hub::place`]) are made from.

use std::sync::Arc;

use pilot_config::{RegistrySnapshot, Service};

use crate::cluster_name;

/// The hub's service port as `--hub-service` names it, checked for syntax only (whether the registry has
/// it is known per translation: [`HubService::resolve`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HubService {
    /// The service's host name, e.g. `sextant-hub.sextant-system.svc.cluster.local`.
    pub host: String,
    /// The service port.
    pub port: u16,
}

/// Why `--hub-service` is not `HOST:PORT`.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum HubServiceError {
    /// No `:PORT` at the end.
    #[error("{0:?} is not HOST:PORT (e.g. sextant-hub.sextant-system.svc.cluster.local:9091)")]
    NoPort(String),
    /// The port is not a number from 1 to 65535.
    #[error("{0:?}: the port must be a number from 1 to 65535")]
    BadPort(String),
    /// The host is not a DNS name.
    #[error(
        "{0:?}: the host must be a DNS name (labels of letters, digits and '-', at most 63 characters each, 253 in all)"
    )]
    BadHost(String),
}

impl HubService {
    /// Parses `HOST:PORT` (pure: nothing is looked up).
    pub fn parse(text: &str) -> Result<HubService, HubServiceError> {
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| HubServiceError::NoPort(text.to_string()))?;
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| HubServiceError::BadPort(text.to_string()))?;
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if host.len() > 253 || !host.split('.').all(label_ok) {
            return Err(HubServiceError::BadHost(text.to_string()));
        }
        Ok(HubService {
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// The hub's service and port in `registry`, whatever namespaces the service is exported to (the hub
    /// is the mesh's, not an application's); `None` while the registry has no such service port.
    pub fn resolve<'a>(&self, registry: &'a RegistrySnapshot) -> Option<Hub<'a>> {
        let service = registry.service(&self.host)?;
        service.port(self.port)?;
        Some(Hub {
            service,
            port: self.port,
            cluster: cluster_name(self.port, None, &self.host),
        })
    }
}

impl std::fmt::Display for HubService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl std::str::FromStr for HubService {
    type Err = HubServiceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        HubService::parse(s)
    }
}

/// The hub's service port, found in the registry.
#[derive(Clone, Debug)]
pub struct Hub<'a> {
    /// The service.
    pub service: &'a Arc<Service>,
    /// The port.
    pub port: u16,
    /// Its cluster, `outbound|PORT||HOST`.
    pub cluster: String,
}

impl Hub<'_> {
    /// The `:authority` of calls to the hub: `HOST:PORT`.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.service.hostname, self.port)
    }
}
