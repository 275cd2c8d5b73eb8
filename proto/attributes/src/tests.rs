use std::collections::HashMap;
use std::net::IpAddr;

use proptest::prelude::*;
use sextant_proto::mixer;

use super::*;

/// A value of the given type, with strings that exercise both global and per-message words.
fn value_of(ty: AttrType) -> BoxedStrategy<Value> {
    let word = prop_oneof![
        Just("GET".to_string()),
        Just("".to_string()),
        Just("request.path".to_string()),
        "[a-zA-Z0-9/_ .-]{0,12}",
        any::<String>(),
    ];
    match ty {
        AttrType::String => word.prop_map(Value::String).boxed(),
        AttrType::Int64 => any::<i64>().prop_map(Value::Int64).boxed(),
        AttrType::Double => any::<f64>()
            .prop_filter("NaN is not equal to itself", |d| !d.is_nan())
            .prop_map(Value::Double)
            .boxed(),
        AttrType::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        AttrType::Bytes => any::<Vec<u8>>().prop_map(Value::Bytes).boxed(),
        AttrType::Timestamp => (any::<i64>(), 0..1_000_000_000i32)
            .prop_map(|(seconds, nanos)| Value::Timestamp(Time { seconds, nanos }))
            .boxed(),
        AttrType::Duration => (-1_000_000i64..1_000_000, 0..1_000_000_000i32)
            .prop_map(|(seconds, nanos)| {
                Value::Duration(Span {
                    seconds,
                    nanos: if seconds < 0 { -nanos } else { nanos },
                })
            })
            .boxed(),
        AttrType::StringMap => proptest::collection::hash_map("[a-z:-]{0,8}", word, 0..5)
            .prop_map(Value::StringMap)
            .boxed(),
        AttrType::IpAddress => any::<IpAddr>().prop_map(Value::Ip).boxed(),
    }
}

fn bag_strategy() -> impl Strategy<Value = Bag> {
    proptest::sample::subsequence((0..VOCABULARY.len()).collect::<Vec<_>>(), 0..12)
        .prop_flat_map(|ids| {
            ids.into_iter()
                .map(|i| {
                    let id = AttrId(u16::try_from(i).unwrap_or(0));
                    value_of(id.ty()).prop_map(move |v| (id, v))
                })
                .collect::<Vec<_>>()
        })
        .prop_map(|pairs| {
            let mut bag = Bag::new();
            for (id, v) in pairs {
                bag.set(id, v)
                    .expect("generated values have the attribute's type");
            }
            bag
        })
}

proptest! {
    #[test]
    fn plain_round_trips(bag in bag_strategy()) {
        prop_assert_eq!(from_plain(to_plain(&bag)).expect("own encoding decodes"), bag);
    }

    #[test]
    fn compressed_round_trips(bag in bag_strategy()) {
        prop_assert_eq!(from_compressed(to_compressed(&bag)).expect("own encoding decodes"), bag);
    }

    #[test]
    fn compressed_and_plain_agree_through_the_wire(bag in bag_strategy()) {
        use prost::Message;
        let c = mixer::CompressedAttributes::decode(to_compressed(&bag).encode_to_vec().as_slice()).expect("decodes");
        let p = mixer::Attributes::decode(to_plain(&bag).encode_to_vec().as_slice()).expect("decodes");
        prop_assert_eq!(from_compressed(c).expect("valid"), from_plain(p).expect("valid"));
    }
}

fn plain(pairs: Vec<(&str, mixer::attribute_value::Value)>) -> mixer::Attributes {
    mixer::Attributes {
        values: pairs
            .into_iter()
            .map(|(k, v)| (k.to_string(), mixer::AttributeValue { value: Some(v) }))
            .collect(),
    }
}

#[test]
fn unknown_attribute_names_a_suggestion() {
    use mixer::attribute_value::Value as Pv;
    let err = from_plain(plain(vec![(
        "request.hedaers",
        Pv::StringValue("x".into()),
    )]))
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown attribute `request.hedaers` (did you mean `request.headers`?)"
    );
}

#[test]
fn wrong_type_is_refused_with_both_types() {
    use mixer::attribute_value::Value as Pv;
    let err = from_plain(plain(vec![("request.size", Pv::StringValue("10".into()))])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "attribute `request.size` is a int64 but a string value was sent"
    );
}

