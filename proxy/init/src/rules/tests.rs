use super::*;
use crate::flags::Flags;

fn set(f: impl FnOnce(&mut Flags)) -> RuleSet {
    let mut flags = Flags::default();
    f(&mut flags);
    rules(&flags.validate().expect("valid flags"))
}

fn lines(rules: &Rules) -> Vec<String> {
    rules
        .rules
        .iter()
        .map(|r| format!("-A {} {}", r.chain, r.spec))
        .collect()
}

#[test]
fn the_defaults_write_istio_inits_rules_in_its_order() {
    let text = set(|_| {}).restore_text();
    assert_eq!(
        text,
        "# iptables-restore --noflush
*nat
:ISTIO_INBOUND - [0:0]
:ISTIO_REDIRECT - [0:0]
:ISTIO_IN_REDIRECT - [0:0]
:ISTIO_OUTPUT - [0:0]
-A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN
-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A PREROUTING -p tcp -j ISTIO_INBOUND
-A ISTIO_INBOUND -p tcp --dport 15090 -j RETURN
-A ISTIO_INBOUND -p tcp --dport 15021 -j RETURN
-A ISTIO_INBOUND -p tcp --dport 15020 -j RETURN
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
-A ISTIO_OUTPUT -j ISTIO_REDIRECT
COMMIT
"
    );
}

#[test]
fn ports_and_ids_take_the_values_given() {
    let set = set(|f| {
        f.proxy_port = "16001".into();
        f.inbound_capture_port = "16006".into();
        f.inbound_tunnel_port = "16008".into();
        f.proxy_uid = "3,4".into();
        f.proxy_gid = Some("7".into());
        f.inbound_ports = "8080".into();
    });
    let lines = lines(&set.v4);
    let owners: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("-A ISTIO_OUTPUT -m owner"))
        .map(String::as_str)
        .collect();
    assert_eq!(
        owners,
        [
            "-A ISTIO_OUTPUT -m owner --uid-owner 3 -j RETURN",
            "-A ISTIO_OUTPUT -m owner --uid-owner 4 -j RETURN",
            "-A ISTIO_OUTPUT -m owner --gid-owner 7 -j RETURN",
        ]
    );
    for want in [
        "-A ISTIO_INBOUND -p tcp --dport 16008 -j RETURN",
        "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 16001",
        "-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 16006",
        "-A ISTIO_INBOUND -p tcp --dport 8080 -j ISTIO_IN_REDIRECT",
        "-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport 16008 -m owner --uid-owner 4 -j ISTIO_IN_REDIRECT",
    ] {
        assert!(
            lines.iter().any(|l| l == want),
            "{want} missing: {lines:#?}"
        );
    }
    assert!(
        !lines.iter().any(|l| l.contains("--dport 15090")),
        "-d applies only with -b '*'"
    );
}

#[test]
fn no_inbound_ports_means_no_jump_from_prerouting() {
    let lines = lines(&set(|f| f.inbound_ports = String::new()).v4);
    assert!(!lines.iter().any(|l| l.starts_with("-A PREROUTING")));
    // The chain still exists, with its tunnel rule, as istio-iptables leaves it.
    assert_eq!(lines[0], "-A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN");
}

#[test]
fn outbound_exclusions_and_inclusions_in_istios_order() {
    let lines = lines(
        &set(|f| {
            f.include_cidrs = "10.96.0.0/12".into();
            f.exclude_cidrs = "10.0.0.0/8".into();
            f.exclude_outbound_ports = "3306".into();
            f.outbound_ports = "9000".into();
        })
        .v4,
    );
    let output: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("-A ISTIO_OUTPUT"))
        .map(String::as_str)
        .collect();
    assert_eq!(output[0], "-A ISTIO_OUTPUT -p tcp --dport 3306 -j RETURN");
    assert_eq!(output[1], "-A ISTIO_OUTPUT -p udp --dport 3306 -j RETURN");
    assert_eq!(
        output[output.len() - 4..],
        [
            "-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN",
            "-A ISTIO_OUTPUT -d 10.0.0.0/8 -j RETURN",
            "-A ISTIO_OUTPUT -p tcp --dport 9000 -j ISTIO_REDIRECT",
            "-A ISTIO_OUTPUT -d 10.96.0.0/12 -j ISTIO_REDIRECT",
        ]
    );
}

#[test]
fn a_loopback_range_in_i_captures_the_applications_loopback_calls() {
    let lines = lines(&set(|f| f.include_cidrs = "127.0.0.0/8".into()).v4);
    assert!(
        !lines.iter().any(|l| l.contains("-o lo -m owner !")),
        "{lines:#?}"
    );
    assert!(lines.contains(&"-A ISTIO_OUTPUT -d 127.0.0.0/8 -j ISTIO_REDIRECT".to_string()));
}

#[test]
fn ipv6_rules_name_ipv6_loopback_and_only_ipv6_ranges() {
    let set = set(|f| {
        f.include_cidrs = "10.96.0.0/12,fd00:96::/108".into();
        f.exclude_cidrs = "10.0.0.0/8,fd00::/8".into();
    });
    let v4 = lines(&set.v4);
    let v6 = lines(set.v6.as_ref().expect("an IPv6 range implies IPv6 rules"));
    assert!(v4.iter().all(|l| !l.contains("fd00")), "{v4:#?}");
    assert!(
        v6.iter().all(|l| !l.contains("10.") && !l.contains("127.")),
        "{v6:#?}"
    );
    for want in [
        "-A ISTIO_OUTPUT -o lo -s ::6/128 -j RETURN",
        "-A ISTIO_OUTPUT -o lo ! -d ::1/128 -p tcp ! --dport 15008 -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT",
        "-A ISTIO_OUTPUT -d ::1/128 -j RETURN",
        "-A ISTIO_OUTPUT -d fd00::/8 -j RETURN",
        "-A ISTIO_OUTPUT -d fd00:96::/108 -j ISTIO_REDIRECT",
    ] {
        assert!(v6.iter().any(|l| l == want), "{want} missing: {v6:#?}");
    }
    let text = set.restore_text();
    assert_eq!(text.matches("COMMIT\n").count(), 2);
    assert!(text.contains("# ip6tables-restore --noflush\n*nat\n"));
}

#[test]
fn without_ipv6_no_ipv6_rules() {
    let set = set(|_| {});
    assert!(set.v6.is_none());
    assert!(!set.restore_text().contains("ip6tables"));
}
