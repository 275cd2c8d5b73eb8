//! Which filter chain takes a connection, as Envoy chooses (`FilterChainManagerImpl::findFilterChain`).
//!
//! Envoy walks the chains' matches as a tree, one property at a time, most specific branch first, and never
//! backs up: destination port (chains naming the connection's port, else chains naming none), server name
//! (exact, then the longest wildcard, then none), transport protocol (exact, then none), application
//! protocol (the first of the connection's that a chain names, then none). When the branch taken holds no
//! chain for a later property, no chain matches (and the default chain, if any, takes the connection), even
//! if a less specific branch would have had one.

use proxy_config::listener::ChainMatch;

use crate::inspect::Detected;

/// The connection as chains match it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Connection<'a> {
    /// The original destination's port of a redirected connection, else the port it arrived on.
    pub destination_port: u16,
    /// What the listener filters found.
    pub detected: &'a Detected,
}

/// The index of the chain among `chains` that takes `connection`; `None` when none does.
pub(crate) fn select_chain<'a>(
    chains: impl IntoIterator<Item = &'a ChainMatch>,
    connection: Connection<'_>,
) -> Option<usize> {
    let chains: Vec<&ChainMatch> = chains.into_iter().collect();
    let Connection {
        destination_port,
        detected,
    } = connection;
    let sni = detected.server_name.as_deref();
    let protocols = &detected.application_protocols;
    // Keeps the candidates that match at the best score any of them has (`None`: does not match).
    let best = |candidates: Vec<usize>, score: &dyn Fn(&ChainMatch) -> Option<usize>| {
        let scored: Vec<(usize, usize)> = candidates
            .into_iter()
            .filter_map(|i| Some((i, score(chains[i])?)))
            .collect();
        let top = scored.iter().map(|(_, s)| *s).max();
        scored
            .into_iter()
            .filter(|(_, s)| Some(*s) == top)
            .map(|(i, _)| i)
            .collect::<Vec<_>>()
    };
    let candidates = (0..chains.len()).collect();
    let candidates = best(candidates, &|m| match m.destination_port {
        None => Some(0),
        Some(port) => (port == destination_port).then_some(1),
    });
    let candidates = best(candidates, &|m| {
        if m.server_names.is_empty() {
            return Some(0);
        }
        let sni = sni?;
        m.server_names
            .iter()
            .filter_map(|n| {
                if n == sni {
                    Some(usize::MAX)
                } else {
                    let suffix = n.strip_prefix('*')?;
                    (sni.len() > suffix.len() && sni.ends_with(suffix)).then_some(suffix.len())
                }
            })
            .max()
    });
    let candidates = best(candidates, &|m| match m.transport_protocol.as_str() {
        "" => Some(0),
        t if t == detected.transport => Some(1),
        _ => None,
    });
    let candidates = best(candidates, &|m| {
        if m.application_protocols.is_empty() {
            return Some(0);
        }
        // Envoy tries the connection's protocols in their order: the earlier one named, the better.
        let first = protocols
            .iter()
            .position(|p| m.application_protocols.contains(p))?;
        Some(protocols.len() - first)
    });
    candidates.first().copied()
}

#[cfg(test)]
mod tests;
