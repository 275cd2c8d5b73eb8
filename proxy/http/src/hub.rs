//! The hub filter (`sextant.filters.http.mixer`): each request's attributes as the hub's vocabulary names
//! them, checked before the request is forwarded (`proxy-check`: cache, hub, stale answers, failure
//! policy) and reported once its response has ended (`proxy-report`).
//!
//! Who the client is travels with the request between sidecars: the client's sidecar (an outbound filter,
//! which knows its own workload from pilot) adds [`SOURCE_WORKLOAD`], [`SOURCE_NAMESPACE`] and
//! [`SOURCE_VERSION`], and the server's sidecar takes them off before the application sees them. They are believed only on a mutual
//! TLS connection whose peer's SPIFFE identity names the same namespace, so a plain-text client cannot
//! claim to be a mesh workload. Who answered travels back the same way ([`DESTINATION_WORKLOAD`],
//! [`DESTINATION_NAMESPACE`] on the response), believed for the called service's namespace only.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Instant;

use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Response};
use proxy_check::{Checker, Limits as CacheLimits, Verdict};
use proxy_config::mixer::HubFilter;
use proxy_report::{Batching, Reporter};
use proxy_state::Snapshots;
use proxy_stats::Stats;
use sextant_attributes::{AttrId, Bag, Value, attr};
use sextant_proto::mixer::header_operation::{Operation, Target};
use sextant_supervise::TaskHealth;

use crate::bag::{grpc_status, now, put};
use crate::body::{ProxyBody, Report};

/// The client workload's name, added by the client's sidecar.
pub const SOURCE_WORKLOAD: HeaderName = HeaderName::from_static("x-sextant-source-workload");
/// The client workload's namespace, added by the client's sidecar.
pub const SOURCE_NAMESPACE: HeaderName = HeaderName::from_static("x-sextant-source-namespace");
/// The client workload's `version` label, added by the client's sidecar (`source.labels["version"]`).
pub const SOURCE_VERSION: HeaderName = HeaderName::from_static("x-sextant-source-version");
/// The server workload's name, added to the response by the server's sidecar.
pub const DESTINATION_WORKLOAD: HeaderName =
    HeaderName::from_static("x-sextant-destination-workload");
/// The server workload's namespace, added to the response by the server's sidecar.
pub const DESTINATION_NAMESPACE: HeaderName =
    HeaderName::from_static("x-sextant-destination-namespace");

/// The hub clients of the whole proxy: one checker (and its cache) per hub cluster, one reporter per hub
/// cluster and batching, shared by every connection manager that names them and kept while one does.
#[derive(Clone)]
pub struct Hubs(Arc<Shared>);

struct Shared {
    stats: Arc<Stats>,
    health: Arc<TaskHealth>,
    snapshots: Snapshots,
    checkers: Mutex<HashMap<(String, std::time::Duration), Weak<Checker>>>,
    reporters: Mutex<HashMap<(String, Batching), Weak<Reporter>>>,
}

impl std::fmt::Debug for Hubs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hubs").finish_non_exhaustive()
    }
}

impl Hubs {
    /// The registry; reporters find the hub's cluster in the snapshot current when they send, and run
    /// supervised under `health`.
    pub fn new(stats: Arc<Stats>, health: Arc<TaskHealth>, snapshots: Snapshots) -> Hubs {
        Hubs(Arc::new(Shared {
            stats,
            health,
            snapshots,
            checkers: Mutex::new(HashMap::new()),
            reporters: Mutex::new(HashMap::new()),
        }))
    }

