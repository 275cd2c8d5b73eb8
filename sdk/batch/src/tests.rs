use super::*;

fn family<'a>(name: &'a str, labels: &'a [&'a str]) -> Family<'a> {
    Family {
        name,
        kind: MetricKind::Counter,
        help: "requests",
        label_names: labels,
        buckets: &[],
    }
}

#[test]
fn metrics_round_trip_across_concatenated_segments() {
    let mut w = BatchWriter::new(BatchKind::Metrics);
    let f = w.family(&family(
        "istio_requests_total",
        &["response_code", "destination_workload"],
    ));
    w.metric(f, 1.0, 7, ["200", "reviews-v1"]);
    w.metric(f, 2.5, 8, ["503", "reviews-v1"]);
    let mut buf = Vec::new();
    w.finish_into(&mut buf);
    let h = w.family(&Family {
        name: "istio_request_duration_milliseconds",
        kind: MetricKind::Histogram,
        help: "",
        label_names: &[],
        buckets: &[1.0, 5.0],
    });
    w.metric(h, 3.0, 9, []);
    w.finish_into(&mut buf);

    let b = Batch::parse(&buf).unwrap();
    assert_eq!(b.len(), 3);
    let m: Vec<_> = b.metrics().collect();
    assert_eq!(m[0].family().name(), "istio_requests_total");
    assert_eq!(m[1].value(), 2.5);
    assert_eq!(m[1].time_nanos(), 8);
    assert_eq!(
        m[1].labels().collect::<Vec<_>>(),
        vec![
            ("response_code", "503"),
            ("destination_workload", "reviews-v1")
        ]
    );
    assert_eq!(m[2].family().kind(), MetricKind::Histogram);
    assert_eq!(m[2].family().buckets(), &[1.0, 5.0]);
    assert_eq!(m[2].label_values().count(), 0);
}

#[test]
fn logs_spans_and_attributes_round_trip() {
    let mut w = BatchWriter::new(BatchKind::Logs);
    w.log(
        "access",
        Severity::Warn,
        42,
        [
            ("path", Value::Str("/a")),
            ("code", Value::Int(-503)),
            ("latency", Value::Duration(1_500_000)),
            ("ok", Value::Bool(false)),
            ("ratio", Value::Double(0.5)),
            ("raw", Value::Bytes(&[1, 2, 3])),
            ("at", Value::Timestamp(-1)),
            ("none", Value::Null),
        ],
    );
    let logs = w.finish();
    let b = Batch::parse(&logs).unwrap();
    let l = b.logs().next().unwrap();
    assert_eq!(
        (l.name(), l.severity(), l.time_nanos()),
        ("access", Severity::Warn, 42)
    );
    let f: Vec<_> = l.fields().collect();
    assert_eq!(f.len(), 8);
    assert_eq!(
        f[1],
        Field {
            key: "code",
            value: Value::Int(-503)
        }
    );
    assert_eq!(f[5].value, Value::Bytes(&[1, 2, 3]));
    assert_eq!(f[6].value, Value::Timestamp(-1));

    let mut w = BatchWriter::new(BatchKind::Spans);
    let span = Span {
        trace_id: [7; 16],
        span_id: [1; 8],
        parent_id: [0; 8],
        name: "GET /reviews",
        kind: SpanKind::Server,
        start_nanos: 10,
        end_nanos: 20,
        flags: SPAN_SAMPLED,
        service: "reviews",
        peer_service: "",
    };
    w.span(&span, [("http.status_code", Value::Str("200"))]);
    let spans = w.finish();
    let b = Batch::parse(&spans).unwrap();
    let s = b.spans().next().unwrap();
    assert_eq!(s.span(), span);
    assert_eq!(s.tags().next().unwrap().key, "http.status_code");

    let mut w = BatchWriter::new(BatchKind::Attributes);
    w.attributes([("source.workload.name", Value::Str("productpage"))]);
    let attrs = w.finish();
    let b = Batch::parse(&attrs).unwrap();
    assert_eq!(
        b.attributes().next().unwrap().value,
        Value::Str("productpage")
    );
}

#[test]
fn strings_are_interned_per_segment() {
    let mut w = BatchWriter::new(BatchKind::Metrics);
    let f = w.family(&family("m", &["workload"]));
    for _ in 0..100 {
        w.metric(f, 1.0, 0, ["a-long-workload-name-that-repeats"]);
    }
    let one = w.finish();
    // 100 records of family + f64 + time + one index: about 11 bytes each, the string once.
    assert!(one.len() < 100 * 12 + 100, "{} bytes", one.len());
}

