//! The exporters' threads: each exporter runs on a thread of its own with a current-thread runtime, so
//! encoding and a slow or dead collector never touch a role's workers.

use std::future::Future;
use std::thread::JoinHandle;

/// Runs `run(client)` on a thread named `name` in a runtime of its own, `build` making the client there
/// first (tonic's channels want a runtime to be made in). A client that cannot be built is an error now,
/// before this returns.
pub(crate) fn spawn<C, Fut>(
    name: &'static str,
    build: impl FnOnce() -> Result<C, String> + Send + 'static,
    run: impl FnOnce(C) -> Fut + Send + 'static,
) -> Result<JoinHandle<()>, String>
where
    Fut: Future<Output = ()>,
{
    let (built_tx, built_rx) = std::sync::mpsc::sync_channel(1);
    let thread = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    let _ = built_tx.send(Err(format!("the {name} thread's runtime: {e}")));
                    return;
                }
            };
            runtime.block_on(async move {
                let client = match build() {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = built_tx.send(Err(e));
                        return;
                    }
                };
                let _ = built_tx.send(Ok(()));
                run(client).await;
            });
        })
        .map_err(|e| format!("the {name} thread: {e}"))?;
    match built_rx.recv() {
        Ok(Ok(())) => Ok(thread),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!(
            "the {name} thread ended before its client was built"
        )),
    }
}
