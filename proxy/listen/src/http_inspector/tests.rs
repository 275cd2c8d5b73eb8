use super::{Found, H2_PREFACE, MAX_INSPECT_BYTES, Sniffer};

/// What a fresh inspector says of `bytes` read at once.
fn whole(bytes: &[u8]) -> Option<Found> {
    Sniffer::default().feed(bytes)
}

/// What one inspector says of `bytes` read one more byte at a time, and after how many bytes.
fn byte_by_byte(bytes: &[u8]) -> Option<(Found, usize)> {
    let mut sniffer = Sniffer::default();
    (1..=bytes.len()).find_map(|end| Some((sniffer.feed(&bytes[..end])?, end)))
}

/// Envoy's method list (Balsa's, as http-parser's); Envoy 1.40 accepts any token besides.
const ENVOY_METHODS: [&str; 34] = [
    "ACL",
    "BIND",
    "CHECKOUT",
    "CONNECT",
    "COPY",
    "DELETE",
    "GET",
    "HEAD",
    "LINK",
    "LOCK",
    "MERGE",
    "MKACTIVITY",
    "MKCALENDAR",
    "MKCOL",
    "MOVE",
    "MSEARCH",
    "NOTIFY",
    "OPTIONS",
    "PATCH",
    "POST",
    "PROPFIND",
    "PROPPATCH",
    "PURGE",
    "PUT",
    "REBIND",
    "REPORT",
    "SEARCH",
    "SOURCE",
    "SUBSCRIBE",
    "TRACE",
    "UNBIND",
    "UNLINK",
    "UNLOCK",
    "UNSUBSCRIBE",
];

#[test]
fn every_method_starts_a_request_line() {
    for method in ENVOY_METHODS
        .iter()
        .chain(&["M-SEARCH", "FOO", "get", "X_Y.1"])
    {
        let target = if *method == "CONNECT" {
            "reviews:9080"
        } else {
            "/reviews/1?x=y"
        };
        for (version, found) in [("HTTP/1.1", Found::Http11), ("HTTP/1.0", Found::Http10)] {
            let line = format!("{method} {target} {version}\r\nHost: reviews\r\n\r\n");
            assert_eq!(whole(line.as_bytes()), Some(found), "{line:?}");
            // Decided by the line's LF, not before.
            let lf = line.find('\n').expect("a line") + 1;
            assert_eq!(byte_by_byte(line.as_bytes()), Some((found, lf)), "{line:?}");
        }
    }
}

#[test]
fn a_partial_request_line_does_not_tell() {
    let request = b"GET /productpage HTTP/1.1\r\nHost: productpage\r\n\r\n";
    let lf = request.iter().position(|b| *b == b'\n').expect("a line");
    for end in 1..=lf {
        assert_eq!(whole(&request[..end]), None, "{end} bytes");
    }
    assert_eq!(whole(&request[..=lf]), Some(Found::Http11));
    // Large reads after small ones resume where the reading stopped.
    let mut sniffer = Sniffer::default();
    assert_eq!(sniffer.feed(&request[..3]), None);
    assert_eq!(sniffer.feed(&request[..20]), None);
    assert_eq!(sniffer.feed(request), Some(Found::Http11));
}

