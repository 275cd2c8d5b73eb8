//! `sextant proxy-init`: the iptables rules Istio's istio-init (`pilot-agent istio-iptables`) writes into a
//! pod's network namespace, so that unmodified applications are captured by the sidecar: outbound TCP
//! redirected to the proxy's 15001 (virtualOutbound), inbound TCP to 15006 (virtualInbound), the proxy's own
//! traffic (its uid/gid) let through, and loopback handled as Istio handles it.
//!
//! Three steps, the first two pure:
//! 1. [`Flags`] (istio-init's flags, as strings) → [`Flags::validate`] → [`Config`], or one [`FlagError`]
//!    naming the flag, with a hint;
//! 2. [`Config`] → [`rules`] → [`RuleSet`] (the nat table's chains and rules for IPv4, and IPv6 when asked) →
//!    [`RuleSet::restore_text`], the `iptables-restore` input `--dry-run` prints;
//! 3. [`apply`] / [`clean`]: read the nat table with `iptables-save`, build one `iptables-restore --noflush`
//!    transaction from it ([`apply_input`], [`clean_input`], pure), and run it. Re-running replaces the
//!    previous rules (our chains are flushed, our jumps from the built-in chains deleted first), so a second run
//!    leaves `iptables-save` unchanged; `--clean` removes our four chains and the jumps to them, nothing else.
//!
//! The proxy must run as the uid or gid given to `-u`/`-g` (Istio's 1337): that, not a socket mark, is what
//! lets its own connections leave uncaptured.

mod apply;
mod flags;
mod rules;
mod state;

pub use apply::{Applied, ApplyError, apply, clean};
pub use flags::{Cidr, Config, FlagError, Flags, Inbound, Outbound};
pub use rules::{CHAINS, Family, Rule, RuleSet, Rules, TABLE, rules};
pub use state::{Saved, apply_input, clean_input, parse_saved};
