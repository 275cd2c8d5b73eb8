//! Compiles `sextant/mixer/v1/mixer.proto` with protox (no protoc needed) and writes its descriptor set for
//! gRPC reflection. `google.protobuf` and `google.rpc` types are shared with envoy-types so that a
//! `google.rpc.Status` built for the native API is the same Rust type Envoy's front doors use.

use std::path::{Path, PathBuf};

/// The Envoy resource types pilot sends (with everything they import), and Envoy's gRPC services: what
/// `/debug/config_dump` decodes to JSON and gRPC reflection describes.
const ENVOY_PROTOS: &[&str] = &[
    "envoy/config/cluster/v3/cluster.proto",
    "envoy/config/endpoint/v3/endpoint.proto",
    "envoy/config/listener/v3/listener.proto",
    "envoy/config/route/v3/route.proto",
    "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
    "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto",
    "envoy/extensions/filters/network/rbac/v3/rbac.proto",
    "envoy/extensions/filters/http/rbac/v3/rbac.proto",
    "envoy/extensions/filters/http/router/v3/router.proto",
    "envoy/extensions/filters/http/ext_authz/v3/ext_authz.proto",
    "envoy/extensions/access_loggers/grpc/v3/als.proto",
    "envoy/extensions/filters/http/fault/v3/fault.proto",
    "envoy/extensions/filters/http/cors/v3/cors.proto",
    "envoy/extensions/filters/http/set_filter_state/v3/set_filter_state.proto",
    "envoy/extensions/filters/listener/original_dst/v3/original_dst.proto",
    "envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector.proto",
    "envoy/extensions/filters/listener/http_inspector/v3/http_inspector.proto",
    "envoy/extensions/transport_sockets/tls/v3/tls.proto",
    "envoy/extensions/retry/host/previous_hosts/v3/previous_hosts.proto",
    "envoy/extensions/upstreams/http/v3/http_protocol_options.proto",
    "envoy/service/discovery/v3/ads.proto",
];

/// The configuration of the proxy's hub filter (`sextant.filters.http.mixer`).
const MIXER_FILTER_PROTO: &str = "sextant/filters/http/mixer/v1/mixer.proto";
/// Sextant's own filter configurations, decoded in config dumps beside Envoy's.
const SEXTANT_FILTER_PROTOS: &[&str] = &[MIXER_FILTER_PROTO];

/// The `proto/` directory shipped inside the envoy-types crate: the version Cargo.lock resolved, in cargo's
/// registry sources (`$CARGO_HOME/registry/src/*/envoy-types-VERSION`).
fn envoy_types_protos() -> Result<PathBuf, Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let lock = std::fs::read_to_string(manifest_dir.join("../Cargo.lock"))?;
    let version = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"envoy-types\""))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .map(|v| v.trim_matches('"').to_string())
        .ok_or("Cargo.lock names no envoy-types version")?;
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .ok_or("neither CARGO_HOME nor HOME is set")?;
    let wanted = format!("envoy-types-{version}");
    for index in std::fs::read_dir(home.join("registry/src"))? {
        let dir = index?.path().join(&wanted).join("proto");
        if dir.is_dir() {
            return Ok(dir);
        }
    }
    Err(format!(
        "{wanted} sources not found under {}/registry/src",
        home.display()
    )
    .into())
}

fn envoy_descriptors(out: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let root = envoy_types_protos()?;
    let includes = [
        "data-plane-api",
        "googleapis",
        "protoc-gen-validate",
        "xds",
        "cel-spec/proto",
    ]
    .map(|d| root.join(d));
    let mut fds = protox::Compiler::new(includes)?
        .include_imports(true)
        .open_files(ENVOY_PROTOS)?
        .file_descriptor_set();
    // Our own filters' configurations travel in Envoy resources too: the config dump decodes them.
    let ours = protox::Compiler::new(["."])?
        .include_imports(true)
        .open_files(SEXTANT_FILTER_PROTOS)?
        .file_descriptor_set();
    for file in ours.file {
        if !fds.file.iter().any(|f| f.name == file.name) {
            fds.file.push(file);
        }
    }
    std::fs::write(
        out.join("envoy_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "sextant/mixer/v1/mixer.proto",
        MIXER_FILTER_PROTO,
        "istio/v1/auth/ca.proto",
    ];
    let fds = protox::Compiler::new(["."])?
        .include_imports(true)
        .include_source_info(true)
        .open_files(protos)?
        .file_descriptor_set();
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    envoy_descriptors(&out)?;
    // Reflection on the hub describes the hub's own API only.
    let native = protox::Compiler::new(["."])?
        .include_imports(true)
        .include_source_info(true)
        .open_files(["sextant/mixer/v1/mixer.proto"])?
        .file_descriptor_set();
    let descriptor_path = out.join("sextant_descriptor.bin");
    std::fs::write(&descriptor_path, prost::Message::encode_to_vec(&native))?;
    tonic_prost_build::configure()
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::envoy_types::pb::google::protobuf")
        .extern_path(".google.rpc", "::envoy_types::pb::google::rpc")
        .compile_fds(fds)?;
    for p in protos.iter().chain(["google/rpc/status.proto"].iter()) {
        println!("cargo:rerun-if-changed={p}");
    }
    Ok(())
}
