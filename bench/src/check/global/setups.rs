//! The scenarios of `check-bench --global`: who answers (hubs LOCAL or GLOBAL, or envoyproxy/ratelimit),
//! through which API, under which limit.

use super::limits::Limit;

/// Who answers a scenario's calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Servers {
    /// Hubs in this process, sharing the server runtime; with GLOBAL limits in Redis, or LOCAL ones.
    Hubs {
        /// How many (the client spreads its connections over them).
        count: usize,
        /// GLOBAL limits counted in Redis; else the same limits LOCAL.
        global: bool,
    },
    /// envoyproxy/ratelimit, a child process.
    Peer,
}

/// The API of the calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Door {
    /// The hub's native Check (check-bench's plain traffic: policies, then five RateLimits).
    Native,
    /// Envoy's rate-limit service, `ShouldRateLimit` with two descriptors.
    Rls,
}

/// Whether the limits refuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Regime {
    /// Every limit at the scenario's limit: nothing refused.
    Steady,
    /// `per-service` at the scenario's limit, the other four at the last --global-limit: most requests
    /// refused.
    OverLimit,
}

/// One scenario.
#[derive(Clone, Debug)]
pub struct Setup {
    /// Its label.
    pub name: &'static str,
    /// Who answers.
    pub servers: Servers,
    /// Which API.
    pub door: Door,
    /// Which limits.
    pub regime: Regime,
    /// The limit (see [`Regime`]).
    pub limit: Limit,
}

/// The scenarios, in the order they run: the LOCAL baseline (and three LOCAL hubs, the control of three
/// GLOBAL ones) at the first of `limits`; one and three GLOBAL hubs at each; LOCAL and GLOBAL with `per-service` at `over`; the hub's rate-limit service GLOBAL at each
/// of `limits`; envoyproxy/ratelimit at the first.
pub fn setups(limits: &[Limit], over: Limit) -> Vec<Setup> {
    let Some(&first) = limits.first() else {
        return Vec::new();
    };
    let hubs = |count, global| Servers::Hubs { count, global };
    let new = |name, servers, door, regime, limit| Setup {
        name,
        servers,
        door,
        regime,
        limit,
    };
    let (native, rls) = (Door::Native, Door::Rls);
    let (steady, over_limit) = (Regime::Steady, Regime::OverLimit);
    let mut v = vec![
        new("LOCAL, 1 hub", hubs(1, false), native, steady, first),
        new("LOCAL, 3 hubs", hubs(3, false), native, steady, first),
    ];
    for &l in limits {
        v.push(new("GLOBAL, 1 hub", hubs(1, true), native, steady, l));
        v.push(new("GLOBAL, 3 hubs", hubs(3, true), native, steady, l));
    }
    v.push(new(
        "LOCAL, 1 hub, over",
        hubs(1, false),
        native,
        over_limit,
        over,
    ));
    v.push(new(
        "GLOBAL, 1 hub, over",
        hubs(1, true),
        native,
        over_limit,
        over,
    ));
    for &l in limits {
        v.push(new("RLS: hub GLOBAL", hubs(1, true), rls, steady, l));
    }
    v.push(new(
        "RLS: envoyproxy/ratelimit",
        Servers::Peer,
        rls,
        steady,
        first,
    ));
    v
}