#[test]
fn ip_addresses_accept_bytes_and_text_and_refuse_garbage() {
    use mixer::attribute_value::Value as Pv;
    let a = from_plain(plain(vec![(
        "source.ip",
        Pv::BytesValue(vec![10, 0, 0, 1]),
    )]))
    .unwrap();
    let b = from_plain(plain(vec![(
        "source.ip",
        Pv::StringValue("10.0.0.1".into()),
    )]))
    .unwrap();
    assert_eq!(a, b);
    let err = from_plain(plain(vec![("source.ip", Pv::BytesValue(vec![1, 2, 3]))])).unwrap_err();
    assert!(
        err.to_string().contains("3 bytes is not an IP address"),
        "{err}"
    );
}

#[test]
fn header_names_are_lower_cased() {
    use mixer::attribute_value::Value as Pv;
    let m = HashMap::from([("X-User".to_string(), "guest".to_string())]);
    let bag = from_plain(plain(vec![(
        "request.headers",
        Pv::StringMapValue(mixer::StringMap { entries: m }),
    )]))
    .unwrap();
    let Some(Value::StringMap(h)) = bag.get_by_name("request.headers") else {
        panic!("headers missing")
    };
    assert_eq!(h.get("x-user").map(String::as_str), Some("guest"));
}

#[test]
fn newer_client_dictionary_is_a_clear_error() {
    let c = mixer::CompressedAttributes {
        global_word_count: global_word_count() + 5,
        ..Default::default()
    };
    let err = from_compressed(c).unwrap_err();
    assert!(err.to_string().contains("upgrade the hub"), "{err}");
}

#[test]
fn older_client_dictionary_still_decodes_and_out_of_range_is_refused() {
    let mut bag = Bag::new();
    bag.set_by_name("request.method", Value::String("GET".into()))
        .unwrap();
    let mut c = to_compressed(&bag);
    // A client that only knows the common words sends the attribute name as a message word.
    let name_index = *c.strings.keys().next().unwrap();
    let value_index = c.strings[&name_index];
    c.strings.clear();
    c.words.push("request.method".into());
    c.strings
        .insert(-i32::try_from(c.words.len()).unwrap(), value_index);
    c.global_word_count = u32::try_from(COMMON_WORDS.len()).unwrap();
    assert_eq!(from_compressed(c.clone()).unwrap(), bag);
    c.strings.insert(-99, 0);
    assert!(matches!(
        from_compressed(c),
        Err(DecodeError::BadIndex { index: -99, .. })
    ));
}

#[test]
fn the_frozen_dictionary_head_never_changes() {
    // Indexes are wire format: editing COMMON_WORDS breaks every deployed client.
    assert_eq!(COMMON_WORDS.len(), 80);
    assert_eq!(COMMON_WORDS[3], "GET");
    assert_eq!(GLOBAL_DICTIONARY[COMMON_WORDS.len()], "source.uid");
}

#[test]
fn docs_attributes_md_is_generated_from_the_vocabulary() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/attributes.md");
    let want = attributes_markdown();
    if std::env::var_os("SEXTANT_BLESS").is_some() {
        std::fs::write(path, &want).expect("write docs/attributes.md");
    }
    let have = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        have == want,
        "docs/attributes.md is stale: run `SEXTANT_BLESS=1 cargo test -p sextant-attributes`"
    );
}

#[test]
fn report_entries_use_batch_words_and_delta_overlays() {
    let mut first = Bag::new();
    first
        .set_by_name("destination.service.name", Value::String("reviews".into()))
        .unwrap();
    first
        .set_by_name("response.code", Value::Int64(200))
        .unwrap();
    let mut change = Bag::new();
    change
        .set_by_name("response.code", Value::Int64(503))
        .unwrap();

    // The batch shares one word list: move the first entry's words to the batch level.
    let mut c1 = to_compressed(&first);
    let batch_words = std::mem::take(&mut c1.words);
    c1.global_word_count = 0;
    let b1 = from_compressed_entry(c1, &batch_words, global_word_count(), None).unwrap();
    assert_eq!(b1, first);

    let b2 = from_compressed_entry(
        to_compressed(&change),
        &batch_words,
        global_word_count(),
        Some(b1),
    )
    .unwrap();
    assert_eq!(b2.get_by_name("response.code"), Some(&Value::Int64(503)));
    assert_eq!(
        b2.get_by_name("destination.service.name"),
        Some(&Value::String("reviews".into())),
        "delta entries keep what they do not change"
    );
}

