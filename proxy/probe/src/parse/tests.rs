use super::*;

fn error(text: &str) -> String {
    match Probers::parse(text) {
        Ok(p) => panic!("accepted: {p:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn istios_format_is_read_into_typed_probers() {
    let probers = Probers::parse(
        r#"{
            "/app-health/app/livez": {"httpGet": {"path": "/healthz?full=1", "port": 8080, "scheme": "HTTPS",
                "host": "app.local", "httpHeaders": [{"name": "X-Probe", "value": "yes"},
                {"name": "x-probe", "value": "again"}]}, "timeoutSeconds": 3},
            "/app-health/app/readyz": {"httpGet": {"path": "ready", "port": 8080}},
            "/app-health/db/startupz": {"tcpSocket": {"port": 5432}, "timeoutSeconds": 0},
            "/app-health/grpc-svc/readyz": {"grpc": {"port": 9090, "service": "shop.Cart"}}
        }"#,
    )
    .expect("valid");
    assert_eq!(probers.len(), 4);
    assert_eq!(
        probers.paths().collect::<Vec<_>>(),
        [
            "/app-health/app/livez",
            "/app-health/app/readyz",
            "/app-health/db/startupz",
            "/app-health/grpc-svc/readyz"
        ]
    );
    let live = probers
        .get("app", ProbeKind::Liveness)
        .expect("app's liveness");
    assert_eq!(live.timeout, Duration::from_secs(3));
    let Action::Http(h) = &live.action else {
        panic!("an HTTP probe: {live:?}")
    };
    assert_eq!(h.scheme, Scheme::Https);
    assert_eq!(h.host.as_deref(), Some("app.local"));
    assert_eq!((h.port, h.path.as_str()), (8080, "/healthz?full=1"));
    assert_eq!(
        h.headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().unwrap_or_default()))
            .collect::<Vec<_>>(),
        [("x-probe", "yes"), ("x-probe", "again")]
    );

    let ready = probers
        .get("app", ProbeKind::Readiness)
        .expect("app's readiness");
    assert_eq!(ready.timeout, Duration::from_secs(1), "the default");
    let Action::Http(h) = &ready.action else {
        panic!("an HTTP probe: {ready:?}")
    };
    assert_eq!(
        (h.scheme, h.host.as_deref(), h.path.as_str()),
        (Scheme::Http, None, "/ready")
    );

    let db = probers.get("db", ProbeKind::Startup).expect("db's startup");
    assert_eq!(
        db.action,
        Action::Tcp(TcpSocket {
            host: None,
            port: 5432
        })
    );
    assert_eq!(db.timeout, Duration::from_secs(1), "0 is the default");
    assert_eq!(
        probers
            .get("grpc-svc", ProbeKind::Readiness)
            .map(|p| &p.action),
        Some(&Action::Grpc(Grpc {
            port: 9090,
            service: "shop.Cart".into()
        }))
    );
    assert!(probers.get("app", ProbeKind::Startup).is_none());
    assert!(probers.get("db", ProbeKind::Liveness).is_none());
    assert!(Probers::parse("{}").expect("empty").is_empty());
}