    /// The clients one filter uses.
    pub(crate) fn filter(&self, config: &HubFilter) -> Filter {
        let s = &self.0;
        let checker = config.check.then(|| {
            let key = (config.cluster.clone(), config.stale_ttl);
            let mut checkers = s.checkers.lock().unwrap_or_else(PoisonError::into_inner);
            checkers.retain(|_, c| c.strong_count() > 0);
            if let Some(c) = checkers.get(&key).and_then(Weak::upgrade) {
                return c;
            }
            let limits = CacheLimits {
                stale_for: config.stale_ttl,
                ..CacheLimits::default()
            };
            let c = Arc::new(Checker::new(&config.cluster, limits, &s.stats));
            checkers.insert(key, Arc::downgrade(&c));
            c
        });
        let reporter = config.report.then(|| {
            let batching = Batching {
                entries: config.batch_entries,
                interval: config.flush_interval,
                buffer: config.buffer_entries,
            };
            let key = (config.cluster.clone(), batching);
            let mut reporters = s.reporters.lock().unwrap_or_else(PoisonError::into_inner);
            reporters.retain(|_, r| r.strong_count() > 0);
            if let Some(r) = reporters.get(&key).and_then(Weak::upgrade) {
                return r;
            }
            let snapshots = s.snapshots.clone();
            let clusters: proxy_report::Clusters =
                Arc::new(move |name| snapshots.borrow().clusters.get(name).cloned());
            let r = Reporter::start(
                &config.cluster,
                batching,
                clusters,
                &s.stats,
                s.health.clone(),
            );
            reporters.insert(key, Arc::downgrade(&r));
            r
        });
        Filter {
            config: config.clone(),
            checker,
            reporter,
        }
    }
}

/// One connection manager's (or TCP chain's) hub filter.
#[derive(Debug)]
pub(crate) struct Filter {
    pub(crate) config: HubFilter,
    pub(crate) checker: Option<Arc<Checker>>,
    pub(crate) reporter: Option<Arc<Reporter>>,
}

/// What the connection manager knows of a request when it starts.
pub(crate) struct Seen<'a> {
    pub parts: &'a Parts,
    pub authority: &'a str,
    pub scheme: &'a str,
    pub connection: Connection<'a>,
}

/// A request under the filter: its attributes so far, when it started, and its span (when reported).
pub(crate) struct Pending {
    bag: Bag,
    started: Instant,
    span: Option<crate::trace::Span>,
}

impl Filter {
    /// The request's attributes as it arrived.
    pub(crate) fn begin(&self, seen: &Seen<'_>) -> Pending {
        let mut bag = (*self.config.attributes).clone();
        let span = self
            .reporter
            .is_some()
            .then(|| crate::trace::Span::of(&seen.parts.headers));
        let principal = connection_attributes(&mut bag, &self.config, &seen.connection);
        request_attributes(&mut bag, seen, span.as_ref());
        if let Some(principal) = principal {
            // The client's sidecar's word for its workload, when its certificate vouches for the namespace.
            let headers = &seen.parts.headers;
            let text = |h: &HeaderName| headers.get(h).and_then(|v| v.to_str().ok());
            if let (Some(workload), Some(ns)) = (text(&SOURCE_WORKLOAD), text(&SOURCE_NAMESPACE))
                && spiffe_namespace(principal) == Some(ns)
            {
                let s = |v: &str| Value::String(v.to_string());
                put(&mut bag, attr!("source.workload.name", String), s(workload));
                put(&mut bag, attr!("source.workload.namespace", String), s(ns));
                put(&mut bag, attr!("source.namespace", String), s(ns));
                if let Some(version) = text(&SOURCE_VERSION) {
                    let labels = HashMap::from([("version".to_string(), version.to_string())]);
                    put(
                        &mut bag,
                        attr!("source.labels", StringMap),
                        Value::StringMap(labels),
                    );
                }
            }
        }
        Pending {
            bag,
            started: Instant::now(),
            span,
        }
    }

    /// Takes the client's sidecar's headers off a request, and, outbound, puts this workload's on; this
    /// hop's span becomes the parent of the request as it goes on.
    pub(crate) fn rewrite(&self, pending: &Pending, headers: &mut HeaderMap) {
        if let Some(span) = &pending.span {
            span.propagate(headers);
        }
        headers.remove(&SOURCE_WORKLOAD);
        headers.remove(&SOURCE_NAMESPACE);
        headers.remove(&SOURCE_VERSION);
        if is_outbound(&self.config) {
            let source = [
                (attr!("source.workload.name", String), SOURCE_WORKLOAD),
                (attr!("source.workload.namespace", String), SOURCE_NAMESPACE),
            ];
            workload_headers(&self.config, source, headers);
            if let Some(Value::StringMap(labels)) = self
                .config
                .attributes
                .get(attr!("source.labels", StringMap))
                && let Some(v) = labels.get("version")
                && let Ok(v) = HeaderValue::from_str(v)
            {
                headers.insert(SOURCE_VERSION, v);
            }
        }
    }

