//! A ServiceEntry with `resolution: DNS` becomes a STRICT_DNS cluster: `sextant proxy` resolves its names
//! and routes to the addresses (`localhost` here, its IPv4 address preferred).

mod common;

use std::time::Duration;

use common::{
    Backend, DataPlane, HeldPort, SextantProxy, call, scratch_config, start_pilot, wait_until,
};

#[test]
fn a_dns_service_entry_routes_to_the_addresses_its_names_resolve_to() {
    let (dir, config) = scratch_config("proxy-dns");
    let backend = Backend::answering("resolved");
    let held = HeldPort::hold();
    let services = format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: external}}\nspec:\n  \
         hosts: [api.external.example]\n  location: MESH_EXTERNAL\n  resolution: DNS\n  \
         ports: [{{number: {}, name: http}}]\n  endpoints: [{{address: localhost, ports: {{http: {}}}}}]\n",
        held.port(),
        backend.addr.port()
    );
    std::fs::write(config.join("services.yaml"), services).expect("write");
    let (_pilot, xds, _) = start_pilot(&config, "127.0.0.1:0");
    let proxy = SextantProxy::start(
        &dir,
        xds,
        common::PRODUCTPAGE_ID,
        common::PRODUCTPAGE_ENV,
        &[],
    );
    wait_until(Duration::from_secs(30), "the DNS cluster to route", || {
        call(held.addr, "api.external.example", "/")
            .is_some_and(|(s, b)| s == 200 && b == "resolved")
    });
    let cluster = format!("cluster.outbound|{}||api.external.example", held.port());
    assert!(
        proxy
            .stat(&format!("{cluster}.membership_total"))
            .unwrap_or(0)
            >= 1
    );
    assert_eq!(proxy.rejected_updates(), 0);
}
