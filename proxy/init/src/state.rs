//! What the nat table already holds of ours (read from `iptables-save -t nat`), and the one
//! `iptables-restore --noflush` transaction that replaces it ([`apply_input`]) or removes it ([`clean_input`]).
//! Pure: the I/O is in `apply.rs`.

use std::fmt::Write as _;

use crate::rules::{CHAINS, Rules, TABLE};

/// The chains iptables creates itself; a jump into ours from one of them is one we added.
const BUILT_IN: [&str; 5] = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];

/// Ours, as found in a saved nat table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Saved {
    /// Which of [`CHAINS`] exist.
    pub chains: Vec<&'static str>,
    /// The rules of built-in chains that jump into one of ours, as saved (`-A OUTPUT -j ISTIO_OUTPUT`).
    pub jumps: Vec<String>,
}

impl Saved {
    /// Whether nothing of ours is there.
    pub fn is_empty(&self) -> bool {
        self.chains.is_empty() && self.jumps.is_empty()
    }
}

/// Reads the nat table of `iptables-save` output (other tables are ignored).
pub fn parse_saved(text: &str) -> Saved {
    let mut saved = Saved::default();
    let mut in_nat = false;
    for line in text.lines().map(str::trim) {
        if let Some(table) = line.strip_prefix('*') {
            in_nat = table.trim() == TABLE;
            continue;
        }
        if !in_nat {
            continue;
        }
        if let Some(decl) = line.strip_prefix(':') {
            let name = decl.split_whitespace().next().unwrap_or_default();
            if let Some(ours) = CHAINS.iter().find(|c| **c == name) {
                saved.chains.push(ours);
            }
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let [flag, chain, ..] = words[..] else {
            continue;
        };
        if flag != "-A" || !BUILT_IN.contains(&chain) {
            continue;
        }
        let jumps_to_ours = words
            .windows(2)
            .any(|w| matches!(w[0], "-j" | "-g" | "--jump" | "--goto") && CHAINS.contains(&w[1]));
        if jumps_to_ours {
            saved.jumps.push(line.to_string());
        }
    }
    saved
}

/// The transaction that makes the table hold exactly `rules` of ours, whatever an earlier run left: our chains
/// declared (created, or flushed when they exist), the earlier jumps into them deleted, then the rules. Run
/// twice, it leaves the table as the first run did.
pub fn apply_input(rules: &Rules, saved: &Saved) -> String {
    let mut text = format!("*{TABLE}\n");
    for chain in CHAINS {
        let _ = writeln!(text, ":{chain} - [0:0]");
    }
    delete_jumps(&mut text, saved);
    rules.write_rules(&mut text);
    text.push_str("COMMIT\n");
    text
}

/// The transaction that removes what [`apply_input`] added: the jumps into our chains from the built-in ones,
/// then our chains (flushed first, since they jump into each other). None when nothing of ours is there.
pub fn clean_input(saved: &Saved) -> Option<String> {
    if saved.is_empty() {
        return None;
    }
    let mut text = format!("*{TABLE}\n");
    for chain in &saved.chains {
        let _ = writeln!(text, ":{chain} - [0:0]");
    }
    delete_jumps(&mut text, saved);
    for chain in &saved.chains {
        let _ = writeln!(text, "-X {chain}");
    }
    text.push_str("COMMIT\n");
    Some(text)
}

fn delete_jumps(text: &mut String, saved: &Saved) {
    for jump in &saved.jumps {
        // A saved rule is `-A CHAIN ...`; the same words after `-D` delete it.
        let _ = writeln!(text, "-D{}", &jump["-A".len()..]);
    }
}

#[cfg(test)]
mod tests;