    /// Checks the request (when the filter checks): `Ok` with header changes to make on the request and
    /// the response, or the response to answer with.
    pub(crate) async fn check(
        &self,
        pending: &Pending,
        snapshot: &proxy_state::Snapshot,
        headers: &mut HeaderMap,
    ) -> Result<HeaderMap, Response<ProxyBody>> {
        let Some(checker) = &self.checker else {
            return Ok(HeaderMap::new());
        };
        let cluster = snapshot.clusters.get(&self.config.cluster);
        // The hub's Check joins this hop's span, else the caller's context as it came.
        let parent = match &pending.span {
            Some(span) => span.context(),
            None => sextant_tracectx::read(|n| headers.get(n).and_then(|v| v.to_str().ok())),
        };
        match checker
            .check(
                cluster,
                &pending.bag,
                self.config.check_timeout,
                self.config.on_failure,
                parent.as_ref(),
            )
            .await
        {
            Verdict::Forward(answer) => {
                let mut on_response = HeaderMap::new();
                for op in answer.iter().flat_map(|a| &a.header_operations) {
                    let target = if op.target == Target::Response as i32 {
                        &mut on_response
                    } else {
                        &mut *headers
                    };
                    apply(target, op);
                }
                Ok(on_response)
            }
            Verdict::Refuse(r) => {
                let mut response = crate::local::response(r.status, r.body);
                for (k, v) in r.headers {
                    if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
                        response.headers_mut().append(k, v);
                    }
                }
                Err(response)
            }
        }
    }

    /// Hands the response back with its end reported (when the filter reports), `cluster` being the
    /// upstream cluster it came from, if any.
    pub(crate) fn finish(
        &self,
        pending: Pending,
        mut response: Response<ProxyBody>,
        on_response: HeaderMap,
    ) -> Response<ProxyBody> {
        for (name, value) in &on_response {
            response.headers_mut().insert(name.clone(), value.clone());
        }
        // Who answered travels back between sidecars: the server's adds it, the client's takes it off.
        let headers = response.headers_mut();
        let answered =
            (headers.remove(&DESTINATION_WORKLOAD)).zip(headers.remove(&DESTINATION_NAMESPACE));
        if !is_outbound(&self.config) {
            let destination = [
                (
                    attr!("destination.workload.name", String),
                    DESTINATION_WORKLOAD,
                ),
                (
                    attr!("destination.workload.namespace", String),
                    DESTINATION_NAMESPACE,
                ),
            ];
            workload_headers(&self.config, destination, headers);
        }
        let Some(reporter) = &self.reporter else {
            return response;
        };
        let mut bag = pending.bag;
        let status = i64::from(response.status().as_u16());
        put(
            &mut bag,
            attr!("response.code", Int64),
            Value::Int64(status),
        );
        if let Some(code) = grpc_status(response.headers()) {
            put(
                &mut bag,
                attr!("response.grpc_status", String),
                Value::String(code),
            );
        }
        if let Some(cluster) = response.extensions().get::<crate::UpstreamCluster>() {
            service_attributes(&mut bag, &cluster.0);
        }
        if is_outbound(&self.config)
            && let Some((workload, namespace)) = answered
            && let (Ok(workload), Ok(namespace)) = (workload.to_str(), namespace.to_str())
            // Believed for the service's own namespace only: a server cannot claim another's workload.
            && bag.get(attr!("destination.service.namespace", String))
                == Some(&Value::String(namespace.to_string()))
        {
            let s = |v: &str| Value::String(v.to_string());
            put(
                &mut bag,
                attr!("destination.workload.name", String),
                s(workload),
            );
            put(
                &mut bag,
                attr!("destination.workload.namespace", String),
                s(namespace),
            );
        }
        let (parts, body) = response.into_parts();
        let report = Report::new(bag, pending.started, reporter.clone());
        Response::from_parts(parts, ProxyBody::Reported(Box::new((body, report))))
    }
}

