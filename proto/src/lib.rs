//! Sextant's protobuf API and the Envoy v3 API it serves.
//!
//! `mixer` is `sextant.mixer.v1` (Check and Report), compiled from `proto/sextant/mixer/v1/mixer.proto`.
//! `envoy` re-exports envoy-types (ext_authz, rate-limit service, access-log service, xDS) so every crate uses
//! one copy of those types. [`FILE_DESCRIPTOR_SET`] feeds gRPC server reflection.

/// The generated code, in modules nested as the packages are (generated code names other packages by
/// relative paths).
#[allow(missing_docs, clippy::all)]
mod generated {
    pub mod istio {
        pub mod v1 {
            pub mod auth {
                tonic::include_proto!("istio.v1.auth");
            }
        }
    }
    pub mod sextant {
        pub mod mixer {
            pub mod v1 {
                tonic::include_proto!("sextant.mixer.v1");
            }
        }
        pub mod filters {
            pub mod http {
                pub mod mixer {
                    pub mod v1 {
                        tonic::include_proto!("sextant.filters.http.mixer.v1");
                    }
                }
            }
        }
    }
}

/// `istio.v1.auth`: Istio's certificate API (`IstioCertificateService/CreateCertificate`), which pilot serves
/// on its TLS port and proxies call with a CSR for their own identity.
pub use generated::istio::v1::auth as istio_ca;
/// `sextant.filters.http.mixer.v1`: the configuration of the proxy's hub filter (Check and Report from the
/// sidecar), sent by pilot inside an `HttpConnectionManager`.
pub use generated::sextant::filters::http::mixer::v1 as mixer_filter;
/// `sextant.mixer.v1`: the hub's native Check and Report API.
pub use generated::sextant::mixer::v1 as mixer;

/// The name of the proxy's hub filter in an `HttpConnectionManager`'s `http_filters`.
pub const MIXER_FILTER_NAME: &str = "sextant.filters.http.mixer";
/// The name of the proxy's hub filter among a TCP chain's network filters (before `tcp_proxy`); its
/// configuration is the HTTP filter's ([`mixer_filter::Mixer`]).
pub const MIXER_NETWORK_FILTER_NAME: &str = "sextant.filters.network.mixer";
/// The type URL of the hub filter's configuration ([`mixer_filter::Mixer`]) in its `typed_config`.
pub const MIXER_FILTER_TYPE_URL: &str = "type.googleapis.com/sextant.filters.http.mixer.v1.Mixer";

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
