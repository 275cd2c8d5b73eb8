//! `sextant proxy-init`: the rules istio-init writes, checked two ways.
//!
//! - Against Istio: `--dry-run` for flag sets whose rules Istio's golden files list
//!   (`tools/istio-iptables/pkg/capture/testdata/*.golden` and `cni/pkg/plugin/testdata/*.txt.golden`, which
//!   run the same capture code, as of istio/istio 86c9f01f). The expected rules below are copied from those
//!   files; the comparison ignores only the order of chains (rules are compared chain by chain, in order), the
//!   form of a chain's declaration (`-N X` there, `:X - [0:0]` here) and whitespace. Flag sets the goldens do
//!   not cover exactly are composed from golden lines, each saying which.
//! - In a network namespace (root): applied twice (identical `iptables-save`), real connections captured or
//!   not as Istio captures them, then `--clean` leaves the nat table as it was.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Output};
use std::time::Duration;

use common::{Netns, Proc, scratch};

// ---------------------------------------------------------------------------------------------------------
// Against Istio's goldens.

/// One table of an iptables-restore text, normalised: its chains, and each chain's rules in order.
#[derive(Debug, PartialEq, Eq)]
struct Table {
    name: String,
    chains: BTreeSet<String>,
    rules: BTreeMap<String, Vec<String>>,
}

const BUILT_IN: [&str; 5] = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];

/// The tables of `text`, in order (IPv4 first, then IPv6 when there is an IPv6 part).
fn tables(text: &str) -> Vec<Table> {
    let mut done = Vec::new();
    let mut table: Option<Table> = None;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('*') {
            table = Some(Table {
                name: name.trim().to_string(),
                chains: BTreeSet::new(),
                rules: BTreeMap::new(),
            });
            continue;
        }
        let t = table
            .as_mut()
            .unwrap_or_else(|| panic!("{line:?} outside a table"));
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[..] {
            ["COMMIT"] => done.extend(table.take()),
            ["-N", chain] => {
                t.chains.insert(chain.to_string());
            }
            [decl, ..] if decl.starts_with(':') => {
                if !BUILT_IN.contains(&&decl[1..]) {
                    t.chains.insert(decl[1..].to_string());
                }
            }
            ["-A", chain, ref rest @ ..] => t
                .rules
                .entry(chain.to_string())
                .or_default()
                .push(rest.join(" ")),
            _ => panic!("unexpected line {line:?}"),
        }
    }
    assert!(table.is_none(), "a table without COMMIT in:\n{text}");
    done
}