pub(crate) fn is_outbound(config: &HubFilter) -> bool {
    matches!(
        config.attributes.get(attr!("context.reporter.kind", String)),
        Some(Value::String(k)) if k == "outbound"
    )
}

/// What the listener knows of the connection a request or TCP stream came on.
#[derive(Debug, Clone, Copy)]
pub struct Connection<'a> {
    /// The client's address.
    pub peer: SocketAddr,
    /// Where the client meant to connect.
    pub destination: Option<SocketAddr>,
    /// The SNI, empty when none.
    pub server_name: &'a str,
    /// The peer certificate's URI SANs, on a TLS connection whose peer presented one.
    pub peer_uris: Option<&'a [String]>,
}

/// The connection's attributes, for HTTP requests and TCP streams alike: both addresses, the SNI, the
/// peer's SPIFFE principal and, on the server's side, whether it was mutual TLS (the client's side cannot
/// tell the server's policy: `connection.mtls` is left unset there, so `connection_security_policy`
/// reads `unknown` as Istio's source reports do). Returns the principal.
pub(crate) fn connection_attributes<'a>(
    bag: &mut Bag,
    config: &HubFilter,
    c: &Connection<'a>,
) -> Option<&'a String> {
    put(bag, attr!("source.ip", IpAddress), Value::Ip(c.peer.ip()));
    put(
        bag,
        attr!("source.port", Int64),
        Value::Int64(i64::from(c.peer.port())),
    );
    if let Some(d) = c.destination {
        put(bag, attr!("destination.ip", IpAddress), Value::Ip(d.ip()));
        put(
            bag,
            attr!("destination.port", Int64),
            Value::Int64(i64::from(d.port())),
        );
    }
    if !c.server_name.is_empty() {
        put(
            bag,
            attr!("connection.requested_server_name", String),
            Value::String(c.server_name.to_string()),
        );
    }
    let principal = c
        .peer_uris
        .and_then(|u| u.iter().find(|u| u.starts_with("spiffe://")));
    if !is_outbound(config) {
        put(
            bag,
            attr!("connection.mtls", Bool),
            Value::Bool(principal.is_some()),
        );
    }
    if let Some(p) = principal {
        put(
            bag,
            attr!("source.principal", String),
            Value::String(p.clone()),
        );
    }
    principal
}

/// Puts this workload's `(attribute, header)` pairs from the filter's static attributes on `headers`.
fn workload_headers<const N: usize>(
    config: &HubFilter,
    pairs: [(AttrId, HeaderName); N],
    headers: &mut HeaderMap,
) {
    for (id, name) in pairs {
        if let Some(Value::String(v)) = config.attributes.get(id)
            && let Ok(v) = HeaderValue::from_str(v)
        {
            headers.insert(name, v);
        }
    }
}

