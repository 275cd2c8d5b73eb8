//! Pilot's long-lived tasks and its view cache, through `pilot_server::start` on a real directory: a panic
//! in the config watcher or the certificate renewal is counted and the task restarted (reloads go on), and
//! views of proxies that are gone are pruned instead of being translated at every publication.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use pilot_config::{MeshConfig, RegistrySnapshot};
use pilot_server::{PilotOptions, RunningPilot, Translator};
use pilot_translate::ProxyInfo;
use pilot_xds::{Snapshot, SnapshotSource};
use sextant_proto::envoy::config::core::v3::Node;

/// Long enough for a loaded machine; the conditions waited for take milliseconds.
const PATIENCE: Duration = Duration::from_secs(60);

/// Translates nothing, counts translations per namespace, and panics where told to.
#[derive(Default)]
struct Faulty {
    /// Translations, by the view's namespace.
    translated: std::sync::Mutex<std::collections::BTreeMap<String, u32>>,
    /// The next `renewal_after` panics.
    renewal_panics: AtomicBool,
    renewals: AtomicU32,
}

impl Translator for Faulty {
    fn translate(&self, mesh: &MeshConfig, _: &RegistrySnapshot, view: &ProxyInfo) -> Snapshot {
        assert!(
            !mesh.services.contains_key("boom.example.com"),
            "injected translation panic"
        );
        *self
            .translated
            .lock()
            .expect("lock")
            .entry(view.namespace.clone())
            .or_default() += 1;
        Snapshot::default()
    }

    fn renewal_after(&self, _: SystemTime) -> Option<SystemTime> {
        self.renewals.fetch_add(1, Ordering::SeqCst);
        assert!(
            !self.renewal_panics.swap(false, Ordering::SeqCst),
            "injected renewal panic"
        );
        None
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sextant-pilot-{name}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    dir
}

fn service_entry(host: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {}}}\nspec:\n  hosts: [{host}]\n  location: MESH_EXTERNAL\n  resolution: DNS\n  ports: [{{number: 443, name: tls, protocol: TLS}}]\n",
        host.split('.').next().unwrap_or("x")
    )
}

async fn start(dir: &std::path::Path, translator: Arc<Faulty>) -> RunningPilot {
    let options = PilotOptions {
        config_dir: dir.to_path_buf(),
        xds_addr: "127.0.0.1:0".parse().expect("addr"),
        monitoring_addr: "127.0.0.1:0".parse().expect("addr"),
        poll: Duration::from_millis(50),
        debounce: Duration::from_millis(20),
        ..PilotOptions::default()
    };
    pilot_server::start(options, translator, std::future::pending())
        .await
        .expect("pilot starts")
}

fn metric(pilot: &RunningPilot, series: &str) -> Option<f64> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &pilot.monitor.registry).expect("encode");
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn node(namespace: &str) -> Node {
    Node {
        id: format!("sidecar~10.0.0.1~app.{namespace}~{namespace}.svc.cluster.local"),
        ..Default::default()
    }
}