#[test]
fn every_truncation_and_corruption_is_an_error_not_a_panic() {
    let mut w = BatchWriter::new(BatchKind::Spans);
    let span = Span {
        trace_id: [7; 16],
        span_id: [1; 8],
        parent_id: [2; 8],
        name: "n",
        kind: SpanKind::Client,
        start_nanos: 1,
        end_nanos: 2,
        flags: 0,
        service: "s",
        peer_service: "p",
    };
    w.span(&span, [("k", Value::Str("v")), ("b", Value::Bytes(b"xyz"))]);
    let buf = w.finish();
    for n in 0..buf.len() {
        assert!(
            Batch::parse(&buf[..n]).is_err() || n == 0,
            "prefix of {n} bytes parsed"
        );
    }
    for i in 0..buf.len() {
        for bit in 0..8 {
            let mut c = buf.clone();
            c[i] ^= 1 << bit;
            // Must not panic; may or may not be an error (a flipped payload byte is still well-formed).
            if let Ok(b) = Batch::parse(&c) {
                for s in b.spans() {
                    let _ = s.span();
                    let _ = s.tags().count();
                }
            }
        }
    }
    let e = Batch::parse(b"XYZ\x01\x01\0\0\0\0").unwrap_err();
    assert!(e.to_string().contains("bad magic"), "{e}");
}

#[test]
fn a_hostile_count_does_not_allocate() {
    // Header for a 10-byte body that claims 2^60 strings.
    let mut buf = b"SXB\x01\x02".to_vec();
    let body = [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10, 0];
    buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
    buf.extend_from_slice(&body);
    assert!(Batch::parse(&buf).is_err());
}

#[test]
fn samples_round_trip() {
    let mut w = SampleWriter::new();
    w.sample(3, 1.5, ["a", "b"]);
    w.sample(0, -2.0, []);
    let got: Vec<_> = SampleReader::new(w.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        got[0],
        Sample {
            handle: 3,
            value: 1.5,
            label_values: vec!["a", "b"]
        }
    );
    assert_eq!(got[1].label_values.len(), 0);
    let bytes = w.as_bytes();
    let mut r = SampleReader::new(&bytes[..bytes.len() - 3]);
    assert!(r.next().unwrap().is_ok());
    assert!(r.next().unwrap().is_err());
    assert!(r.next().is_none());
}

#[test]
fn metric_views_decode_multi_byte_indices_and_share_keys() {
    // More than 128 strings: label indices take two varint bytes, off the validation's fast path.
    let mut w = BatchWriter::new(BatchKind::Metrics);
    let f = w.family(&family("m", &["a", "b"]));
    let names: Vec<String> = (0..300).map(|i| format!("v{i}")).collect();
    for n in &names {
        w.metric(f, 1.0, 1_700_000_000_000_000_000, [n.as_str(), "x"]);
    }
    w.metric(f, 2.0, 3, ["v299", "x"]);
    let buf = w.finish();
    let b = Batch::parse(&buf).unwrap();
    let m: Vec<_> = b.metrics().collect();
    assert_eq!(m.len(), 301);
    for (r, n) in m.iter().zip(&names) {
        assert_eq!(r.label_values().collect::<Vec<_>>(), [n.as_str(), "x"]);
        assert_eq!(r.time_nanos(), 1_700_000_000_000_000_000);
    }
    assert_eq!(m[299].series_key(), m[300].series_key());
    assert_ne!(m[0].series_key(), m[300].series_key());
    assert_eq!(
        m[300].label_indices().collect::<Vec<_>>(),
        m[299].label_indices().collect::<Vec<_>>()
    );
    assert_eq!((m[300].value(), m[300].time_nanos()), (2.0, 3));
}

