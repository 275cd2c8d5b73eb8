use super::*;

fn with(f: impl FnOnce(&mut Flags)) -> Result<Config, FlagError> {
    let mut flags = Flags::default();
    f(&mut flags);
    flags.validate()
}

#[test]
fn the_injector_defaults_capture_everything_but_the_proxys_own_ports() {
    let config = Flags::default().validate().expect("defaults are valid");
    assert_eq!(
        config,
        Config {
            proxy_port: 15001,
            inbound_capture_port: 15006,
            inbound_tunnel_port: 15008,
            proxy_uids: vec![1337],
            proxy_gids: vec![1337],
            inbound: Inbound::All {
                except: vec![15090, 15021, 15020]
            },
            outbound: Outbound::All,
            exclude_cidrs: vec![],
            outbound_ports: vec![],
            exclude_outbound_ports: vec![],
            ipv6: false,
        }
    );
}

#[test]
fn lists_are_split_on_commas_skipping_empty_items() {
    let config = with(|f| {
        f.inbound_ports = " 80, ,443,".into();
        f.proxy_uid = "3,4".into();
        f.proxy_gid = Some("1,2".into());
        f.exclude_cidrs = "10.0.0.0/8, 192.168.0.0/16".into();
    })
    .expect("valid");
    assert_eq!(config.inbound, Inbound::Ports(vec![80, 443]));
    assert_eq!(config.proxy_uids, vec![3, 4]);
    assert_eq!(config.proxy_gids, vec![1, 2]);
    let shown: Vec<String> = config
        .exclude_cidrs
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(shown, ["10.0.0.0/8", "192.168.0.0/16"]);
}

#[test]
fn empty_lists_capture_nothing() {
    let config = with(|f| {
        f.inbound_ports = String::new();
        f.include_cidrs = String::new();
    })
    .expect("valid");
    assert_eq!(config.inbound, Inbound::None);
    assert_eq!(config.outbound, Outbound::Cidrs(vec![]));
}

#[test]
fn ipv6_is_asked_for_or_implied_by_an_ipv6_cidr() {
    assert!(!with(|_| {}).expect("valid").ipv6);
    assert!(with(|f| f.ipv6 = true).expect("valid").ipv6);
    assert!(
        with(|f| f.include_cidrs = "fd00::/8".into())
            .expect("valid")
            .ipv6
    );
    assert!(
        with(|f| f.exclude_cidrs = "10.0.0.0/8,2001:db8::/32".into())
            .expect("valid")
            .ipv6
    );
}

#[test]
fn a_bad_port_names_its_flag() {
    for (value, flag) in [("70000", "-p"), ("0", "-z"), ("http", "-e")] {
        let err = with(|f| match flag {
            "-p" => f.proxy_port = value.into(),
            "-z" => f.inbound_capture_port = value.into(),
            _ => f.inbound_tunnel_port = value.into(),
        })
        .expect_err("refused");
        assert!(matches!(err, FlagError::Port { .. }), "{err:?}");
        let line = err.to_string();
        assert!(line.starts_with(flag) && line.contains(value), "{line}");
    }
    let err = with(|f| f.exclude_inbound_ports = "15090,1502l".into()).expect_err("refused");
    assert_eq!(
        err.to_string(),
        "-d (--istio-local-exclude-ports): \"1502l\" is not a port (1-65535)"
    );
    assert!(err.hint().contains("-d 15090,15021,15020"));
    let err = with(|f| f.exclude_outbound_ports = "3306-3307".into()).expect_err("refused");
    assert!(err.to_string().starts_with("-o "), "{err}");
}

#[test]
fn a_bad_cidr_names_its_flag() {
    for value in [
        "10.0.0.0/33",
        "10.0.0.1",
        "fd00::/129",
        "ten/8",
        "10.0.0.0/",
    ] {
        let err = with(|f| f.exclude_cidrs = format!("192.168.0.0/16,{value}")).expect_err(value);
        assert_eq!(
            err.to_string(),
            format!("-x (--istio-service-exclude-cidr): {value:?} is not a CIDR")
        );
        assert!(err.hint().contains("10.1.2.3/32"));
    }
    let err = with(|f| f.include_cidrs = "10.96.0.0/12,bad".into()).expect_err("refused");
    assert!(
        err.to_string().starts_with("-i (--istio-service-cidr)"),
        "{err}"
    );
}

#[test]
fn a_wildcard_stands_alone_and_only_where_istio_takes_it() {
    let err = with(|f| f.exclude_cidrs = "*".into()).expect_err("refused");
    assert_eq!(
        err,
        FlagError::Wildcard {
            flag: "-x (--istio-service-exclude-cidr)"
        }
    );
    let err = with(|f| f.include_cidrs = "10.0.0.0/8,*".into()).expect_err("refused");
    assert!(matches!(err, FlagError::Wildcard { .. }));
    let err = with(|f| f.exclude_inbound_ports = "*".into()).expect_err("refused");
    assert!(matches!(err, FlagError::Wildcard { .. }));
    assert!(with(|f| f.inbound_ports = " * ".into()).is_ok());
}

#[test]
fn ids_are_numeric_and_present() {
    let err = with(|f| f.proxy_uid = "istio-proxy".into()).expect_err("refused");
    assert_eq!(
        err.to_string(),
        "-u (--proxy-uid): \"istio-proxy\" is not a numeric id"
    );
    let err = with(|f| f.proxy_uid = String::new()).expect_err("refused");
    assert!(matches!(err, FlagError::NoId { .. }));
    let err = with(|f| f.proxy_gid = Some("-1".into())).expect_err("refused");
    assert!(err.to_string().starts_with("-g (--proxy-gid)"), "{err}");
}

#[test]
fn tproxy_is_refused_and_other_modes_are_not_modes() {
    let err = with(|f| f.interception_mode = "TPROXY".into()).expect_err("refused");
    assert_eq!(
        err.to_string(),
        "-m (--istio-inbound-interception-mode): TPROXY interception is not implemented"
    );
    assert!(err.hint().contains("-m REDIRECT"));
    let err = with(|f| f.interception_mode = "redirect".into()).expect_err("refused");
    assert!(matches!(err, FlagError::Mode { .. }));
}