#[test]
fn text_that_is_not_a_json_object_is_refused() {
    assert!(
        error("[1]").starts_with("not a JSON object of probes: invalid type: sequence"),
        "{}",
        error("[1]")
    );
    assert!(error(r#"{"/app-health/a/livez": "#).starts_with("not a JSON object of probes: "));
}

#[test]
fn keys_must_name_a_container_and_a_probe_kind() {
    let shape = "not /app-health/CONTAINER/livez, readyz or startupz";
    for key in [
        "/healthz",
        "/app-health/app",
        "/app-health/app/ready",
        "/app-health/app/readyz/extra",
        "app-health/app/readyz",
    ] {
        assert_eq!(
            error(&format!(r#"{{"{key}": {{"tcpSocket": {{"port": 1}}}}}}"#)),
            format!("key {key:?}: {shape}")
        );
    }
    assert_eq!(
        error(r#"{"/app-health/App_1/readyz": {"tcpSocket": {"port": 1}}}"#),
        r#"key "/app-health/App_1/readyz": container name "App_1" is not a DNS label (lowercase letters, digits, '-', at most 63)"#
    );
    assert_eq!(
        error(r#"{"/app-health//readyz": {"tcpSocket": {"port": 1}}}"#),
        r#"key "/app-health//readyz": container name "" is not a DNS label (lowercase letters, digits, '-', at most 63)"#
    );
}

#[test]
fn a_probe_has_exactly_one_action() {
    assert_eq!(
        error(r#"{"/app-health/app/livez": {"timeoutSeconds": 2}}"#),
        "/app-health/app/livez: a probe needs exactly one of httpGet, tcpSocket, grpc; this one has none"
    );
    assert_eq!(
        error(
            r#"{"/app-health/app/livez": {"httpGet": {"port": 80}, "grpc": {"port": 81}, "tcpSocket": {"port": 82}}}"#
        ),
        "/app-health/app/livez: a probe needs exactly one of httpGet, tcpSocket, grpc; this one has httpGet and tcpSocket and grpc"
    );
    // An exec probe is not rewritten by the injector: the kubelet runs it in the container.
    assert_eq!(
        error(r#"{"/app-health/app/livez": {"exec": {"command": ["true"]}}}"#),
        "/app-health/app/livez: exec: exec probes are not rewritten by the injector: the kubelet runs them in the container",
    );
}

#[test]
fn ports_are_numbers_from_1_to_65535() {
    for (probe, field, message) in [
        (
            r#"{"httpGet": {"port": 0}}"#,
            "httpGet.port",
            "0 is not a port (1..65535)",
        ),
        (
            r#"{"tcpSocket": {"port": 65536}}"#,
            "tcpSocket.port",
            "65536 is not a port (1..65535)",
        ),
        (
            r#"{"grpc": {"port": -1}}"#,
            "grpc.port",
            "-1 is not a port (1..65535)",
        ),
        (
            r#"{"httpGet": {"port": 80.5}}"#,
            "httpGet.port",
            "80.5 is not a port (1..65535)",
        ),
        (
            r#"{"httpGet": {"port": "http"}}"#,
            "httpGet.port",
            r#"named port "http": the injector must resolve it to the container's port number"#,
        ),
        (
            r#"{"tcpSocket": {"port": null}}"#,
            "tcpSocket.port",
            "null is not a port number",
        ),
    ] {
        assert_eq!(
            error(&format!(r#"{{"/app-health/app/readyz": {probe}}}"#)),
            format!("/app-health/app/readyz: {field}: {message}"),
            "{probe}"
        );
    }
}

#[test]
fn fields_are_checked_and_named() {
    for (probe, expected) in [
        (
            r#"{"httpGet": {"port": 80, "scheme": "FTP"}}"#,
            r#"httpGet.scheme: "FTP" is neither HTTP nor HTTPS"#,
        ),
        (
            r#"{"httpGet": {"port": 80, "path": "/a b"}}"#,
            r#"httpGet.path: "/a b": invalid uri character"#,
        ),
        (
            r#"{"httpGet": {"port": 80, "httpHeaders": [{"name": "ok", "value": "1"}, {"name": "bad name", "value": "2"}]}}"#,
            r#"httpGet.httpHeaders[1].name: "bad name" is not a header name"#,
        ),
        (
            r#"{"httpGet": {"port": 80, "httpHeaders": [{"name": "x", "value": "a\nb"}]}}"#,
            r#"httpGet.httpHeaders[0].value: "a\nb" is not a header value"#,
        ),
        (
            r#"{"httpGet": {"port": 80, "httpHeaders": [{"name": "x"}]}}"#,
            "httpGet.httpHeaders[0]: missing field `value`",
        ),
        (
            r#"{"httpGet": {"port": 80, "host": "a/b"}}"#,
            r#"httpGet.host: "a/b" is neither an IP address nor a DNS name"#,
        ),
        (
            r#"{"tcpSocket": {"port": 80, "host": "bad host"}}"#,
            r#"tcpSocket.host: "bad host" is neither an IP address nor a DNS name"#,
        ),
        (
            r#"{"httpGet": {"path": "/"}}"#,
            "httpGet: missing field `port`",
        ),
        (
            r#"{"httpGet": {"port": 80, "paht": "/"}}"#,
            "httpGet.paht: unknown field `paht`, expected one of `path`, `port`, `host`, `scheme`, `httpHeaders`",
        ),
        (
            r#"{"tcpSocket": {"port": 80}, "timeoutSeconds": -2}"#,
            "timeoutSeconds: -2 is negative",
        ),
        (
            r#"{"tcpSocket": {"port": 80}, "timeoutSeconds": "1s"}"#,
            r#"timeoutSeconds: invalid type: string "1s", expected i64"#,
        ),
        (r#"[]"#, "probe: [] is not a JSON object"),
        (
            r#"{"tcpSocket": {"port": 80}, "periodSeconds": 5}"#,
            "periodSeconds: unknown field `periodSeconds`, expected one of `httpGet`, `tcpSocket`, `grpc`, `timeoutSeconds`",
        ),
    ] {
        assert_eq!(
            error(&format!(r#"{{"/app-health/app/readyz": {probe}}}"#)),
            format!("/app-health/app/readyz: {expected}"),
            "{probe}"
        );
    }
}

#[test]
fn hosts_may_be_addresses_or_names() {
    for host in [
        "10.1.2.3",
        "fd00::1",
        "app.shop.svc.cluster.local",
        "localhost",
    ] {
        let text = format!(
            r#"{{"/app-health/a/livez": {{"tcpSocket": {{"port": 1, "host": "{host}"}}}}}}"#
        );
        let probers = Probers::parse(&text).expect(host);
        assert_eq!(
            probers.get("a", ProbeKind::Liveness).map(|p| &p.action),
            Some(&Action::Tcp(TcpSocket {
                host: Some(host.into()),
                port: 1
            }))
        );
    }
    let empty =
        Probers::parse(r#"{"/app-health/a/livez": {"tcpSocket": {"port": 1, "host": ""}}}"#)
            .expect("an empty host");
    assert_eq!(
        empty.get("a", ProbeKind::Liveness).map(|p| &p.action),
        Some(&Action::Tcp(TcpSocket {
            host: None,
            port: 1
        })),
        "an empty host is the pod's IP"
    );
}

#[test]
fn more_probes_than_the_bound_are_refused() {
    let entries = |n: usize| {
        (0..n)
            .map(|i| format!(r#""/app-health/c{i}/livez": {{"tcpSocket": {{"port": 80}}}}"#))
            .collect::<Vec<_>>()
            .join(",")
    };
    assert_eq!(
        Probers::parse(&format!("{{{}}}", entries(MAX_PROBERS)))
            .expect("at the bound")
            .len(),
        MAX_PROBERS
    );
    assert_eq!(
        error(&format!("{{{}}}", entries(MAX_PROBERS + 1))),
        format!(
            "{} probes, more than the {MAX_PROBERS} the proxy runs",
            MAX_PROBERS + 1
        )
    );
}