/// `sextant proxy-init --dry-run FLAGS...`: its output, which must succeed.
fn dry_run(flags: &[&str]) -> String {
    let out = sextant(&["proxy-init", "--dry-run"], flags);
    assert!(
        out.status.success(),
        "proxy-init --dry-run {flags:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

fn sextant(sub: &[&str], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sextant"))
        .args(sub)
        .args(args)
        .output()
        .expect("run sextant")
}

/// Our `--dry-run` for `flags` holds the same rules as `expected`, chain by chain.
fn same_rules(case: &str, flags: &[&str], expected: &str) {
    let ours = dry_run(flags);
    assert_eq!(
        tables(&ours),
        tables(expected),
        "{case}: `sextant proxy-init --dry-run {flags:?}` differs from Istio's rules.\n--- ours:\n{ours}\n--- Istio's:\n{expected}"
    );
}

/// The IPv4 part every golden shares, up to its inbound rules.
const V4_HEAD: &str = "
-A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN
-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006";

#[test]
fn istio_iptables_goldens_without_inbound_or_outbound_lists() {
    // capture/testdata/empty.golden: istio-iptables' own defaults, -i '' -b '' (no lists).
    same_rules(
        "empty.golden",
        &["-i", "", "-b", ""],
        "* nat
-N ISTIO_INBOUND
-N ISTIO_REDIRECT
-N ISTIO_IN_REDIRECT
-N ISTIO_OUTPUT
-A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN
-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A OUTPUT -j ISTIO_OUTPUT
-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --gid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN
COMMIT",
    );
    // capture/testdata/inbound-ports-wildcard.golden: -b '*' (no -d), -i ''.
    same_rules(
        "inbound-ports-wildcard.golden",
        &["-i", "", "-b", "*", "-d", ""],
        "* nat
-N ISTIO_INBOUND
-N ISTIO_REDIRECT
-N ISTIO_IN_REDIRECT
-N ISTIO_OUTPUT
-A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN
-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A PREROUTING -p tcp -j ISTIO_INBOUND
-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT
-A OUTPUT -j ISTIO_OUTPUT
-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --gid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN
COMMIT",
    );
    // capture/testdata/inbound-ports-include.golden: -b 32000,31000, -i ''.
    same_rules(
        "inbound-ports-include.golden",
        &["-i", "", "-b", "32000,31000"],
        "* nat
-N ISTIO_INBOUND
-N ISTIO_REDIRECT
-N ISTIO_IN_REDIRECT
-N ISTIO_OUTPUT
-A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN
-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A PREROUTING -p tcp -j ISTIO_INBOUND
-A ISTIO_INBOUND -p tcp --dport 32000 -j ISTIO_IN_REDIRECT
-A ISTIO_INBOUND -p tcp --dport 31000 -j ISTIO_IN_REDIRECT
-A OUTPUT -j ISTIO_OUTPUT
-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --gid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN
COMMIT",
    );
}

#[test]
fn istio_iptables_goldens_with_outbound_lists() {
    // capture/testdata/ipnets.golden: -i 10.0.0.0/8, -b ''.
    same_rules(
        "ipnets.golden",
        &["-i", "10.0.0.0/8", "-b", ""],
        "* nat
-N ISTIO_INBOUND
-N ISTIO_REDIRECT
-N ISTIO_IN_REDIRECT
-N ISTIO_OUTPUT
-A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN
-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A OUTPUT -j ISTIO_OUTPUT
-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --gid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN
-A ISTIO_OUTPUT -d 10.0.0.0/8 -j ISTIO_REDIRECT
COMMIT",
    );
    // capture/testdata/outbound-ports-include.golden: -q 32000,31000, -i '' -b ''.
    same_rules(
        "outbound-ports-include.golden",
        &["-i", "", "-b", "", "-q", "32000,31000"],
        "* nat
-N ISTIO_INBOUND
-N ISTIO_REDIRECT
-N ISTIO_IN_REDIRECT
-N ISTIO_OUTPUT
-A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN
-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A OUTPUT -j ISTIO_OUTPUT
-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --gid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN
-A ISTIO_OUTPUT -p tcp --dport 32000 -j ISTIO_REDIRECT
-A ISTIO_OUTPUT -p tcp --dport 31000 -j ISTIO_REDIRECT
COMMIT",
    );
}

#[test]
fn istio_iptables_ipv6_goldens() {
    // capture/testdata/ipv6-inbound-ports.golden: IPv6 enabled, -b 4000,5000, -i ''.
    same_rules(
        "ipv6-inbound-ports.golden",
        &["--ipv6", "-i", "", "-b", "4000,5000"],
        "* nat
-N ISTIO_INBOUND
-N ISTIO_REDIRECT
-N ISTIO_IN_REDIRECT
-N ISTIO_OUTPUT
-A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN
-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A PREROUTING -p tcp -j ISTIO_INBOUND
-A ISTIO_INBOUND -p tcp --dport 4000 -j ISTIO_IN_REDIRECT
-A ISTIO_INBOUND -p tcp --dport 5000 -j ISTIO_IN_REDIRECT
-A OUTPUT -j ISTIO_OUTPUT
-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --gid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN
COMMIT
* nat
-N ISTIO_INBOUND
-N ISTIO_REDIRECT
-N ISTIO_IN_REDIRECT
-N ISTIO_OUTPUT
-A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN
-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A PREROUTING -p tcp -j ISTIO_INBOUND
-A ISTIO_INBOUND -p tcp --dport 4000 -j ISTIO_IN_REDIRECT
-A ISTIO_INBOUND -p tcp --dport 5000 -j ISTIO_IN_REDIRECT
-A OUTPUT -j ISTIO_OUTPUT
-A ISTIO_OUTPUT -o lo -s ::6/128 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d ::1/128 -p tcp ! --dport 15008 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d ::1/128 -p tcp ! --dport 15008 -m owner --gid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -d ::1/128 -j RETURN
COMMIT",
    );
    // capture/testdata/ipv6-outbound-ports.golden: IPv6 enabled, -q 32000,31000, -i '' -b ''.
    same_rules(
        "ipv6-outbound-ports.golden",
        &["--ipv6", "-i", "", "-b", "", "-q", "32000,31000"],
        "* nat
-N ISTIO_INBOUND
-N ISTIO_REDIRECT
-N ISTIO_IN_REDIRECT
-N ISTIO_OUTPUT
-A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN
-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A OUTPUT -j ISTIO_OUTPUT
-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --gid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN
-A ISTIO_OUTPUT -p tcp --dport 32000 -j ISTIO_REDIRECT
-A ISTIO_OUTPUT -p tcp --dport 31000 -j ISTIO_REDIRECT
COMMIT
* nat
-N ISTIO_INBOUND
-N ISTIO_REDIRECT
-N ISTIO_IN_REDIRECT
-N ISTIO_OUTPUT
-A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN
-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A OUTPUT -j ISTIO_OUTPUT
-A ISTIO_OUTPUT -o lo -s ::6/128 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d ::1/128 -p tcp ! --dport 15008 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d ::1/128 -p tcp ! --dport 15008 -m owner --gid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -d ::1/128 -j RETURN
-A ISTIO_OUTPUT -p tcp --dport 32000 -j ISTIO_REDIRECT
-A ISTIO_OUTPUT -p tcp --dport 31000 -j ISTIO_REDIRECT
COMMIT",
    );
}

#[test]
fn istio_cni_goldens_of_injected_pods() {
    // The CNI plugin runs the same capture code with what it derives from a pod's annotations: the injector's
    // -i '*' -b '*', the agent's ports 15020,15021,15090 excluded inbound (sorted), 15020 also outbound.
    // cni/pkg/plugin/testdata/basic.txt.golden:
    same_rules(
        "basic.txt.golden",
        &["-d", "15020,15021,15090", "-o", "15020"],
        "* nat
-N ISTIO_INBOUND
-N ISTIO_REDIRECT
-N ISTIO_IN_REDIRECT
-N ISTIO_OUTPUT
-A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN
-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A PREROUTING -p tcp -j ISTIO_INBOUND
-A ISTIO_INBOUND -p tcp --dport 15020 -j RETURN
-A ISTIO_INBOUND -p tcp --dport 15021 -j RETURN
-A ISTIO_INBOUND -p tcp --dport 15090 -j RETURN
-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT
-A OUTPUT -j ISTIO_OUTPUT
-A ISTIO_OUTPUT -p tcp --dport 15020 -j RETURN
-A ISTIO_OUTPUT -p udp --dport 15020 -j RETURN
-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --gid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN
-A ISTIO_OUTPUT -j ISTIO_REDIRECT
COMMIT",
    );
    // cni/pkg/plugin/testdata/include-exclude-ip.txt.golden: includeOutboundIPRanges 127.0.0.0/8 (a loopback
    // range: the application's own loopback calls are captured too), excludeOutboundIPRanges 10.0.0.0/8.
    same_rules(
        "include-exclude-ip.txt.golden",
        &[
            "-i",
            "127.0.0.0/8",
            "-x",
            "10.0.0.0/8",
            "-d",
            "15020,15021,15090",
            "-o",
            "15020",
        ],
        "* nat
-N ISTIO_INBOUND
-N ISTIO_REDIRECT
-N ISTIO_IN_REDIRECT
-N ISTIO_OUTPUT
-A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN
-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A PREROUTING -p tcp -j ISTIO_INBOUND
-A ISTIO_INBOUND -p tcp --dport 15020 -j RETURN
-A ISTIO_INBOUND -p tcp --dport 15021 -j RETURN
-A ISTIO_INBOUND -p tcp --dport 15090 -j RETURN
-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT
-A OUTPUT -j ISTIO_OUTPUT
-A ISTIO_OUTPUT -p tcp --dport 15020 -j RETURN
-A ISTIO_OUTPUT -p udp --dport 15020 -j RETURN
-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --gid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN
-A ISTIO_OUTPUT -d 10.0.0.0/8 -j RETURN
-A ISTIO_OUTPUT -d 127.0.0.0/8 -j ISTIO_REDIRECT
COMMIT",
    );
    // cni/pkg/plugin/testdata/include-exclude-ports.txt.golden: includeInboundPorts 1111,2222 (so the
    // excluded inbound ports do not matter), excludeOutboundPorts 5555,6666.
    same_rules(
        "include-exclude-ports.txt.golden",
        &["-b", "1111,2222", "-d", "3333,4444", "-o", "5555,6666"],
        "* nat
-N ISTIO_INBOUND
-N ISTIO_REDIRECT
-N ISTIO_IN_REDIRECT
-N ISTIO_OUTPUT
-A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN
-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A PREROUTING -p tcp -j ISTIO_INBOUND
-A ISTIO_INBOUND -p tcp --dport 1111 -j ISTIO_IN_REDIRECT
-A ISTIO_INBOUND -p tcp --dport 2222 -j ISTIO_IN_REDIRECT
-A OUTPUT -j ISTIO_OUTPUT
-A ISTIO_OUTPUT -p tcp --dport 5555 -j RETURN
-A ISTIO_OUTPUT -p udp --dport 5555 -j RETURN
-A ISTIO_OUTPUT -p tcp --dport 6666 -j RETURN
-A ISTIO_OUTPUT -p udp --dport 6666 -j RETURN
-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --gid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN
-A ISTIO_OUTPUT -j ISTIO_REDIRECT
COMMIT",
    );
    // cni/pkg/plugin/testdata/custom-uid.txt.golden: the proxy container runs as uid 1000670000, gid
    // 1000670001.
    same_rules(
        "custom-uid.txt.golden",
        &[
            "-u",
            "1000670000",
            "-g",
            "1000670001",
            "-d",
            "15020,15021,15090",
            "-o",
            "15020",
        ],
        "* nat
-N ISTIO_INBOUND
-N ISTIO_REDIRECT
-N ISTIO_IN_REDIRECT
-N ISTIO_OUTPUT
-A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN
-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A PREROUTING -p tcp -j ISTIO_INBOUND
-A ISTIO_INBOUND -p tcp --dport 15020 -j RETURN
-A ISTIO_INBOUND -p tcp --dport 15021 -j RETURN
-A ISTIO_INBOUND -p tcp --dport 15090 -j RETURN
-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT
-A OUTPUT -j ISTIO_OUTPUT
-A ISTIO_OUTPUT -p tcp --dport 15020 -j RETURN
-A ISTIO_OUTPUT -p udp --dport 15020 -j RETURN
-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --uid-owner 1000670000 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1000670000 -j RETURN
-A ISTIO_OUTPUT -m owner --uid-owner 1000670000 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --gid-owner 1000670001 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner 1000670001 -j RETURN
-A ISTIO_OUTPUT -m owner --gid-owner 1000670001 -j RETURN
-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN
-A ISTIO_OUTPUT -j ISTIO_REDIRECT
COMMIT",
    );
}

/// The injector's default pod (istio-init run with `-i '*' -b '*' -d 15090,15021,15020`, no -o) has no golden
/// of its own; its rules are basic.txt.golden's without the two `-o 15020` lines istio-cni adds, with the
/// excluded ports in the order given (run.go appends one RETURN per port, in flag order). `inbound` is the
/// PREROUTING/ISTIO_INBOUND part, `output_head` the rules before the loopback ones, `output_tail` after.
fn injected(inbound: &str, output_head: &str, output_tail: &str) -> String {
    format!(
        "* nat
-N ISTIO_INBOUND
-N ISTIO_REDIRECT
-N ISTIO_IN_REDIRECT
-N ISTIO_OUTPUT{V4_HEAD}
{inbound}
-A OUTPUT -j ISTIO_OUTPUT
{output_head}-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m owner --gid-owner 1337 -j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN
{output_tail}
COMMIT
"
    )
}

/// basic.txt.golden's inbound part with the injector's exclusions, in its order.
const INJECTED_INBOUND: &str = "-A PREROUTING -p tcp -j ISTIO_INBOUND
-A ISTIO_INBOUND -p tcp --dport 15090 -j RETURN
-A ISTIO_INBOUND -p tcp --dport 15021 -j RETURN
-A ISTIO_INBOUND -p tcp --dport 15020 -j RETURN
-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT";

#[test]
fn the_flag_sets_of_issue_16_composed_from_golden_lines() {
    // Default: basic.txt.golden as described at `injected`.
    same_rules(
        "default (basic.txt.golden, injector's -d order, no -o)",
        &[],
        &injected(INJECTED_INBOUND, "", "-A ISTIO_OUTPUT -j ISTIO_REDIRECT"),
    );
    // -b '*' -d 15090,15021: the inbound exclusions of basic.txt.golden, two of them.
    same_rules(
        "-b '*' -d 15090,15021 (basic.txt.golden)",
        &["-b", "*", "-d", "15090,15021"],
        &injected(
            "-A PREROUTING -p tcp -j ISTIO_INBOUND
-A ISTIO_INBOUND -p tcp --dport 15090 -j RETURN
-A ISTIO_INBOUND -p tcp --dport 15021 -j RETURN
-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT",
            "",
            "-A ISTIO_OUTPUT -j ISTIO_REDIRECT",
        ),
    );
    // -x 10.0.0.0/8 -o 3306: the -x RETURN after the loopback RETURN (include-exclude-ip.txt.golden), the -o
    // TCP and UDP RETURNs first in ISTIO_OUTPUT (include-exclude-ports.txt.golden).
    same_rules(
        "-x 10.0.0.0/8 -o 3306 (include-exclude-ip + include-exclude-ports .txt.golden)",
        &["-x", "10.0.0.0/8", "-o", "3306"],
        &injected(
            INJECTED_INBOUND,
            "-A ISTIO_OUTPUT -p tcp --dport 3306 -j RETURN
-A ISTIO_OUTPUT -p udp --dport 3306 -j RETURN
",
            "-A ISTIO_OUTPUT -d 10.0.0.0/8 -j RETURN
-A ISTIO_OUTPUT -j ISTIO_REDIRECT",
        ),
    );
    // -i 10.96.0.0/12: one `-d CIDR -j ISTIO_REDIRECT` instead of the catch-all jump (ipnets.golden).
    same_rules(
        "-i 10.96.0.0/12 (ipnets.golden)",
        &["-i", "10.96.0.0/12"],
        &injected(
            INJECTED_INBOUND,
            "",
            "-A ISTIO_OUTPUT -d 10.96.0.0/12 -j ISTIO_REDIRECT",
        ),
    );
    // --ipv6: the IPv4 part above, and the same rules for ip6tables with ::6/128 and ::1/128 where IPv4 has
    // 127.0.0.6/32 and 127.0.0.1/32 (the second part of ipv6-inbound-ports.golden).
    let v4 = injected(INJECTED_INBOUND, "", "-A ISTIO_OUTPUT -j ISTIO_REDIRECT");
    let v6 = v4
        .replace("127.0.0.6/32", "::6/128")
        .replace("127.0.0.1/32", "::1/128");
    same_rules(
        "--ipv6 (basic.txt.golden + ipv6-inbound-ports.golden)",
        &["--ipv6"],
        &format!("{v4}{v6}"),
    );
    // An IPv6 range implies IPv6 rules: -x with one of each family puts each in its own table.
    let ours = tables(&dry_run(&["-x", "10.0.0.0/8,fd00::/8"]));
    assert_eq!(ours.len(), 2, "an IPv6 range in -x implies the IPv6 rules");
    assert!(ours[0].rules["ISTIO_OUTPUT"].contains(&"-d 10.0.0.0/8 -j RETURN".to_string()));
    assert!(ours[1].rules["ISTIO_OUTPUT"].contains(&"-d fd00::/8 -j RETURN".to_string()));
    assert!(
        !ours[1].rules["ISTIO_OUTPUT"]
            .iter()
            .any(|r| r.contains("10.0.0.0/8"))
    );
}

#[test]
fn bad_flags_are_refused_with_one_line_naming_the_flag_and_a_hint() {
    for (args, first_line) in [
        (
            &["-x", "10.0.0.0/33"][..],
            "error: -x (--istio-service-exclude-cidr): \"10.0.0.0/33\" is not a CIDR",
        ),
        (
            &["--istio-service-cidr", "10.96.0.0"][..],
            "error: -i (--istio-service-cidr): \"10.96.0.0\" is not a CIDR",
        ),
        (
            &["-d", "15090,150211"][..],
            "error: -d (--istio-local-exclude-ports): \"150211\" is not a port (1-65535)",
        ),
        (
            &["-p", "0"][..],
            "error: -p (--envoy-port): \"0\" is not a port (1-65535)",
        ),
        (
            &["-m", "TPROXY"][..],
            "error: -m (--istio-inbound-interception-mode): TPROXY interception is not implemented",
        ),
        (
            &["-u", "istio-proxy"][..],
            "error: -u (--proxy-uid): \"istio-proxy\" is not a numeric id",
        ),
        (
            &["--redirect-dns"][..],
            "error: --redirect-dns: DNS capture is not implemented (nothing in sextant answers DNS on 15053)",
        ),
    ] {
        // With --dry-run too: validation comes first whatever the mode.
        for dry in [&[][..], &["--dry-run"][..]] {
            let out = sextant(&["proxy-init"], &[dry, args].concat());
            assert!(!out.status.success(), "{args:?} accepted");
            assert!(out.stdout.is_empty(), "{args:?} printed rules");
            let stderr = String::from_utf8_lossy(&out.stderr);
            let lines: Vec<&str> = stderr.lines().collect();
            assert_eq!(lines.len(), 2, "{args:?}: {stderr}");
            assert_eq!(lines[0], first_line, "{args:?}");
            assert!(lines[1].starts_with("hint: "), "{args:?}: {stderr}");
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// In a network namespace.

/// Whether this process may create namespaces and write iptables rules.
fn root() -> bool {
    rustix::process::geteuid().is_root()
}

/// `TOOL-save -t nat` inside `ns`, without its comment lines (they carry the time).
fn nat(ns: &Netns, tool: &str) -> String {
    let out = ns
        .command(format!("{tool}-save"))
        .args(["-t", "nat"])
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {tool}-save (iptables; `.ci/peers` installs it): {e}")
        });
    assert!(out.status.success(), "{tool}-save failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// `sextant proxy-init ARGS...` inside `ns`.
fn proxy_init(ns: &Netns, args: &[&str]) -> Output {
    ns.command(env!("CARGO_BIN_EXE_sextant"))
        .arg("proxy-init")
        .args(args)
        .output()
        .expect("run sextant proxy-init")
}

fn succeeds(what: &str, out: Output) {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Listeners that print `accepted on=PORT orig=ADDR:PORT from=ADDR` per connection (the original destination
/// by SO_ORIGINAL_DST), and a client that connects as a given uid/gid.
const NET: &str = r#"
import encodings.idna, os, select, socket, struct, sys  # idna: loaded before the client drops root

def orig(c):
    try:
        if c.family == socket.AF_INET6:
            raw = c.getsockopt(41, 80, 28)  # SOL_IPV6, IP6T_SO_ORIGINAL_DST: sockaddr_in6
            return "[%s]:%d" % (socket.inet_ntop(socket.AF_INET6, raw[8:24]), struct.unpack("!H", raw[2:4])[0])
        raw = c.getsockopt(socket.SOL_IP, 80, 16)  # SO_ORIGINAL_DST: sockaddr_in
        return "%s:%d" % (socket.inet_ntoa(raw[4:8]), struct.unpack("!H", raw[2:4])[0])
    except OSError:
        return "none"

if sys.argv[1] == "listen":
    socks = []
    for spec in sys.argv[2:]:
        host, port = spec.rsplit(":", 1)
        host = host.strip("[]")
        s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, int(port)))
        s.listen(16)
        socks.append(s)
    print("listening", flush=True)
    while True:
        for s in select.select(socks, [], [])[0]:
            c, peer = s.accept()
            print("accepted on=%d orig=%s from=%s" % (s.getsockname()[1], orig(c), peer[0]), flush=True)
            c.close()
else:
    host, port, uid = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    if uid:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    socket.create_connection((host, port), timeout=5).close()
"#;

/// Starts listeners on `addrs` (`HOST:PORT`) inside `ns` and waits until they listen.
fn listen(ns: &Netns, name: &'static str, addrs: &[&str]) -> Proc {
    let mut cmd = ns.command(common::python());
    cmd.args(["-u", "-c", NET, "listen"]).args(addrs);
    let mut proc = Proc::spawn(name, cmd, scratch("proxy-init").join("listeners.log"));
    proc.wait_for_line("listening", Duration::from_secs(30));
    proc
}

/// Connects from inside `ns` to `host:port` as `uid` (0: as root, an application); must succeed.
fn connect(ns: &Netns, host: &str, port: u16, uid: u32) {
    let out = ns
        .command(common::python())
        .args([
            "-c",
            NET,
            "connect",
            host,
            &port.to_string(),
            &uid.to_string(),
        ])
        .output()
        .expect("run python");
    succeeds(&format!("connect to {host}:{port} as uid {uid}"), out);
}

#[test]
fn proxy_init_captures_a_pods_traffic_as_istio_init_does() {
    if !root() {
        eprintln!(
            "skipped: proxy_init needs root (network namespaces, iptables); CI runs it as root"
        );
        return;
    }
    // The pod (10.77.0.1) and a host beside it (10.77.0.2), joined by a veth pair.
    let pod = Netns::create("pinit-pod");
    let peer = Netns::create("pinit-peer");
    let (veth_pod, veth_peer) = (
        format!("pi{}a", std::process::id()),
        format!("pi{}b", std::process::id()),
    );
    common::ip(&[
        "link", "add", &veth_pod, "netns", &pod.name, "type", "veth", "peer", "name", &veth_peer,
        "netns", &peer.name,
    ]);
    for (ns, veth, ip) in [
        (&pod, &veth_pod, "10.77.0.1/24"),
        (&peer, &veth_peer, "10.77.0.2/24"),
    ] {
        ns.ip(&["addr", "add", ip, "dev", veth]);
        ns.ip(&["link", "set", veth, "up"]);
    }
    // Somebody else's chain and jump in the pod's nat table: proxy-init must leave them alone.
    pod.run("iptables", &["-t", "nat", "-N", "KEEP_ME"]);
    pod.run("iptables", &["-t", "nat", "-A", "KEEP_ME", "-j", "RETURN"]);
    pod.run(
        "iptables",
        &[
            "-t", "nat", "-A", "OUTPUT", "-p", "udp", "--dport", "9", "-j", "KEEP_ME",
        ],
    );
    let before = nat(&pod, "iptables");

    // A bad flag: refused before anything is touched.
    let out = proxy_init(&pod, &["-x", "10.0.0.0/33"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: -x "));
    assert_eq!(
        nat(&pod, "iptables"),
        before,
        "a refused run changed the table"
    );

    succeeds("proxy-init", proxy_init(&pod, &[]));
    let first = nat(&pod, "iptables");
    for want in [
        ":ISTIO_INBOUND - [0:0]",
        ":ISTIO_REDIRECT - [0:0]",
        ":ISTIO_IN_REDIRECT - [0:0]",
        ":ISTIO_OUTPUT - [0:0]",
        "-A PREROUTING -p tcp -j ISTIO_INBOUND",
        "-A OUTPUT -j ISTIO_OUTPUT",
        "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001",
        "-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006",
        "-A OUTPUT -p udp -m udp --dport 9 -j KEEP_ME",
    ] {
        assert!(
            first.lines().any(|l| l == want),
            "{want:?} not in the nat table:\n{first}"
        );
    }
    succeeds("proxy-init, again", proxy_init(&pod, &[]));
    assert_eq!(
        nat(&pod, "iptables"),
        first,
        "a second run changed the nat table"
    );

    // The sidecar's capture ports, and the Prometheus port the defaults exclude (-d 15090,15021,15020).
    let mut pod_listeners = listen(
        &pod,
        "pod listeners",
        &["0.0.0.0:15001", "0.0.0.0:15006", "0.0.0.0:15090"],
    );
    let mut peer_listener = listen(&peer, "peer listener", &["0.0.0.0:8080"]);
    let wait = Duration::from_secs(10);

    // An application's outbound connection goes to 15001, its destination kept for SO_ORIGINAL_DST.
    connect(&pod, "10.77.0.2", 8081, 0);
    pod_listeners.wait_for_line("on=15001 orig=10.77.0.2:8081 ", wait);
    // The proxy's own (uid 1337) reaches the destination itself.
    connect(&pod, "10.77.0.2", 8080, 1337);
    peer_listener.wait_for_line("on=8080 orig=", wait);
    assert!(
        peer_listener
            .log()
            .lines()
            .any(|l| l.starts_with("accepted on=8080") && l.ends_with("from=10.77.0.1")),
        "{}",
        peer_listener.log()
    );
    // Inbound: a connection to any pod port goes to 15006, but the excluded 15090 is reached directly.
    connect(&peer, "10.77.0.1", 9080, 0);
    pod_listeners.wait_for_line("on=15006 orig=10.77.0.1:9080 from=10.77.0.2", wait);
    connect(&peer, "10.77.0.1", 15090, 0);
    pod_listeners.wait_for_line("on=15090 orig=10.77.0.1:15090 from=10.77.0.2", wait);
    // Loopback, as Istio: the proxy calling the pod's own address goes to its inbound side; an application
    // calling it is left alone.
    connect(&pod, "10.77.0.1", 9081, 1337);
    pod_listeners.wait_for_line("on=15006 orig=10.77.0.1:9081 from=10.77.0.1", wait);
    connect(&pod, "10.77.0.1", 15090, 0);
    pod_listeners.wait_for_line("on=15090 orig=10.77.0.1:15090 from=10.77.0.1", wait);

    succeeds("proxy-init --clean", proxy_init(&pod, &["--clean"]));
    assert_eq!(
        nat(&pod, "iptables"),
        before,
        "--clean did not restore the nat table"
    );
    let out = proxy_init(&pod, &["--clean"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nothing changed"),
        "a second --clean: {out:?}"
    );
    succeeds("proxy-init --clean, again", out);
    assert_eq!(nat(&pod, "iptables"), before);
}

#[test]
fn ipv6_rules_are_applied_with_ip6tables_and_cleaned() {
    if !root() {
        eprintln!(
            "skipped: proxy_init needs root (network namespaces, iptables); CI runs it as root"
        );
        return;
    }
    let pod = Netns::create("pinit-v6");
    // Somewhere to route an IPv6 destination to: a veth pair of its own (no DAD, so the address is usable at
    // once).
    pod.ip(&["link", "add", "v6a", "type", "veth", "peer", "name", "v6b"]);
    pod.ip(&["addr", "add", "fd00:77::1/64", "dev", "v6a", "nodad"]);
    pod.ip(&["link", "set", "v6a", "up"]);
    pod.ip(&["link", "set", "v6b", "up"]);
    let (before4, before6) = (nat(&pod, "iptables"), nat(&pod, "ip6tables"));

    succeeds("proxy-init --ipv6", proxy_init(&pod, &["--ipv6"]));
    let first = nat(&pod, "ip6tables");
    for want in [
        ":ISTIO_OUTPUT - [0:0]",
        "-A OUTPUT -j ISTIO_OUTPUT",
        "-A ISTIO_OUTPUT -s ::6/128 -o lo -j RETURN",
        "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001",
    ] {
        assert!(
            first.lines().any(|l| l == want),
            "{want:?} not in:\n{first}"
        );
    }
    assert!(nat(&pod, "iptables").contains(":ISTIO_OUTPUT - [0:0]"));
    succeeds("proxy-init --ipv6, again", proxy_init(&pod, &["--ipv6"]));
    assert_eq!(nat(&pod, "ip6tables"), first, "a second run changed it");

    let mut listener = listen(&pod, "pod listener (IPv6)", &["[::]:15001"]);
    connect(&pod, "fd00:77::2", 8081, 0);
    listener.wait_for_line("on=15001 orig=[fd00:77::2]:8081", Duration::from_secs(10));

    succeeds("proxy-init --clean", proxy_init(&pod, &["--clean"]));
    assert_eq!(nat(&pod, "iptables"), before4);
    assert_eq!(nat(&pod, "ip6tables"), before6);
}