#[test]
fn request_lines_envoy_accepts_beyond_the_common_form() {
    for (line, found) in [
        // A bare LF ends the line; runs of spaces, tabs or CRs separate its parts and may trail it.
        (&b"GET / HTTP/1.1\n"[..], Found::Http11),
        (b"GET  /\t HTTP/1.1 \r\r\n", Found::Http11),
        // Absolute and asterisk targets.
        (
            b"GET http://reviews.default.svc:9080/x?y=z HTTP/1.1\r\n",
            Found::Http11,
        ),
        (b"GET h2c+a.b-c://user@host/ HTTP/1.1\r\n", Found::Http11),
        (b"OPTIONS * HTTP/1.1\r\n", Found::Http11),
        // Other versions and HTTP/0.9 (no version) are HTTP/1.0 to Envoy.
        (b"GET / HTTP/2.0\r\n", Found::Http10),
        (b"GET / HTTP/0.9\r\n", Found::Http10),
        (b"GET /\r\n", Found::Http10),
        (b"GET / \r\n", Found::Http10),
        // Envoy's isHttp11 asks whether the line ends in HTTP/1.1, which a version-less target can.
        (b"GET /HTTP/1.1\r\n", Found::Http11),
        // A preface that goes wrong after its first line is read as that line.
        (b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", Found::Http10),
    ] {
        assert_eq!(
            whole(line),
            Some(found),
            "{:?}",
            String::from_utf8_lossy(line)
        );
    }
}

#[test]
fn the_h2_preface_is_h2c_however_it_is_split() {
    for end in 1..H2_PREFACE.len() {
        assert_eq!(whole(&H2_PREFACE[..end]), None, "{end} bytes");
    }
    assert_eq!(whole(H2_PREFACE), Some(Found::H2c));
    let mut settings = H2_PREFACE.to_vec();
    settings.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    assert_eq!(whole(&settings), Some(Found::H2c));
    for split in 1..H2_PREFACE.len() {
        let mut sniffer = Sniffer::default();
        assert_eq!(sniffer.feed(&settings[..split]), None, "split at {split}");
        assert_eq!(
            sniffer.feed(&settings),
            Some(Found::H2c),
            "split at {split}"
        );
    }
    assert_eq!(
        byte_by_byte(&settings),
        Some((Found::H2c, H2_PREFACE.len()))
    );
}

#[test]
fn garbage_is_not_http_from_the_first_byte_that_shows_it() {
    for (bytes, at) in [
        // A TLS record, a NUL, CR or LF, or a space first.
        (&b"\x16\x03\x01\x02\x00\x01"[..], 1),
        (b"\0\0\0\x08", 1),
        (b"\r\nGET / HTTP/1.1\r\n", 1),
        (b"\nGET / HTTP/1.1\r\n", 1),
        (b" GET / HTTP/1.1\r\n", 1),
        (b"{\"json\": 1}", 1),
        (b"\xffGET", 1),
        // A method with a byte no token has.
        (b"GE(T / HTTP/1.1\r\n", 3),
        (b"GET\x80 / HTTP/1.1\r\n", 4),
        // A line with no target: a method alone, or a banner of one word.
        (b"GET\r\n", 5),
        (b"SSH-2.0-OpenSSH_9.6\r\n", 21),
        // Targets Envoy's URL check refuses.
        (b"GET \x7f HTTP/1.1\r\n", 5),
        (b"GET /\xc3\xa9 HTTP/1.1\r\n", 6),
        (b"GET 1http://x/ HTTP/1.1\r\n", 5),
        (b"GET http:/x HTTP/1.1\r\n", 11),
        (b"GET http: HTTP/1.1\r\n", 10),
        (b"GET reviews HTTP/1.1\r\n", 12),
        (b"GET reviews:9080 HTTP/1.1\r\n", 13),
        (b"GET http://a@@b/ HTTP/1.1\r\n", 14),
        (b"GET http://a b/ HTTP/1.1\r\n", 14),
        (b"CONNECT reviews:9080/\x80 HTTP/1.1\r\n", 22),
        (b"CONNECT {x} HTTP/1.1\r\n", 9),
        // Versions Envoy's check refuses.
        (b"GET / http/1.1\r\n", 7),
        (b"GET / HTTP/1.1x\r\n", 15),
        (b"GET / HTTP/1.10\r\n", 15),
        (b"GET / HTTP/11\r\n", 13),
        (b"GET / HTTP/1.\r\n", 14),
        (b"GET / HTTP/1.1 extra\r\n", 16),
        (b"GET / x HTTP/1.1\r\n", 7),
    ] {
        let shown = String::from_utf8_lossy(bytes);
        assert_eq!(whole(bytes), Some(Found::NotHttp), "{shown:?}");
        assert_eq!(byte_by_byte(bytes), Some((Found::NotHttp, at)), "{shown:?}");
    }
}

#[test]
fn a_request_line_that_never_ends_is_too_long_at_64_kib() {
    let mut line = b"GET /".to_vec();
    line.resize(MAX_INSPECT_BYTES - 1, b'a');
    assert_eq!(whole(&line), None);
    line.push(b'a');
    assert_eq!(whole(&line), Some(Found::TooLong));
    *line.last_mut().expect("a byte") = b'\n';
    assert_eq!(whole(&line), Some(Found::Http10));
}

#[test]
fn the_protocols_chains_match() {
    assert_eq!(Found::Http11.application_protocol(), Some("http/1.1"));
    assert_eq!(Found::Http10.application_protocol(), Some("http/1.0"));
    assert_eq!(Found::H2c.application_protocol(), Some("h2c"));
    assert_eq!(Found::NotHttp.application_protocol(), None);
    assert_eq!(Found::TooLong.application_protocol(), None);
}

#[test]
fn any_bytes_in_any_reads_give_one_answer_and_never_panic() {
    // Bytes that request lines, prefaces and near misses are made of.
    let pieces: [&[u8]; 16] = [
        b"GET",
        b"CONNECT",
        b"PRI",
        b" ",
        b"\t",
        b"\r",
        b"\n",
        b"/",
        b"*",
        b"http://",
        b"a@",
        b":",
        b"HTTP/1.1",
        b"HTTP/1.0",
        b"\x80",
        H2_PREFACE,
    ];
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..20_000 {
        let mut bytes = Vec::new();
        for _ in 0..rng.usize(1..12) {
            bytes.extend_from_slice(pieces[rng.usize(..pieces.len())]);
        }
        let at_once = whole(&bytes);
        // Read in random steps, the answer and where it comes are those of reading the prefix at once.
        let mut sniffer = Sniffer::default();
        let mut end = 0;
        let in_steps = loop {
            end = (end + rng.usize(1..8)).min(bytes.len());
            if let Some(found) = sniffer.feed(&bytes[..end]) {
                break Some((found, end));
            }
            if end == bytes.len() {
                break None;
            }
        };
        match in_steps {
            Some((found, end)) => {
                assert_eq!(whole(&bytes[..end]), Some(found), "{bytes:?}");
                assert_eq!(at_once, Some(found), "{bytes:?}");
            }
            None => assert_eq!(at_once, None, "{bytes:?}"),
        }
    }
}
