//! `pilot-bench --kubernetes`: the benchmark mesh created through a real Kubernetes API server (etcd and
//! kube-apiserver from `.ci/peers`, started by `sextant-kube-harness`) instead of files: per service a
//! Service, an EndpointSlice with its endpoints (no Pods: the endpoints carry no labels, so the subsets'
//! clusters are empty — what is measured is the push), a DestinationRule and a VirtualService (Istio's CRDs
//! as schema-less stand-ins). Pilot runs with `--registry kubernetes` and an empty directory; the change
//! patches one VirtualService through the API server. The API server's open watches are read from its own
//! metrics (`apiserver_longrunning_requests`), per resource.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use futures::StreamExt as _;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sextant_kube_harness::{Binaries, ControlPlane, Options};

use crate::mesh::{AFTER, BEFORE, NAMESPACE, PORT, endpoint_ip, host};

/// Requests to the API server in flight while the mesh is created.
const CONCURRENCY: usize = 32;

/// The API server and the mesh in it; stopped (and its files removed) on drop.
pub struct KubeMesh {
    plane: Option<ControlPlane>,
    client: Client,
    root: PathBuf,
    /// Objects created.
    pub objects: usize,
}

fn istio(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: "networking.istio.io".into(),
        version: "v1".into(),
        api_version: "networking.istio.io/v1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

fn crd(kind: &str, plural: &str) -> String {
    format!(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n\
         metadata: {{name: {plural}.networking.istio.io}}\n\
         spec:\n  group: networking.istio.io\n  names: {{kind: {kind}, plural: {plural}, listKind: {kind}List}}\n\
         \x20 scope: Namespaced\n  versions:\n  - name: v1\n    served: true\n    storage: true\n\
         \x20   subresources: {{status: {{}}}}\n\
         \x20   schema: {{openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}}}\n"
    )
}

/// Service `i`'s VirtualService spec with `weights`.
fn routes(i: usize, weights: (u32, u32)) -> Value {
    let h = host(i);
    json!({"hosts": [h], "http": [{"route": [
        {"destination": {"host": h, "subset": "v1"}, "weight": weights.0},
        {"destination": {"host": h, "subset": "v2"}, "weight": weights.1},
    ]}]})
}

/// Creates `object` of `resource` in the benchmark's namespace.
async fn create(client: Client, resource: ApiResource, object: Value) -> anyhow::Result<()> {
    let api: Api<DynamicObject> = Api::namespaced_with(client, NAMESPACE, &resource);
    let object: DynamicObject = serde_json::from_value(object).context("an object")?;
    api.create(&PostParams::default(), &object)
        .await
        .with_context(|| format!("creating {} {:?}", resource.kind, object.metadata.name))?;
    Ok(())
}

