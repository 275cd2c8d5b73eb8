//! The tokio runtimes an in-process benchmark runs its sides on: one worker thread each (or a few for a load
//! side), its threads named so that [`crate::cpu`] can tell the sides apart, optionally all pinned to one CPU
//! ([`crate::pin`]).

use anyhow::Context as _;
use tokio::runtime::{Builder, Runtime};

use crate::pin;

/// A runtime with one worker thread whose threads are named `name`, all pinned to `cpu` if given.
pub fn one_worker(name: &str, cpu: Option<usize>) -> anyhow::Result<Runtime> {
    workers(name, 1, cpu)
}

/// A runtime with `n` worker threads (at least one) whose threads are named `name`, all pinned to `cpu` if
/// given: a load side that spreads its calls over several threads, so that no one thread bounds the rate.
pub fn workers(name: &str, n: usize, cpu: Option<usize>) -> anyhow::Result<Runtime> {
    let mut builder = Builder::new_multi_thread();
    if let Some(cpu) = cpu {
        builder.on_thread_start(move || pin::current_thread(cpu));
    }
    builder
        .worker_threads(n.max(1))
        .thread_name(name)
        .enable_all()
        .build()
        .with_context(|| format!("building the {name} runtime"))
}
