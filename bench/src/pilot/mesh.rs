//! The benchmark mesh, written as a user would write it into pilot's configuration directory: per service a
//! `ServiceEntry` (one HTTP port, STATIC endpoints labelled `app` and `version` v1|v2) with its
//! `DestinationRule` (subsets v1 and v2) in `services/svc-N.yaml`, and its `VirtualService` (a 90/10 split
//! between the subsets) in `routes/svc-N.yaml`. The change the benchmark times rewrites one of those
//! VirtualServices to 50/50.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// The namespace of every service and of every simulated proxy.
pub const NAMESPACE: &str = "bench";
/// The service port (the same for every service, as in most meshes: one route configuration `8080`).
pub const PORT: u16 = 8080;
/// The weights of v1/v2 before the change.
pub const BEFORE: (u32, u32) = (90, 10);
/// The weights of v1/v2 after the change.
pub const AFTER: (u32, u32) = (50, 50);

/// The fully qualified host of service `i`.
pub fn host(i: usize) -> String {
    format!("svc-{i}.{NAMESPACE}.svc.cluster.local")
}

/// A temporary configuration directory holding the mesh; removed on drop.
pub struct MeshDir {
    root: PathBuf,
    /// Files written.
    pub files: usize,
    /// Bytes of YAML written.
    pub bytes: usize,
}

impl MeshDir {
    /// Writes `services` services with `endpoints` endpoints each into a fresh temporary directory.
    pub fn write(services: usize, endpoints: usize) -> anyhow::Result<MeshDir> {
        let root = std::env::temp_dir().join(format!("pilot-bench-{}", std::process::id()));
        if root.exists() {
            std::fs::remove_dir_all(&root)
                .with_context(|| format!("removing the stale {}", root.display()))?;
        }
        let mut dir = MeshDir {
            root,
            files: 0,
            bytes: 0,
        };
        for sub in ["services", "routes"] {
            let p = dir.config().join(sub);
            std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        }
        for i in 0..services {
            let service = service_yaml(i, endpoints);
            dir.put(&dir.service_file(i), &service)?;
            let route = virtual_service_yaml(i, BEFORE);
            dir.put(&dir.route_file(i), &route)?;
        }
        Ok(dir)
    }

    /// The directory pilot is given (`--config-dir`).
    pub fn config(&self) -> PathBuf {
        self.root.join("config")
    }

    /// Where pilot's log goes: next to the directory, not in it, so it outlives the run.
    pub fn log_file(&self) -> PathBuf {
        self.root.with_extension("log")
    }

    fn service_file(&self, i: usize) -> PathBuf {
        self.config().join("services").join(format!("svc-{i}.yaml"))
    }

    fn route_file(&self, i: usize) -> PathBuf {
        self.config().join("routes").join(format!("svc-{i}.yaml"))
    }

    fn put(&mut self, path: &Path, text: &str) -> anyhow::Result<()> {
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        self.files += 1;
        self.bytes += text.len();
        Ok(())
    }

    /// The change: rewrites service `i`'s VirtualService from 90/10 to 50/50 in place (as an editor would).
    pub fn change_weights(&self, i: usize) -> anyhow::Result<()> {
        let path = self.route_file(i);
        std::fs::write(&path, virtual_service_yaml(i, AFTER))
            .with_context(|| format!("rewriting {}", path.display()))
    }
}

impl Drop for MeshDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The IPv4 address of endpoint `e` of service `i`: in 10.64.0.0/10, apart from the proxies' 10.0.X.Y.
pub fn endpoint_ip(i: usize, e: usize) -> String {
    let n = i * 256 + e;
    format!(
        "10.{}.{}.{}",
        64 + ((n >> 16) & 0x3f),
        (n >> 8) & 0xff,
        n & 0xff
    )
}

/// Service `i`'s ServiceEntry and DestinationRule.
pub fn service_yaml(i: usize, endpoints: usize) -> String {
    let mut y = String::new();
    let _ = write!(
        y,
        "apiVersion: networking.istio.io/v1\n\
         kind: ServiceEntry\n\
         metadata:\n  name: svc-{i}\n  namespace: {NAMESPACE}\n\
         spec:\n  hosts:\n  - {host}\n  location: MESH_INTERNAL\n  resolution: STATIC\n\
         \x20 ports:\n  - number: {PORT}\n    name: http\n    protocol: HTTP\n  endpoints:\n",
        host = host(i)
    );
    for e in 0..endpoints {
        let version = if e % 2 == 0 { "v1" } else { "v2" };
        let _ = write!(
            y,
            "  - address: {ip}\n    ports:\n      http: {PORT}\n    labels:\n      app: svc-{i}\n      version: {version}\n",
            ip = endpoint_ip(i, e)
        );
    }
    let _ = write!(
        y,
        "---\n\
         apiVersion: networking.istio.io/v1\n\
         kind: DestinationRule\n\
         metadata:\n  name: svc-{i}\n  namespace: {NAMESPACE}\n\
         spec:\n  host: svc-{i}\n  trafficPolicy:\n    loadBalancer:\n      simple: LEAST_REQUEST\n\
         \x20 subsets:\n  - name: v1\n    labels:\n      version: v1\n  - name: v2\n    labels:\n      version: v2\n"
    );
    y
}

/// Service `i`'s VirtualService splitting its traffic `weights` between v1 and v2.
pub fn virtual_service_yaml(i: usize, weights: (u32, u32)) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\n\
         kind: VirtualService\n\
         metadata:\n  name: svc-{i}\n  namespace: {NAMESPACE}\n\
         spec:\n  hosts:\n  - svc-{i}\n  http:\n  - route:\n\
         \x20   - destination:\n        host: svc-{i}\n        subset: v1\n      weight: {v1}\n\
         \x20   - destination:\n        host: svc-{i}\n        subset: v2\n      weight: {v2}\n",
        v1 = weights.0,
        v2 = weights.1
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_mesh_validates_before_and_after_the_change() {
        let dir = MeshDir::write(3, 4).expect("write");
        let mesh = pilot_config::load_and_validate(&dir.config()).expect("valid");
        assert_eq!(mesh.services.len(), 3);
        dir.change_weights(1).expect("change");
        pilot_config::load_and_validate(&dir.config()).expect("valid after the change");
    }
}
