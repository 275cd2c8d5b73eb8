//! The proxy's side of the hub's Check (`sextant.mixer.v1.Mixer/Check`): what lets a sidecar call the hub
//! for a fraction of its requests.
//!
//! The hub answers each Check with the attributes its decision depended on (`referenced_attributes`: an
//! attribute, or one key of a map attribute, and whether it was present with some value or absent), how
//! long the answer holds (`valid_duration`) and for how many requests (`valid_use_count`), and the revision
//! of its configuration. [`CheckCache`] keeps such answers keyed by exactly those attributes' values, so a
//! later request agreeing on all of them gets the same answer without a call, as Mixer's client did. The
//! cache is bounded in entries and in the number of distinct attribute sets, and every refusal to cache or
//! eviction is counted ([`CacheStats`]).
//!
//! [`Checker`] makes the calls: the cache first, else the hub's Check over the hub's cluster, else — the hub
//! unreachable, slow or overloaded — what stands in for it ([`Fallback`]): a stale answer (never one of
//! FAIL_CLOSE policies), the failure policy an older answer carried, or the filter's own.

mod cache;
mod client;

pub use cache::{CacheStats, CheckCache, Fallback, Limits};
pub use client::{CHECK_PATH, CheckStats, Checker, Refusal, Verdict};