/// The defect of 41954b2: the watcher and the renewal loop were detached, so one panic stopped reloads (or
/// certificate renewal) for good while `/ready` answered 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_watcher_or_renewal_is_counted_and_restarted() {
    let dir = scratch("panics");
    std::fs::write(dir.join("a.yaml"), service_entry("a.example.com")).expect("write");
    let translator = Arc::new(Faulty::default());
    translator.renewal_panics.store(true, Ordering::SeqCst);
    let pilot = start(&dir, translator.clone()).await;
    wait_for("the renewal loop's panic to be counted", || {
        metric(
            &pilot,
            "pilot_task_panics_total{task=\"certificate-renewal\"}",
        ) == Some(1.0)
    })
    .await;
    let renewals = translator.renewals.load(Ordering::SeqCst);
    wait_for("the renewal loop to run again", || {
        translator.renewals.load(Ordering::SeqCst) > renewals
    })
    .await;

    // A view in use, so that a publication translates.
    pilot.monitor.source.snapshot(&node("default")).await;
    let (before, _) = pilot.monitor.source.mesh();
    std::fs::write(dir.join("boom.yaml"), service_entry("boom.example.com")).expect("write");
    wait_for("the watcher's panic to be counted", || {
        metric(&pilot, "pilot_task_panics_total{task=\"config-watcher\"}") == Some(1.0)
    })
    .await;
    assert_eq!(
        pilot.monitor.source.mesh().0,
        before,
        "the panicked load published nothing"
    );

    // Reloads go on.
    std::fs::remove_file(dir.join("boom.yaml")).expect("remove");
    std::fs::write(dir.join("b.yaml"), service_entry("b.example.com")).expect("write");
    wait_for("the next change to be served", || {
        let (_, mesh) = pilot.monitor.source.mesh();
        mesh.config.services.contains_key("b.example.com")
    })
    .await;
    wait_for("every task to be up", || {
        pilot.monitor.tasks.down().is_empty()
    })
    .await;
    assert_eq!(
        metric(&pilot, "pilot_task_panics_total{task=\"config-watcher\"}"),
        Some(1.0)
    );
}

/// Views whose proxies stopped asking are dropped after two publications, not translated at each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_of_proxies_that_are_gone_are_pruned() {
    let dir = scratch("prune");
    std::fs::write(dir.join("a.yaml"), service_entry("a.example.com")).expect("write");
    let translator = Arc::new(Faulty::default());
    let pilot = start(&dir, translator.clone()).await;
    let source = pilot.monitor.source.clone();
    source.snapshot(&node("stays")).await;
    source.snapshot(&node("leaves")).await;
    assert_eq!(source.views(), 2);
    let translations = |ns: &str| {
        translator
            .translated
            .lock()
            .expect("lock")
            .get(ns)
            .copied()
            .unwrap_or_default()
    };
    for (i, host) in ["b", "c", "d", "e"].into_iter().enumerate() {
        let (generation, _) = source.mesh();
        std::fs::write(
            dir.join(format!("{host}.yaml")),
            service_entry(&format!("{host}.example.com")),
        )
        .expect("write");
        wait_for("the change to be published", || {
            source.mesh().0 > generation
        })
        .await;
        // The proxy that stays asks for each generation, as its stream does when woken.
        source.snapshot(&node("stays")).await;
        assert_eq!(translations("stays"), i as u32 + 2, "once per generation");
    }
    assert_eq!(source.views(), 1, "the view nobody asks for is gone");
    assert_eq!(
        translations("leaves"),
        3,
        "translated at first, then for the two generations it was given to come back"
    );
    assert_eq!(metric(&pilot, "pilot_views_pruned_total"), Some(1.0));
}

/// Kubernetes mode's follower subscribed to the registry's changes only after the first load, so a change in
/// between (or while the follower was being restarted) waited for the next change to be served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_change_before_the_follower_subscribes_is_published() {
    let dir = scratch("follow");
    std::fs::write(dir.join("a.yaml"), service_entry("a.example.com")).expect("write");
    let source = Arc::new(pilot_server::MeshSource::new(Arc::new(Faulty::default())));
    let second = Arc::new(pilot_config::FileRegistry::new());
    let watch = Arc::new(
        pilot_server::ConfigWatch::new(dir.clone(), source.clone()).with_registry(second.clone()),
    );
    assert!(watch.load(true), "the directory loads");
    let mut late = (*source.mesh().1.services.services["a.example.com"]).clone();
    late.hostname = "late.example.com".to_string();
    second.update(Arc::new(
        [(late.hostname.clone(), Arc::new(late))]
            .into_iter()
            .collect(),
    ));
    let follower = tokio::spawn(watch.clone().follow());
    wait_for("the registry's service to be published", || {
        source
            .mesh()
            .1
            .services
            .services
            .contains_key("late.example.com")
    })
    .await;
    follower.abort();
    let _ = std::fs::remove_dir_all(&dir);
}