/// The bags of a Report as the prost message and `from_compressed_entry` give them (the reference decoding),
/// each entry's result as text so errors compare too.
fn reference_bags(req: &mixer::ReportRequest) -> Vec<Result<Bag, String>> {
    let delta = req.repeated_attributes_semantics == 0;
    let mut out = Vec::new();
    let mut previous: Option<Bag> = None;
    for c in req.attributes.clone() {
        let base = if delta { previous.take() } else { None };
        let r = from_compressed_entry(c, &req.default_words, req.global_word_count, base);
        previous = r.as_ref().ok().cloned();
        out.push(r.map_err(|e| e.to_string()));
        if previous.is_none() && delta {
            break;
        }
    }
    out
}

/// The bags [`ReportWire`] gives, with each bag's changes checked against the previous bag: an attribute not
/// in the change set has the previous bag's value.
fn wire_bags(bytes: &[u8]) -> Vec<Result<Bag, String>> {
    let wire = ReportWire::parse(bytes).expect("the top level parses");
    let mut out = Vec::new();
    let mut previous: Option<Bag> = None;
    let mut bags = wire.bags();
    while let Some(next) = bags.next() {
        match next {
            Ok((bag, changes)) => {
                if let (Changes::Only(set), Some(prev)) = (changes, &previous) {
                    for i in 0..VOCABULARY.len() {
                        let id = AttrId(u16::try_from(i).unwrap_or(0));
                        if !set.contains(id) {
                            assert_eq!(
                                bag.get(id),
                                prev.get(id),
                                "{} changed unannounced",
                                id.name()
                            );
                        }
                    }
                } else {
                    assert!(
                        matches!(changes, Changes::All),
                        "an entry that is not an overlay changes everything"
                    );
                }
                previous = Some(bag.clone());
                out.push(Ok(bag.clone()));
            }
            Err(e) => {
                out.push(Err(e.to_string()));
                if wire.is_delta() {
                    break;
                }
                previous = None;
            }
        }
    }
    out
}

/// A Report of `bags`, each entry delta-encoded against the previous bag when `delta`, with some words moved
/// to the batch's default words.
fn report_of(bags: &[Bag], delta: bool, batch_words: bool) -> mixer::ReportRequest {
    let mut entries = Vec::new();
    let mut prev: Option<&Bag> = None;
    for b in bags {
        let entry = match prev.filter(|_| delta) {
            None => to_compressed(b),
            Some(p) => {
                let mut d = Bag::new();
                for (id, v) in b.iter() {
                    if p.get(id) != Some(v) {
                        d.set(id, v.clone()).expect("same type");
                    }
                }
                to_compressed(&d)
            }
        };
        entries.push(entry);
        prev = Some(b);
    }
    let mut default_words = Vec::new();
    if batch_words && let Some(first) = entries.first_mut() {
        default_words = std::mem::take(&mut first.words);
        first.global_word_count = 0;
        // Entries without words of their own use the batch's: only valid when they need none.
        for e in entries.iter_mut().skip(1) {
            if e.words.is_empty() {
                e.global_word_count = 0;
            }
        }
    }
    mixer::ReportRequest {
        attributes: entries,
        default_words,
        global_word_count: global_word_count(),
        repeated_attributes_semantics: i32::from(!delta),
    }
}

proptest! {
    #[test]
    fn report_wire_decodes_as_prost_and_from_compressed_entry_do(
        bags in proptest::collection::vec(bag_strategy(), 1..6),
        delta in any::<bool>(),
        batch_words in any::<bool>(),
    ) {
        let req = report_of(&bags, delta, batch_words);
        let bytes = prost::Message::encode_to_vec(&req);
        prop_assert_eq!(wire_bags(&bytes), reference_bags(&req));
    }
}

#[test]
fn report_wire_names_the_entry_and_error() {
    let mut bag = Bag::new();
    bag.set_by_name("response.code", Value::Int64(200)).unwrap();
    let mut req = report_of(&[bag.clone(), bag], true, false);
    req.attributes[1].strings.insert(-9, 3); // no per-message word 9
    let bytes = prost::Message::encode_to_vec(&req);
    assert_eq!(wire_bags(&bytes), reference_bags(&req));
    assert!(
        wire_bags(&bytes)[1]
            .as_ref()
            .is_err_and(|e| e.contains("word index -9"))
    );

    // Cut inside the second entry: the top level is still whole, the entry is not.
    let wire = ReportWire::parse(&bytes[..bytes.len() - 1]);
    let err = wire.expect_err("a cut message is malformed").to_string();
    assert!(err.contains("malformed ReportRequest"), "{err}");
    let mut one = Vec::new();
    prost::Message::encode(&req.attributes[0], &mut one).unwrap();
    let mut framed = vec![0x0a, u8::try_from(one.len() + 5).unwrap()];
    framed.extend_from_slice(&one);
    framed.extend_from_slice(&[0x18, 0x96, 0x01, 0x20, 0x00]); // a field 3 of CompressedAttributes, varint
    let wire = ReportWire::parse(&framed).unwrap();
    let mut bags = wire.bags();
    let err = bags
        .next()
        .unwrap()
        .expect_err("a map field that is not a message");
    assert_eq!(
        err.to_string(),
        "malformed ReportRequest.attributes[0]: wrong wire type for a map entry"
    );
}

