//! Routes each RateLimit to the backend its scope names: LOCAL to this process, GLOBAL to the shared backend
//! when the hub has one (else to this process, where one hub counts exactly what a fleet of one would).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::{LimitSpec, Limiter, LocalBackend, QuotaBackend, Scope};

/// A backend for LOCAL limits and, optionally, one for GLOBAL limits.
pub struct ScopedBackend {
    local: Arc<LocalBackend>,
    global: Option<Arc<dyn QuotaBackend>>,
    /// GLOBAL limits already warned about (counted locally for want of a global backend).
    warned: Mutex<HashSet<String>>,
}

impl ScopedBackend {
    /// LOCAL limits in `local`, GLOBAL ones in `global` (or in `local` when there is none).
    pub fn new(local: Arc<LocalBackend>, global: Option<Arc<dyn QuotaBackend>>) -> Self {
        ScopedBackend {
            local,
            global,
            warned: Mutex::new(HashSet::new()),
        }
    }

    /// The backend for LOCAL limits.
    pub fn local(&self) -> &LocalBackend {
        &self.local
    }
}

impl QuotaBackend for ScopedBackend {
    fn limiter(&self, name: &str, spec: LimitSpec) -> Arc<dyn Limiter> {
        match (spec.scope, &self.global) {
            (Scope::Global, Some(global)) => global.limiter(name, spec),
            (Scope::Global, None) => {
                let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
                if warned.insert(name.to_string()) {
                    tracing::warn!(
                        ratelimit = name,
                        "RateLimit has scope GLOBAL but the hub has no global backend (--redis-url): \
                         counted by this hub alone"
                    );
                }
                self.local.limiter(name, spec)
            }
            (Scope::Local, _) => self.local.limiter(name, spec),
        }
    }

    fn retain(&self, live: &[String]) {
        self.local.retain(live);
        if let Some(global) = &self.global {
            global.retain(live);
        }
        self.warned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|n| live.contains(n));
    }

    fn housekeeping(&self) {
        self.local.housekeeping();
        if let Some(global) = &self.global {
            global.housekeeping();
        }
    }
}