#[test]
fn samples_refer_to_earlier_label_sets() {
    let mut w = SampleWriter::new();
    let set = w.sample(1, 1.0, ["a", "b"]);
    w.sample_with(2, 2.0, set);
    let other = w.sample(1, 3.0, ["c", "d"]);
    w.sample_with(1, 4.0, set);
    assert_eq!((set, other), (LabelSet(0), LabelSet(1)));
    let got: Vec<_> = SampleReader::new(w.as_bytes())
        .map(|s| s.map(|s| (s.handle, s.value, s.label_values)))
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        got,
        [
            (1, 1.0, vec!["a", "b"]),
            (2, 2.0, vec!["a", "b"]),
            (1, 3.0, vec!["c", "d"]),
            (1, 4.0, vec!["a", "b"]),
        ]
    );
    let mut r = SampleReader::new(w.as_bytes());
    let sets: Vec<_> = std::iter::from_fn(|| r.next_raw())
        .map(|s| s.unwrap().set)
        .collect();
    assert_eq!(sets, [set, set, other, set]);

    // A reference to a set not written before is malformed.
    let mut bad = Vec::new();
    bad.push(0);
    bad.extend_from_slice(&1.0f64.to_le_bytes());
    bad.push(1);
    let e = SampleReader::new(&bad).next().unwrap().unwrap_err();
    assert_eq!(e.what, "label set reference to a set not written before");
}

#[test]
fn records_with_the_previous_records_labels_repeat_them_by_reference() {
    let mut w = BatchWriter::new(BatchKind::Metrics);
    let labels = ["response_code", "destination_workload"];
    let a = w.family(&family("a_total", &labels));
    let b = w.family(&family("b_total", &labels));
    let (ok, reviews, bad) = (w.intern("200"), w.intern("reviews-v1"), w.intern("503"));
    w.metric_interned(a, 1.0, 7, &[ok, reviews]);
    let whole = w.encoded_len();
    w.metric_interned(b, 2.0, 7, &[ok, reviews]); // repeated: no label indices written
    let repeated = w.encoded_len() - whole;
    w.metric_interned(a, 3.0, 7, &[bad, reviews]);
    w.metric_interned(b, 4.0, 7, &[bad, reviews]);
    assert_eq!(repeated, 1 + 8 + 1, "head, value and time only");
    let mut buf = Vec::new();
    w.finish_into(&mut buf);
    // A new segment starts without a previous record.
    let a2 = w.family(&family("a_total", &labels));
    let again = [w.intern("200"), w.intern("reviews-v1")];
    w.metric_interned(a2, 5.0, 8, &again);
    w.finish_into(&mut buf);

    let batch = Batch::parse(&buf).unwrap();
    let got: Vec<(String, f64, Vec<&str>)> = batch
        .metrics()
        .map(|m| {
            (
                m.family().name().to_string(),
                m.value(),
                m.label_values().collect(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("a_total".to_string(), 1.0, vec!["200", "reviews-v1"]),
            ("b_total".to_string(), 2.0, vec!["200", "reviews-v1"]),
            ("a_total".to_string(), 3.0, vec!["503", "reviews-v1"]),
            ("b_total".to_string(), 4.0, vec!["503", "reviews-v1"]),
            ("a_total".to_string(), 5.0, vec!["200", "reviews-v1"]),
        ]
    );
    let keys: Vec<_> = batch
        .metrics()
        .map(|m| m.series_key().label_bytes())
        .collect();
    assert_eq!(keys[0], keys[1]);

    // A repeat with no record before it, or after a record of another label count, is refused.
    let mut w = BatchWriter::new(BatchKind::Metrics);
    let f = w.family(&family("a_total", &labels));
    w.metric_interned(f, 1.0, 7, &[0, 0]);
    let mut bytes = w.finish();
    let head_at = bytes.len() - (1 + 8 + 1 + 2);
    assert_eq!(bytes[head_at], 0, "family 0, not a repeat");
    bytes[head_at] = 1;
    let err = Batch::parse(&bytes).expect_err("a repeat without a previous record");
    assert!(err.to_string().contains("repeats the labels"), "{err}");
}

#[test]
fn a_repeat_written_as_such_is_what_the_same_labels_again_write() {
    let labels = ["response_code", "destination_workload"];
    let segment = |repeat: bool| {
        let mut w = BatchWriter::new(BatchKind::Metrics);
        let a = w.family(&family("a_total", &labels));
        let b = w.family(&family("b_total", &labels));
        let set = [w.intern("200"), w.intern("reviews-v1")];
        w.metric_interned(a, 1.0, 7, &set);
        if repeat {
            w.metric_repeat(b, 2.0, 8);
        } else {
            w.metric_interned(b, 2.0, 8, &set);
        }
        w.finish()
    };
    assert_eq!(segment(true), segment(false));
}

#[test]
#[should_panic(expected = "no previous metric record")]
fn a_repeat_needs_a_previous_record() {
    let mut w = BatchWriter::new(BatchKind::Metrics);
    let a = w.family(&family("a_total", &["code"]));
    w.metric_repeat(a, 1.0, 7);
}
