//! The proxy's ADS client (`proxy-xds`) against `sextant pilot` as a process: it subscribes to what the
//! configuration refers to, ACKs what it applies, NACKs what it refuses (pilot records the NACK and the
//! previous configuration stays), and when pilot goes away it keeps its configuration and resumes on its own
//! once pilot is back. The same scenario runs over both protocols, state of the world and delta.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{get_json, scratch_config, start_pilot, wait_until, write_atomically};
use proxy_xds::{Consumer, Options, Protocol, Status, types};
use sextant_proto::envoy::config::cluster::v3::Cluster;
use sextant_proto::envoy::config::core::v3::Node;
use sextant_proto::envoy::config::endpoint::v3::ClusterLoadAssignment;
use sextant_proto::envoy::config::listener::v3::Listener;
use sextant_proto::envoy::config::route::v3::RouteConfiguration;
use sextant_proto::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager::RouteSpecifier,
};
use sextant_proto::google::protobuf::Any;

const NODE: &str = "sidecar~127.0.0.1~productpage-v1.default~default.svc.cluster.local";
const HOST: &str = "reviews.default.svc.cluster.local";

fn config(port: u16, abort: bool) -> String {
    let fault = if abort {
        "    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}\n"
    } else {
        ""
    };
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: reviews}}
spec:
  hosts: [{HOST}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {port}, name: http, protocol: HTTP}}]
  endpoints:
  - {{address: 127.0.0.7, ports: {{http: 9080}}, labels: {{version: v1}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews}}
spec:
  host: reviews
  subsets: [{{name: v1, labels: {{version: v1}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews}}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {{host: reviews, subset: v1}}
{fault}"#
    )
}

/// What the test's consumer holds: per type, the resources applied, decoded to what the test looks at.
#[derive(Default)]
struct Held {
    /// Cluster names, and the EDS ones.
    clusters: BTreeSet<String>,
    eds: BTreeSet<String>,
    /// Endpoint addresses per cluster.
    endpoints: BTreeMap<String, Vec<String>>,
    /// Listener names, and the route configurations they name.
    listeners: BTreeSet<String>,
    rds: BTreeSet<String>,
    /// Route configuration name → whether a route of it injects a fault.
    routes: BTreeMap<String, bool>,
}

/// A consumer that decodes and keeps what it is sent, refusing route updates while `refuse_routes` is set.
/// (The proxy's real consumer, its configuration model, is not built yet; this one decodes with prost only.)
struct Recorder {
    held: Arc<Mutex<Held>>,
    refuse_routes: Arc<AtomicBool>,
}

fn decode<M: prost::Message + Default>(r: &Any) -> Result<M, String> {
    M::decode(r.value.as_slice()).map_err(|e| format!("{}: {e}", r.type_url))
}

fn decode_all<M: prost::Message + Default>(resources: &[Any]) -> Result<Vec<M>, String> {
    resources.iter().map(decode).collect()
}

impl Consumer for Recorder {
    fn apply(&mut self, type_url: &str, resources: &[Any]) -> Result<(), String> {
        let mut held = self.held.lock().expect("held");
        match type_url {
            types::CLUSTER => {
                let clusters: Vec<Cluster> = decode_all(resources)?;
                held.clusters = clusters.iter().map(|c| c.name.clone()).collect();
                held.eds = clusters
                    .iter()
                    .filter(|c| c.eds_cluster_config.is_some())
                    .map(|c| c.name.clone())
                    .collect();
            }
            types::ENDPOINTS => {
                let cla: Vec<ClusterLoadAssignment> = decode_all(resources)?;
                held.endpoints = cla
                    .into_iter()
                    .map(|c| {
                        let addrs = c
                            .endpoints
                            .iter()
                            .flat_map(|l| &l.lb_endpoints)
                            .map(|e| format!("{e:?}"))
                            .collect();
                        (c.cluster_name, addrs)
                    })
                    .collect();
            }
            types::LISTENER => {
                let listeners: Vec<Listener> = decode_all(resources)?;
                held.listeners = listeners.iter().map(|l| l.name.clone()).collect();
                held.rds = listeners
                    .iter()
                    .flat_map(|l| &l.filter_chains)
                    .flat_map(|c| &c.filters)
                    .filter_map(|f| match &f.config_type {
                        Some(sextant_proto::envoy::config::listener::v3::filter::ConfigType::TypedConfig(a)) => {
                            decode::<HttpConnectionManager>(a).ok()
                        }
                        _ => None,
                    })
                    .filter_map(|h| match h.route_specifier {
                        Some(RouteSpecifier::Rds(rds)) => Some(rds.route_config_name),
                        _ => None,
                    })
                    .collect();
            }
            types::ROUTE => {
                if self.refuse_routes.load(Ordering::Relaxed) {
                    return Err("route configuration refused by the test".to_owned());
                }
                let routes: Vec<RouteConfiguration> = decode_all(resources)?;
                held.routes = routes
                    .into_iter()
                    .map(|r| {
                        let fault = r.virtual_hosts.iter().flat_map(|v| &v.routes).any(|r| {
                            r.typed_per_filter_config
                                .contains_key("envoy.filters.http.fault")
                        });
                        (r.name, fault)
                    })
                    .collect();
            }
            other => return Err(format!("unexpected type {other}")),
        }
        Ok(())
    }

    fn wants(&self, type_url: &str) -> BTreeSet<String> {
        let held = self.held.lock().expect("held");
        match type_url {
            types::ENDPOINTS => held.eds.clone(),
            types::ROUTE => held.rds.clone(),
            _ => BTreeSet::new(),
        }
    }
}

fn node() -> Node {
    Node {
        id: NODE.to_owned(),
        cluster: "productpage.default".to_owned(),
        metadata: Some(sextant_proto::google::protobuf::Struct {
            fields: [("INTERCEPTION_MODE", "NONE"), ("NAMESPACE", "default")]
                .into_iter()
                .map(|(k, v)| {
                    (
                        k.to_owned(),
                        sextant_proto::google::protobuf::Value {
                            kind: Some(sextant_proto::google::protobuf::value::Kind::StringValue(
                                v.to_owned(),
                            )),
                        },
                    )
                })
                .collect(),
        }),
        ..Node::default()
    }
}

fn wait_status(
    status: &tokio::sync::watch::Receiver<Status>,
    what: &str,
    cond: impl Fn(&Status) -> bool,
) {
    wait_until(Duration::from_secs(60), what, || cond(&status.borrow()));
}

#[test]
fn the_proxy_xds_client_acks_nacks_and_resumes_after_pilot_restarts() {
    acks_nacks_and_resumes(Protocol::StateOfTheWorld, "sotw");
}

#[test]
fn the_delta_proxy_xds_client_acks_nacks_and_resumes_after_pilot_restarts() {
    acks_nacks_and_resumes(Protocol::Delta, "delta");
}

/// The client's configuration holds every type the scenario's mesh refers to, whole.
fn assert_whole(held: &Held, port: u16, subset: &str) {
    assert!(held.clusters.contains(subset), "{:?}", held.clusters);
    assert!(
        held.endpoints
            .get(subset)
            .is_some_and(|e| e.len() == 1 && e[0].contains("127.0.0.7")),
        "{:?}",
        held.endpoints
    );
    assert!(
        held.listeners.contains(&format!("127.0.0.1_{port}")),
        "{:?}",
        held.listeners
    );
    assert!(
        held.routes.contains_key(&port.to_string()),
        "{:?}",
        held.routes
    );
}

/// The scenario over `protocol`, which pilot's `/debug/syncz` names `shown`.
fn acks_nacks_and_resumes(protocol: Protocol, shown: &str) {
    let (_dir, config_dir) = scratch_config("proxy-xds");
    let port = 9080;
    std::fs::write(config_dir.join("mesh.yaml"), config(port, false)).expect("write");
    let (pilot, xds, monitoring) = start_pilot(&config_dir, "127.0.0.1:0");

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let held = Arc::new(Mutex::new(Held::default()));
    let refuse_routes = Arc::new(AtomicBool::new(false));
    let (tx, status) = tokio::sync::watch::channel(Status::default());
    let mut options = Options::new(format!("http://{xds}"), node());
    options.max_backoff = Duration::from_millis(500);
    options.protocol = protocol;
    rt.spawn(proxy_xds::run(
        options,
        Recorder {
            held: held.clone(),
            refuse_routes: refuse_routes.clone(),
        },
        tx,
    ));

    // Every type the configuration refers to is subscribed, applied and ACKed.
    let subset = format!("outbound|{port}|v1|{HOST}");
    let all = [
        types::CLUSTER,
        types::ENDPOINTS,
        types::LISTENER,
        types::ROUTE,
    ];
    wait_status(
        &status,
        "the client to ACK clusters, endpoints, listeners and routes",
        |s| {
            all.iter().all(|t| s.acked.contains_key(*t))
                && s.subscribed
                    .get(types::ENDPOINTS)
                    .is_some_and(|n| n.contains(&subset))
                && s.subscribed
                    .get(types::ROUTE)
                    .is_some_and(|n| n.contains(&port.to_string()))
        },
    );
    {
        let h = held.lock().expect("held");
        assert_whole(&h, port, &subset);
        assert_eq!(
            h.routes.get(&port.to_string()),
            Some(&false),
            "{:?}",
            h.routes
        );
    }
    // Pilot saw the ACKs over the protocol asked for: every type acknowledged at the version it sent.
    wait_until(Duration::from_secs(30), "pilot to record the ACKs", || {
        let sync = get_json(monitoring, "/debug/syncz");
        let Some(p) = sync.as_array().and_then(|a| a.first()) else {
            return false;
        };
        p["node"] == NODE
            && p["protocol"] == shown
            && ["cds", "eds", "lds", "rds"].iter().all(|t| {
                p["types"][*t]["acked"] == p["types"][*t]["sent"]
                    && p["types"][*t]["last_nack"].is_null()
            })
    });

    // A route update the proxy refuses is NACKed with its message; the previous routes stay applied.
    refuse_routes.store(true, Ordering::Relaxed);
    write_atomically(&config_dir.join("mesh.yaml"), &config(port, true));
    wait_status(&status, "the client to NACK the new routes", |s| {
        s.last_nack
            .as_ref()
            .is_some_and(|n| n.type_url == types::ROUTE)
    });
    assert_eq!(
        held.lock().expect("held").routes.get(&port.to_string()),
        Some(&false),
        "a refused update changed nothing"
    );
    wait_until(Duration::from_secs(30), "pilot to record the NACK", || {
        let sync = get_json(monitoring, "/debug/syncz");
        sync.as_array()
            .and_then(|a| a.first())
            .and_then(|p| {
                p["types"]["rds"]["last_nack"]["message"]
                    .as_str()
                    .map(str::to_owned)
            })
            .is_some_and(|m| m.contains("route configuration refused by the test"))
    });

    // Pilot goes away: the client keeps what it applied, and resumes once pilot is back on its address.
    drop(pilot);
    wait_status(&status, "the client to notice pilot is gone", |s| {
        !s.connected
    });
    assert_whole(&held.lock().expect("held"), port, &subset);
    refuse_routes.store(false, Ordering::Relaxed);
    let (_pilot, _, monitoring) = start_pilot(&config_dir, &xds.to_string());
    wait_status(
        &status,
        "the client to reconnect and apply the routes it had refused",
        |s| s.connected && s.streams >= 2,
    );
    wait_until(
        Duration::from_secs(60),
        "the fault route to be applied",
        || held.lock().expect("held").routes.get(&port.to_string()) == Some(&true),
    );
    // Resumed, not restarted from nothing: with delta pilot sends only what changed (the routes), and what it
    // did not resend is still applied.
    assert_whole(&held.lock().expect("held"), port, &subset);
    wait_until(
        Duration::from_secs(30),
        "the new pilot to record the ACKs",
        || {
            get_json(monitoring, "/debug/syncz")
                .as_array()
                .and_then(|a| a.first())
                .is_some_and(|p| {
                    p["protocol"] == shown
                        && p["types"]["rds"]["acked"] == p["types"]["rds"]["sent"]
                })
        },
    );
}
