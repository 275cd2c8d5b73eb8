//! A bookinfo workload's application: in `sextant dev`'s own process on loopback, or with `--intercept` as
//! `sextant dev app NAME`, a process in the workload's pod. Either way its behaviour follows `apps.yaml`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use sextant_bookinfo::{Behaviour, Behaviours};

use super::mesh::{Plan, Planned};

/// What `sextant dev app` prints once it listens.
pub const LISTENING: &str = "bookinfo app: listening on ";

/// Serves `planned`'s application until `stop` turns true, its behaviour from `apps` (see [`watch`]).
pub async fn serve(
    planned: &Planned,
    apps: PathBuf,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let w = &planned.workload;
    let listener = tokio::net::TcpListener::bind(w.listen)
        .await
        .with_context(|| format!("{} cannot listen on {}", w.name(), w.listen))?;
    let behaviours = Behaviours::default();
    watch(apps, behaviours.clone(), stop.clone());
    let mut stop = stop;
    tokio::spawn(sextant_bookinfo::serve(
        w.clone(),
        listener,
        behaviours,
        async move {
            let _ = stop.wait_for(|s| *s).await;
        },
    ));
    Ok(())
}

/// `sextant dev app NAME`: workload `NAME` of `plan`, configured from `dir`, until Ctrl-C or SIGTERM.
pub async fn run(plan: &Plan, dir: PathBuf, name: &str) -> anyhow::Result<()> {
    let planned = plan
        .workload(name)
        .with_context(|| format!("no bookinfo workload is called {name:?}"))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    serve(&planned, dir.join("apps.yaml"), stop_rx).await?;
    eprintln!("{LISTENING}{}", planned.workload.listen);
    crate::shutdown_signal().await;
    let _ = stop_tx.send(true);
    Ok(())
}

/// Applies `path` (`apps.yaml`) to `behaviours` now and whenever it changes (looked at every second); an
/// invalid file is reported once and the last valid one stays.
fn watch(path: PathBuf, behaviours: Behaviours, mut stop: tokio::sync::watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut seen = None;
        loop {
            let stamp = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
            if stamp != seen {
                seen = stamp;
                let read = std::fs::read_to_string(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|text| {
                        if text.trim().is_empty() {
                            return Ok(Default::default());
                        }
                        serde_saphyr::from_str::<HashMap<String, Behaviour>>(&text)
                            .map_err(|e| e.to_string())
                    });
                match read {
                    Ok(all) => behaviours.set(all),
                    Err(e) => eprintln!(
                        "sextant dev: {} is not valid ({e}); the workloads keep their behaviour",
                        path.display()
                    ),
                }
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    });
}