#[test]
fn a_message_value_given_twice_in_a_map_entry_is_merged_as_prost_does() {
    // Found with the native_report fuzz target (fuzz/artifacts/native_report/): a map entry whose value, a
    // message, is given twice is the merge of both (protobuf's rule, prost's decoding); ReportWire kept only
    // the last.
    fn varint(mut v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
        out
    }
    fn field(number: u64, payload: &[u8]) -> Vec<u8> {
        [
            varint(number << 3 | 2),
            varint(payload.len() as u64),
            payload.to_vec(),
        ]
        .concat()
    }
    // A map entry's key: the word's index in the global dictionary, as a sint32 (field 1, varint).
    let key = |name: &str| {
        let i = GLOBAL_DICTIONARY.iter().position(|w| *w == name).unwrap();
        [vec![0x08], varint(2 * i as u64)].concat()
    };
    let seconds_then_nanos = [field(2, &[0x08, 0x05]), field(2, &[0x10, 0x03])].concat();
    // destination.labels: {app: v1}, then {version: v2} in a second value.
    let pair = |k: &str, v: &str| field(1, &[key(k), vec![0x10], varint(2 * index(v))].concat());
    fn index(word: &str) -> u64 {
        GLOBAL_DICTIONARY.iter().position(|w| *w == word).unwrap() as u64
    }
    let labels = [
        key("destination.labels"),
        field(2, &pair("app", "v1")),
        field(2, &pair("version", "v2")),
    ]
    .concat();
    let entry = [
        [vec![0x08], varint(u64::from(global_word_count()))].concat(),
        field(
            7,
            &[key("response.time"), seconds_then_nanos.clone()].concat(),
        ),
        field(8, &[key("response.duration"), seconds_then_nanos].concat()),
        field(10, &labels),
    ]
    .concat();
    let bytes = field(1, &entry);
    let req: mixer::ReportRequest = prost::Message::decode(bytes.as_slice()).unwrap();
    let bags = wire_bags(&bytes);
    assert_eq!(bags, reference_bags(&req));
    let bag = bags[0].as_ref().unwrap();
    let span = Span {
        seconds: 5,
        nanos: 3,
    };
    assert_eq!(
        bag.get_by_name("response.duration"),
        Some(&Value::Duration(span))
    );
    let time = Time {
        seconds: 5,
        nanos: 3,
    };
    assert_eq!(
        bag.get_by_name("response.time"),
        Some(&Value::Timestamp(time))
    );
    let labels: HashMap<String, String> = [("app", "v1"), ("version", "v2")]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into();
    assert_eq!(
        bag.get_by_name("destination.labels"),
        Some(&Value::StringMap(labels))
    );
}

#[test]
fn one_attribute_named_by_two_words_of_one_map_is_a_duplicate() {
    // Found with the native_report fuzz target (fuzz/artifacts/native_report/): ReportWire took two keys
    // of one map naming the same attribute (a global word and a message word) for a repeated key and kept
    // the later value, where the decoding of the whole message refuses the attribute as given twice.
    let index =
        |w: &str| i32::try_from(GLOBAL_DICTIONARY.iter().position(|g| *g == w).unwrap()).unwrap();
    let entry = mixer::CompressedAttributes {
        global_word_count: global_word_count(),
        words: vec!["request.path".to_string()],
        strings: [(index("request.path"), index("GET")), (-1, index("POST"))].into(),
        ..Default::default()
    };
    let mut req = mixer::ReportRequest {
        attributes: vec![entry.clone()],
        repeated_attributes_semantics: 1,
        ..Default::default()
    };
    let bytes = prost::Message::encode_to_vec(&req);
    assert_eq!(wire_bags(&bytes), reference_bags(&req));
    assert_eq!(
        wire_bags(&bytes),
        vec![Err(
            "attribute `request.path` is given more than once".to_string()
        )]
    );
    // Laid over a previous bag too (where the reference decoding keeps either value, by hash map order).
    let mut first = Bag::new();
    first
        .set_by_name("request.path", Value::String("/".into()))
        .unwrap();
    req.attributes = vec![to_compressed(&first), entry];
    req.repeated_attributes_semantics = 0;
    let bags = wire_bags(&prost::Message::encode_to_vec(&req));
    assert_eq!(bags[0], Ok(first));
    assert_eq!(
        bags[1],
        Err("attribute `request.path` is given more than once".to_string())
    );
}

