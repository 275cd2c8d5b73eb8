//! Pilot's ADS server: serves immutable, versioned [`Snapshot`]s of Envoy v3 resources over
//! `envoy.service.discovery.v3.AggregatedDiscoveryService`, both `StreamAggregatedResources` (state of the
//! world) and `DeltaAggregatedResources` (incremental).
//!
//! Data flow: pilot's translator builds one snapshot per proxy view and publishes it through a
//! [`SnapshotSource`] (checked [`Snapshot::consistent`] first); each stream's task wakes on the source's
//! change signal, asks it for the proxy's snapshot, and sends only the types (state of the world) or the
//! resources (delta) whose versions changed for that proxy, in push order (CDS, EDS, LDS, RDS). Requests
//! carry acknowledgements: an ACK records the version the proxy runs, a NACK is logged and counted with its
//! error detail, and nothing is resent until the configuration changes (the proxy keeps its last good
//! configuration). Streams wait for a [`PushBudget`] of bytes on their way to proxies (released by the
//! proxies' answers), so a change reaching thousands of proxies is served in turn within bounded memory, and
//! resources are shared, never copied per stream, until a response is framed. [`Connections`] holds what every proxy was sent and acknowledged, for `/debug/syncz` and
//! `/debug/config_dump`, and the metrics.
//!
//! Nothing a client chooses grows without a bound ([`limits`]): requests for types pilot does not serve are
//! ignored and counted, never watched; metric labels take only the served types' short names (or `other`);
//! a stream's names per type are bounded in number and bytes (over the bound, the stream is closed with
//! `RESOURCE_EXHAUSTED`), and so are the bytes of requests it reads ahead.

mod budget;
pub mod build;
mod delta;
mod framing;
mod grpc;
pub mod limits;
mod names;
mod protocol;
mod server;
mod snapshot;
mod sotw;
mod source;
mod status;
pub mod types;

#[cfg(test)]
mod limits_tests;
#[cfg(test)]
mod tests;

pub use budget::{ANSWER_TIMEOUT, DEFAULT_BUDGET_BYTES, PushBudget};
pub use delta::{Delta, DeltaRequest};
pub use grpc::AdsService;
pub use limits::Refusal;
pub use protocol::{Answer, Outgoing, Protocol, Verdict};
pub use server::AdsServer;
pub use snapshot::{Resources, Snapshot, SnapshotBuilder, SnapshotError, XdsResource};
pub use sotw::{Sotw, SotwRequest};
pub use source::{SharedSnapshot, SnapshotSource};
pub use status::{Connections, Nack, ProxyStatus, TypeStatus, XdsMetrics};
