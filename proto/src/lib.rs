//! Sextant's protobuf API and the Envoy v3 API it serves.
//!
//! `mixer` is `sextant.mixer.v1` (Check and Report), compiled from `proto/sextant/mixer/v1/mixer.proto`.
//! `envoy` re-exports envoy-types (ext_authz, rate-limit service, access-log service, xDS) so every crate uses
//! one copy of those types. [`FILE_DESCRIPTOR_SET`] feeds gRPC server reflection.

/// `sextant.mixer.v1`: the hub's native Check and Report API.
#[allow(missing_docs, clippy::all)]
pub mod mixer {
    tonic::include_proto!("sextant.mixer.v1");
}

pub mod json;

/// The Envoy v3 API.
pub use envoy_types::pb::envoy;
/// `google.protobuf` and `google.rpc`, shared by Envoy's API and ours.
pub use envoy_types::pb::google;

/// The encoded `FileDescriptorSet` of the native API, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/sextant_descriptor.bin"));

/// The encoded `FileDescriptorSet` of the Envoy resources pilot sends and of Envoy's discovery service (with
/// their imports), compiled from the protos envoy-types ships: decodes `Any` resources to JSON for
/// `/debug/config_dump`.
pub const ENVOY_FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/envoy_descriptor.bin"));