#[test]
fn string_maps_set_from_entries_equal_maps_set_whole() {
    let labels = lookup("destination.labels").unwrap();
    let headers = lookup("request.headers").unwrap();
    let map = |pairs: &[(&str, &str)]| {
        Value::StringMap(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
        )
    };
    let cases: [&[(&str, &str)]; 6] = [
        &[("version", "v1")],
        &[("version", "v2")],
        &[("app", "reviews"), ("version", "v2")],
        &[("version", "v3"), ("version", "v4")],
        &[],
        &[("Version", "v5"), ("app", "x")],
    ];
    let (mut by_entries, mut whole) = (Bag::new(), Bag::new());
    for entries in cases {
        for id in [labels, headers] {
            by_entries.set_str_map(id, entries).unwrap();
            whole.set(id, map(entries)).unwrap();
        }
        assert_eq!(by_entries, whole, "{entries:?}");
    }
    assert!(matches!(
        by_entries.set_str_map(lookup("request.path").unwrap(), &[]),
        Err(DecodeError::WrongType { .. })
    ));
}

/// A sequence of bags that share most attributes, as one listener's requests do: a base bag, each request
/// changing a few attributes and sometimes dropping some.
fn request_stream() -> impl Strategy<Value = Vec<Bag>> {
    (
        bag_strategy(),
        proptest::collection::vec((bag_strategy(), 0..3usize), 1..8),
    )
        .prop_map(|(base, changes)| {
            let mut out = Vec::new();
            let mut current = base;
            for (overlay, drop) in changes {
                let mut next = current.clone();
                for (id, v) in overlay.iter() {
                    next.set(id, v.clone()).expect("same vocabulary types");
                }
                let present: Vec<AttrId> = next.iter().map(|(id, _)| id).collect();
                for id in present.into_iter().take(drop) {
                    next.remove(id);
                }
                out.push(next.clone());
                current = next;
            }
            out
        })
}

proptest! {
    /// What the proxy sends is what the hub reads: bags pushed into batches (a new batch wherever one
    /// is refused) come out of the hub's Report decoder equal and in order.
    #[test]
    fn report_batches_decode_to_the_bags_pushed(bags in request_stream()) {
        let mut batches = vec![ReportBatch::new()];
        for bag in &bags {
            let current = batches.last_mut().expect("one batch at least");
            if !current.push(bag) {
                let mut fresh = ReportBatch::new();
                prop_assert!(fresh.push(bag), "an empty batch takes any bag");
                batches.push(fresh);
            }
        }
        let mut decoded = Vec::new();
        for batch in batches {
            let bytes = prost::Message::encode_to_vec(&batch.finish());
            decoded.extend(wire_bags(&bytes));
        }
        let expected: Vec<Result<Bag, String>> = bags.into_iter().map(Ok).collect();
        prop_assert_eq!(decoded, expected);
    }
}

#[test]
fn a_batch_refuses_a_bag_that_drops_an_attribute_and_sends_only_changes() {
    let mut a = Bag::new();
    a.set_by_name("request.path", Value::String("/a".into()))
        .unwrap();
    a.set_by_name("response.code", Value::Int64(200)).unwrap();
    let mut b = a.clone();
    b.set_by_name("response.code", Value::Int64(503)).unwrap();
    let mut dropped = b.clone();
    dropped.remove(lookup("request.path").unwrap());
    let mut batch = ReportBatch::new();
    assert!(batch.push(&a) && batch.push(&b));
    assert!(!batch.push(&dropped));
    let req = batch.finish();
    assert_eq!(req.attributes.len(), 2);
    // The second entry holds the one attribute that changed.
    let second = &req.attributes[1];
    assert_eq!(second.int64s.len() + second.strings.len(), 1);
}
