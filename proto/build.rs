//! Compiles `sextant/mixer/v1/mixer.proto` with protox (no protoc needed) and writes its descriptor set for
//! gRPC reflection. `google.protobuf` and `google.rpc` types are shared with envoy-types so that a
//! `google.rpc.Status` built for the native API is the same Rust type Envoy's front doors use.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["sextant/mixer/v1/mixer.proto"];
    let fds = protox::Compiler::new(["."])?
        .include_imports(true)
        .include_source_info(true)
        .open_files(protos)?
        .file_descriptor_set();
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out.join("sextant_descriptor.bin");
    std::fs::write(&descriptor_path, prost::Message::encode_to_vec(&fds))?;
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