/// The attributes a request has on the wire, its trace context as this hop's `span`.
fn request_attributes(bag: &mut Bag, seen: &Seen<'_>, span: Option<&crate::trace::Span>) {
    let p = seen.parts;
    let s = |v: &str| Value::String(v.to_string());
    let mut headers: HashMap<String, String> = HashMap::with_capacity(p.headers.keys_len());
    for name in p.headers.keys() {
        if name == SOURCE_WORKLOAD || name == SOURCE_NAMESPACE || name == SOURCE_VERSION {
            continue;
        }
        if let Some(v) = proxy_route::header_value(&p.headers, name.as_str()) {
            headers.insert(name.as_str().to_string(), v.into_owned());
        }
    }
    if let Some(span) = span {
        span.report(&mut headers);
    }
    let header = |n: &str| headers.get(n).map(|v| Value::String(v.clone()));
    if let Some(v) = header("x-request-id") {
        put(bag, attr!("request.id", String), v);
    }
    if let Some(v) = header("user-agent") {
        put(bag, attr!("request.useragent", String), v);
    }
    let grpc = headers
        .get("content-type")
        .is_some_and(|c| c.starts_with("application/grpc"));
    let protocol = if grpc {
        "grpc"
    } else if p.version == http::Version::HTTP_2 {
        "http2"
    } else {
        "http"
    };
    put(bag, attr!("request.protocol", String), s(protocol));
    put(
        bag,
        attr!("context.protocol", String),
        s(if grpc { "grpc" } else { "http" }),
    );
    put(
        bag,
        attr!("request.headers", StringMap),
        Value::StringMap(headers),
    );
    put(bag, attr!("request.host", String), s(seen.authority));
    put(bag, attr!("request.method", String), s(p.method.as_str()));
    put(bag, attr!("request.scheme", String), s(seen.scheme));
    put(bag, attr!("request.url_path", String), s(p.uri.path()));
    put(
        bag,
        attr!("request.path", String),
        s(p.uri.path_and_query().map_or("/", |pq| pq.as_str())),
    );
    let time = now();
    put(
        bag,
        attr!("request.time", Timestamp),
        Value::Timestamp(time),
    );
    put(
        bag,
        attr!("context.time", Timestamp),
        Value::Timestamp(time),
    );
}

/// `destination.service.*` of an outbound request, from the Istio-named cluster it went to
/// (`outbound|PORT|SUBSET|NAME.NAMESPACE.svc.…`), unless the filter set them.
fn service_attributes(bag: &mut Bag, cluster: &str) {
    let host_id = attr!("destination.service.host", String);
    if bag.get(host_id).is_some() {
        return;
    }
    let ["outbound", _, _, host] = cluster.split('|').collect::<Vec<_>>()[..] else {
        return;
    };
    put(bag, host_id, Value::String(host.to_string()));
    let mut labels = host.split('.');
    if let (Some(name), Some(namespace)) = (labels.next(), labels.next()) {
        put(
            bag,
            attr!("destination.service.name", String),
            Value::String(name.to_string()),
        );
        put(
            bag,
            attr!("destination.service.namespace", String),
            Value::String(namespace.to_string()),
        );
    }
}

/// The namespace of a SPIFFE ID of Istio's form `spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/ACCOUNT`.
fn spiffe_namespace(id: &str) -> Option<&str> {
    let path = id.strip_prefix("spiffe://")?.split_once('/')?.1;
    match path.split('/').collect::<Vec<_>>()[..] {
        ["ns", ns, "sa", _] => Some(ns),
        _ => None,
    }
}

fn apply(headers: &mut HeaderMap, op: &sextant_proto::mixer::HeaderOperation) {
    let Ok(name) = HeaderName::try_from(op.name.as_str()) else {
        return;
    };
    match Operation::try_from(op.operation) {
        Ok(Operation::Remove) => {
            headers.remove(&name);
        }
        Ok(Operation::Append) => {
            if let Ok(v) = HeaderValue::try_from(op.value.as_str()) {
                headers.append(name, v);
            }
        }
        _ => {
            if let Ok(v) = HeaderValue::try_from(op.value.as_str()) {
                headers.insert(name, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_ids_name_their_namespace() {
        assert_eq!(
            spiffe_namespace("spiffe://cluster.local/ns/shop/sa/web"),
            Some("shop")
        );
        assert_eq!(spiffe_namespace("spiffe://cluster.local/other"), None);
        assert_eq!(spiffe_namespace("https://x/ns/shop/sa/web"), None);
    }

    #[test]
    fn outbound_clusters_name_the_destination_service() {
        let mut bag = Bag::new();
        service_attributes(
            &mut bag,
            "outbound|9080|v1|reviews.bookinfo.svc.cluster.local",
        );
        assert_eq!(
            bag.get_by_name("destination.service.name"),
            Some(&Value::String("reviews".into()))
        );
        assert_eq!(
            bag.get_by_name("destination.service.namespace"),
            Some(&Value::String("bookinfo".into()))
        );
        let mut other = Bag::new();
        service_attributes(&mut other, "PassthroughCluster");
        assert!(other.is_empty());
    }
}
