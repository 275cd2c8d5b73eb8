//! A workload identity: the service account of a namespace that a token or a certificate proves.

/// A workload identity: a service account of a namespace.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The namespace.
    pub namespace: String,
    /// The service account.
    pub service_account: String,
}

impl Identity {
    /// Its SPIFFE ID under `trust_domain`.
    pub fn spiffe_id(&self, trust_domain: &str) -> String {
        pilot_config::spiffe_id(trust_domain, &self.namespace, &self.service_account)
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.service_account)
    }
}
