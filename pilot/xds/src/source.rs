//! Where the ADS server gets a proxy's snapshot, and how it learns that snapshots changed.

use std::sync::{Arc, RwLock};

use sextant_proto::envoy::config::core::v3::Node;
use tokio::sync::watch;

use crate::snapshot::{Snapshot, SnapshotError};

/// Supplies snapshots: per proxy (a translator builds each proxy's view) and a change signal.
pub trait SnapshotSource: Send + Sync + 'static {
    /// The snapshot for the proxy `node` (taken from the first request of its stream). A source that has
    /// CPU work to do (translating) does it off the runtime's workers and awaits it.
    fn snapshot(&self, node: &Node) -> impl Future<Output = Arc<Snapshot>> + Send;

    /// A receiver that is marked changed whenever [`SnapshotSource::snapshot`] may answer differently.
    /// Streams wake on it and compare what they would send with what they sent.
    fn changes(&self) -> watch::Receiver<u64>;
}

/// The same snapshot for every proxy, replaced as a whole; only consistent snapshots are accepted.
#[derive(Debug)]
pub struct SharedSnapshot {
    current: RwLock<Arc<Snapshot>>,
    generation: watch::Sender<u64>,
}

impl Default for SharedSnapshot {
    fn default() -> Self {
        Self::new(Snapshot::default())
    }
}

impl SharedSnapshot {
    /// Starts with `initial` (not checked: an empty snapshot is consistent).
    pub fn new(initial: Snapshot) -> Self {
        SharedSnapshot {
            current: RwLock::new(Arc::new(initial)),
            generation: watch::Sender::new(0),
        }
    }

    /// Replaces the snapshot if it is consistent; otherwise the previous one keeps serving.
    pub fn publish(&self, snapshot: Snapshot) -> Result<(), SnapshotError> {
        snapshot.consistent()?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(snapshot);
        self.generation.send_modify(|g| *g += 1);
        Ok(())
    }

    /// The snapshot being served.
    pub fn current(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl SnapshotSource for SharedSnapshot {
    async fn snapshot(&self, _node: &Node) -> Arc<Snapshot> {
        self.current()
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }
}
