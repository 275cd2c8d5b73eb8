//! The I/O: `iptables-save -t nat` to see what is there, one `iptables-restore --noflush` transaction to change
//! it (and the same with `ip6tables-*` for IPv6). The machine's own tools do the netlink work.

use std::io::Write as _;
use std::process::{Command, Stdio};

use crate::rules::{CHAINS, Family, RuleSet, TABLE};
use crate::state::{apply_input, clean_input, parse_saved};

/// A command that could not run or failed; the change it carried was not made (a restore is one
/// transaction).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The program could not be started (not installed, not on PATH).
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// The program ran and failed.
    #[error("{program} failed ({status}): {stderr}")]
    Failed {
        /// The program and its arguments.
        program: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it said (trimmed).
        stderr: String,
    },
}

impl ApplyError {
    /// What to do about it, one line.
    pub fn hint(&self) -> &'static str {
        match self {
            ApplyError::Spawn { .. } => {
                "install iptables (Debian: apt-get install -y iptables); ip6tables comes with it"
            }
            ApplyError::Failed { .. } => {
                "run as root (CAP_NET_ADMIN) in the pod's network namespace; --dry-run shows the rules without applying them"
            }
        }
    }
}

/// What one family's change did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// Which family.
    pub family: Family,
    /// Rules appended ([`apply`]) or jump rules deleted ([`clean`]).
    pub rules: usize,
    /// Chains written ([`apply`]) or deleted ([`clean`]).
    pub chains: usize,
}

/// Writes `set` into the nat table(s), replacing what an earlier run wrote: one transaction per family.
pub fn apply(set: &RuleSet) -> Result<Vec<Applied>, ApplyError> {
    let mut done = Vec::new();
    for rules in std::iter::once(&set.v4).chain(&set.v6) {
        let saved = parse_saved(&save(rules.family)?);
        restore(rules.family, &apply_input(rules, &saved))?;
        done.push(Applied {
            family: rules.family,
            rules: rules.rules.len(),
            chains: CHAINS.len(),
        });
    }
    Ok(done)
}

/// Removes our chains and the jumps into them, from IPv4 and, when `ip6tables` is there (or `ipv6` says it
/// must be), IPv6; a family without any of ours is left untouched.
pub fn clean(ipv6: bool) -> Result<Vec<Applied>, ApplyError> {
    let mut done = Vec::new();
    for family in [Family::V4, Family::V6] {
        let text = match save(family) {
            Ok(text) => text,
            // Without ip6tables nothing of ours can be in the IPv6 tables.
            Err(ApplyError::Spawn { .. }) if family == Family::V6 && !ipv6 => continue,
            Err(e) => return Err(e),
        };
        let saved = parse_saved(&text);
        let Some(input) = clean_input(&saved) else {
            continue;
        };
        restore(family, &input)?;
        done.push(Applied {
            family,
            rules: saved.jumps.len(),
            chains: saved.chains.len(),
        });
    }
    Ok(done)
}

fn save(family: Family) -> Result<String, ApplyError> {
    let program = format!("{}-save", family.tool());
    let out = Command::new(&program)
        .args(["-t", TABLE])
        .stdin(Stdio::null())
        .output()
        .map_err(|source| ApplyError::Spawn {
            program: program.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(ApplyError::Failed {
            program: format!("{program} -t {TABLE}"),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn restore(family: Family, input: &str) -> Result<(), ApplyError> {
    let program = format!("{}-restore", family.tool());
    // -w: wait for the xtables lock instead of failing when another iptables command holds it.
    let args = ["-w", "--noflush"];
    let mut child = Command::new(&program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ApplyError::Spawn {
            program: program.clone(),
            source,
        })?;
    let written = child
        .stdin
        .take()
        .map(|mut stdin| stdin.write_all(input.as_bytes()));
    let out = child
        .wait_with_output()
        .map_err(|source| ApplyError::Spawn {
            program: program.clone(),
            source,
        })?;
    if !out.status.success() || !matches!(written, Some(Ok(()))) {
        let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if let Some(Err(e)) = written {
            stderr = format!("{stderr} (writing its input: {e})");
        }
        return Err(ApplyError::Failed {
            program: format!("{program} {}", args.join(" ")),
            status: out.status,
            stderr,
        });
    }
    Ok(())
}
