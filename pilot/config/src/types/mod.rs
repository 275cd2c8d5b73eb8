//! Serde types of Istio's `networking.istio.io` kinds as users write them (the `spec` of each resource).
//!
//! Every type refuses fields it does not know, so a field Istio has that Sextant does not model yet is an error
//! naming that field, never silently ignored. Field names and enum spellings are Istio's.

mod common;
mod destination_rule;
mod gateway;
mod labels;
mod security;
mod service_entry;
mod sidecar;
mod virtual_service;

pub use common::{Destination, HeaderOperations, Headers, Percent, PortSelector, StringMatch};
pub use destination_rule::{
    ClientTlsSettings, ConnectionPoolSettings, ConsistentHash, DestinationRuleSpec, HttpCookie,
    HttpSettings, LoadBalancerSettings, OutlierDetection, PortTrafficPolicy, SimpleLb, Subset,
    TcpSettings, TlsMode, TrafficPolicy,
};
pub use gateway::{GatewayPort, GatewaySpec, Server, ServerTlsMode, ServerTlsSettings};
pub use labels::Labels;
pub use security::{
    AuthorizationAction, AuthorizationPolicySpec, Condition, From, MatchLabels, MtlsMode,
    MutualTls, Operation, PeerAuthenticationSpec, Rule, Source, To,
};
pub use service_entry::{
    Location, Resolution, ServiceEntrySpec, ServicePort, WorkloadEntrySpec, WorkloadSelector,
};
pub use sidecar::{
    CaptureMode, EgressListener, IngressListener, OutboundMode, OutboundTrafficPolicy, SidecarPort,
    SidecarSpec,
};
pub use virtual_service::{
    Abort, CorsPolicy, Delay, Fault, HttpMatch, HttpRedirect, HttpRetry, HttpRewrite, HttpRoute,
    HttpRouteDestination, L4Match, TcpRoute, TlsMatch, TlsRoute, VirtualServiceSpec,
    WeightedDestination,
};