impl KubeMesh {
    /// Starts the control plane from `peers` and creates `services` services of `endpoints` endpoints,
    /// printing progress.
    pub async fn create(
        peers: &Path,
        services: usize,
        endpoints: usize,
    ) -> anyhow::Result<KubeMesh> {
        let root = std::env::temp_dir().join(format!("pilot-bench-kube-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let binaries = Binaries::from_peers(peers)
            .context("the Kubernetes control plane (run .ci/peers, or give --peers)")?;
        println!("starting etcd and kube-apiserver from {}", peers.display());
        let plane = ControlPlane::start(&binaries, &root.join("cluster"), &Options::default())
            .context("starting the control plane")?;
        let crds = format!(
            "{}---\n{}---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {NAMESPACE}}}\n",
            crd("VirtualService", "virtualservices"),
            crd("DestinationRule", "destinationrules")
        );
        plane.apply(&crds).context("the CRDs and the namespace")?;
        plane.crds_established().context("waiting for the CRDs")?;
        let client = sextant_kube::client(Some(plane.kubeconfig()))
            .await
            .context("a client for the control plane")?;

        let core = |kind: &str, plural: &str| ApiResource {
            group: String::new(),
            version: "v1".into(),
            api_version: "v1".into(),
            kind: kind.into(),
            plural: plural.into(),
        };
        let slices = ApiResource {
            group: "discovery.k8s.io".into(),
            version: "v1".into(),
            api_version: "discovery.k8s.io/v1".into(),
            kind: "EndpointSlice".into(),
            plural: "endpointslices".into(),
        };
        let mut objects = Vec::new();
        for i in 0..services {
            let name = format!("svc-{i}");
            objects.push((
                core("Service", "services"),
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                    "spec": {"ports": [{"name": "http", "port": PORT}]}}),
            ));
            let addresses: Vec<Value> = (0..endpoints)
                .map(|e| json!({"addresses": [endpoint_ip(i, e)], "conditions": {"ready": true}}))
                .collect();
            objects.push((
                slices.clone(),
                json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"name": format!("{name}-1"), "labels": {"kubernetes.io/service-name": name}},
                    "addressType": "IPv4", "ports": [{"name": "http", "port": PORT, "protocol": "TCP"}],
                    "endpoints": addresses}),
            ));
            objects.push((
                istio("DestinationRule", "destinationrules"),
                json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                    "metadata": {"name": name},
                    "spec": {"host": host(i), "subsets": [
                        {"name": "v1", "labels": {"version": "v1"}},
                        {"name": "v2", "labels": {"version": "v2"}}]}}),
            ));
            objects.push((
                istio("VirtualService", "virtualservices"),
                json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                    "metadata": {"name": name}, "spec": routes(i, BEFORE)}),
            ));
        }
        let total = objects.len();
        let mut created = 0;
        let mut results = futures::stream::iter(objects)
            .map(|(resource, object)| create(client.clone(), resource, object))
            .buffer_unordered(CONCURRENCY);
        while let Some(result) = results.next().await {
            result?;
            created += 1;
            if created % 1000 == 0 || created == total {
                println!("  created {created}/{total} objects through the API server");
            }
        }
        drop(results);
        Ok(KubeMesh {
            plane: Some(plane),
            client,
            root,
            objects: total,
        })
    }

    /// The kubeconfig of the control plane's admin.
    pub fn kubeconfig(&self) -> anyhow::Result<&Path> {
        Ok(self.plane()?.kubeconfig())
    }

    fn plane(&self) -> anyhow::Result<&ControlPlane> {
        self.plane.as_ref().context("the control plane was stopped")
    }

    /// An empty directory for pilot's `--config-dir`.
    pub fn config(&self) -> anyhow::Result<PathBuf> {
        let dir = self.root.join("config");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }

    /// Where pilot's log goes.
    pub fn log_file(&self) -> PathBuf {
        self.root.join("pilot.log")
    }

    /// The change: service `i`'s VirtualService from 90/10 to 50/50, patched through the API server.
    pub async fn change_weights(&self, i: usize) -> anyhow::Result<()> {
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            NAMESPACE,
            &istio("VirtualService", "virtualservices"),
        );
        let patch = json!({"spec": routes(i, AFTER)});
        api.patch(
            &format!("svc-{i}"),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .context("patching the VirtualService")?;
        Ok(())
    }

    /// The watches open on the API server now, by resource (its `apiserver_longrunning_requests` of verb
    /// WATCH), most first.
    pub fn watches(&self) -> anyhow::Result<Vec<(String, u64)>> {
        let metrics = self
            .plane()?
            .kubectl_with(&["get", "--raw", "/metrics"], "")
            .context("the API server's metrics")?;
        let mut out: Vec<(String, u64)> = Vec::new();
        for line in metrics.lines() {
            let Some(labels) = line
                .strip_prefix("apiserver_longrunning_requests{")
                .and_then(|l| l.split_once('}'))
            else {
                continue;
            };
            let label = |key: &str| {
                labels
                    .0
                    .split(',')
                    .find_map(|kv| kv.strip_prefix(&format!("{key}=\"")))
                    .map(|v| v.trim_end_matches('"').to_string())
            };
            let count = labels.1.trim().parse::<f64>().unwrap_or(0.0) as u64;
            if label("verb").as_deref() != Some("WATCH") || count == 0 {
                continue;
            }
            let resource = match (label("group"), label("resource")) {
                (Some(g), Some(r)) if !g.is_empty() => format!("{r}.{g}"),
                (_, Some(r)) => r,
                _ => continue,
            };
            match out.iter_mut().find(|(r, _)| *r == resource) {
                Some(slot) => slot.1 += count,
                None => out.push((resource, count)),
            }
        }
        out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(out)
    }
}

impl Drop for KubeMesh {
    fn drop(&mut self) {
        // The control plane stops first, then its files go.
        drop(self.plane.take());
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
