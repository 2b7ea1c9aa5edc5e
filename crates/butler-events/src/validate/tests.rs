use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use super::*;

fn rules() -> ValidationRules {
    ValidationRules {
        subject_prefix: "butler.events".into(),
        channels: ["whatsapp", "sms", "email", "webchat"]
            .map(String::from)
            .to_vec(),
        max_future_skew: Duration::seconds(86_400),
        raw_retention: Duration::days(90),
    }
}

fn now() -> DateTime<Utc> {
    "2026-11-25T12:00:00Z".parse().unwrap()
}

fn published() -> DateTime<Utc> {
    "2026-11-25T11:59:59.987654Z".parse().unwrap()
}

fn check(subject: &str, payload: &[u8], msg_id: Option<&str>) -> Result<Event, Rejection> {
    let msg = IncomingMessage {
        subject,
        payload,
        msg_id_header: msg_id,
        stream: "BUTLER_EVENTS",
        stream_sequence: 42,
        published: published(),
    };
    validate(&msg, &rules(), now())
}

fn check_json(event_type: &str, payload: Value) -> Result<Event, Rejection> {
    let bytes = serde_json::to_vec(&payload).unwrap();
    check(&format!("butler.events.{event_type}"), &bytes, None)
}

fn reason(event_type: &str, payload: Value) -> &'static str {
    match check_json(event_type, payload) {
        Ok(event) => panic!("expected a rejection, got {event:?}"),
        Err(r) => r.reason.as_str(),
    }
}

/// The shared samples, with the expectation each one carries.
#[test]
fn every_sample_gets_its_expected_outcome() {
    let samples = include_str!("../../../../tests/fixtures/sample-events.jsonl");
    let mut seen = 0;
    for line in samples.lines() {
        let sample: Value = serde_json::from_str(line).unwrap();
        let subject = sample["subject"].as_str().unwrap();
        let expect = sample["expect"].as_str().unwrap();
        let payload = match &sample["payload"] {
            Value::String(s) if s.starts_with("<any payload over") => vec![b' '; 65_537],
            Value::String(s) => s.as_bytes().to_vec(),
            other => serde_json::to_vec(other).unwrap(),
        };
        let outcome = check(subject, &payload, None);
        match (expect, outcome) {
            ("stored", Ok(_)) => {}
            ("stored", Err(r)) => panic!("{line}: rejected with {r}"),
            (code, Err(r)) => assert_eq!(r.reason.as_str(), code, "{line}"),
            (code, Ok(e)) => panic!("{line}: expected {code}, stored {e:?}"),
        }
        seen += 1;
    }
    assert_eq!(seen, 41);
}

#[test]
fn stores_timestamps_as_utc_milliseconds() {
    let e = check_json(
        "staff.status_changed",
        json!({"propertyId": "p", "timestamp": "2026-11-24T10:15:00.250+01:00", "staffId": "s"}),
    )
    .unwrap();
    assert_eq!(e.timestamp.to_string(), "2026-11-24T09:15:00.250Z");
    let e = check_json(
        "staff.logout",
        json!({"propertyId": "p", "timestamp": "2026-11-24T16:02:11.123456Z"}),
    )
    .unwrap();
    assert_eq!(e.timestamp.to_string(), "2026-11-24T16:02:11.123Z");
}

#[test]
fn fills_type_timestamp_and_id_from_the_message_when_absent() {
    let e = check(
        "butler.events.message.received",
        br#"{"propertyId":"p"}"#,
        None,
    )
    .unwrap();
    assert_eq!(e.event_type, EventType::MessageReceived);
    assert_eq!(e.timestamp.to_string(), "2026-11-25T11:59:59.987Z");
    assert_eq!(e.id, "evt_BUTLER_EVENTS_42");

    let e = check(
        "butler.events.message.received",
        br#"{"propertyId":"p"}"#,
        Some("pub-7"),
    )
    .unwrap();
    assert_eq!(e.id, "pub-7");

    let e = check(
        "butler.events.message.received",
        br#"{"propertyId":"p","id":"mine"}"#,
        Some("pub-7"),
    )
    .unwrap();
    assert_eq!(e.id, "mine");
}

#[test]
fn keeps_every_field_and_ignores_unknown_ones() {
    let e = check_json(
        "response.time_recorded",
        json!({"id": "e1", "eventType": "response.time_recorded", "propertyId": "p",
               "channel": "sms", "guestId": "g", "staffId": "s", "conversationId": "c",
               "taskId": "t", "value": 1.5, "durationMs": 4.0, "metadata": {"a": [1]},
               "somethingNew": true}),
    )
    .unwrap();
    assert_eq!(e.channel.as_deref(), Some("sms"));
    assert_eq!(e.guest_id.as_deref(), Some("g"));
    assert_eq!(e.staff_id.as_deref(), Some("s"));
    assert_eq!(e.conversation_id.as_deref(), Some("c"));
    assert_eq!(e.task_id.as_deref(), Some("t"));
    assert_eq!(e.value, Some(1.5));
    assert_eq!(e.duration_ms, Some(4));
    assert_eq!(e.metadata.as_deref(), Some(r#"{"a":[1]}"#));
}

#[test]
fn null_optional_fields_count_as_absent() {
    let e = check_json(
        "message.sent",
        json!({"propertyId": "p", "channel": null, "metadata": null, "timestamp": null, "id": null}),
    )
    .unwrap();
    assert_eq!(e.channel, None);
    assert_eq!(e.metadata, None);
    assert_eq!(e.id, "evt_BUTLER_EVENTS_42");
}

#[test]
fn size_limit_is_exactly_64_kib() {
    let mut body = br#"{"propertyId":"p","metadata":{"pad":""#.to_vec();
    let tail = br#""}}"#;
    body.resize(MAX_PAYLOAD_BYTES - tail.len(), b'x');
    body.extend_from_slice(tail);
    assert_eq!(body.len(), MAX_PAYLOAD_BYTES);
    assert!(check("butler.events.message.sent", &body, None).is_ok());
    body.insert(body.len() - tail.len(), b'x');
    let r = check("butler.events.message.sent", &body, None).unwrap_err();
    assert_eq!(r.reason, RejectReason::PayloadTooLarge);
}

#[test]
fn invalid_json_covers_empty_non_object_and_bad_utf8() {
    for body in [
        &b""[..],
        b"   ",
        b"null",
        b"\"x\"",
        b"42",
        b"[]",
        b"{",
        b"{\"a\":\xff}",
    ] {
        let r = check("butler.events.message.sent", body, None).unwrap_err();
        assert_eq!(r.reason, RejectReason::InvalidJson, "{body:?}");
    }
}

#[test]
fn unknown_subject_wins_over_whatever_the_payload_says() {
    let r = check(
        "butler.events.guest.teleported",
        br#"{"eventType":"message.sent","propertyId":"p"}"#,
        None,
    )
    .unwrap_err();
    assert_eq!(r.reason, RejectReason::UnknownEventType);
    assert_eq!(
        reason(
            "message.sent",
            json!({"eventType": "guest.teleported", "propertyId": "p"})
        ),
        "unknown_event_type"
    );
    assert_eq!(
        reason("message.sent", json!({"eventType": 7, "propertyId": "p"})),
        "unknown_event_type"
    );
}

#[test]
fn property_id_rules() {
    assert_eq!(reason("message.sent", json!({})), "missing_property_id");
    assert_eq!(
        reason("message.sent", json!({"propertyId": ""})),
        "missing_property_id"
    );
    assert_eq!(
        reason("message.sent", json!({"propertyId": 12})),
        "missing_property_id"
    );
    assert_eq!(
        reason("message.sent", json!({"propertyId": null})),
        "missing_property_id"
    );
    assert_eq!(
        reason("message.sent", json!({"propertyId": "p".repeat(129)})),
        "invalid_field"
    );
    assert!(check_json("message.sent", json!({"propertyId": "é".repeat(128)})).is_ok());
}

#[test]
fn timestamp_rules() {
    assert_eq!(
        reason(
            "message.sent",
            json!({"propertyId": "p", "timestamp": 1_700_000_000})
        ),
        "invalid_timestamp"
    );
    assert_eq!(
        reason(
            "message.sent",
            json!({"propertyId": "p", "timestamp": "2026-11-24 10:00"})
        ),
        "invalid_timestamp"
    );
    assert_eq!(
        reason(
            "message.sent",
            json!({"propertyId": "p", "timestamp": "2026-11-24T10:00:00"})
        ),
        "invalid_timestamp"
    );
    // Exactly at the skew limit is accepted; a millisecond past it is not.
    assert!(
        check_json(
            "message.sent",
            json!({"propertyId": "p", "timestamp": "2026-11-26T12:00:00.000Z"})
        )
        .is_ok()
    );
    assert_eq!(
        reason(
            "message.sent",
            json!({"propertyId": "p", "timestamp": "2026-11-26T12:00:00.001Z"})
        ),
        "timestamp_in_future"
    );
    // Exactly at the retention cutoff is kept; a millisecond before it is expired.
    assert!(
        check_json(
            "message.sent",
            json!({"propertyId": "p", "timestamp": "2026-08-27T12:00:00.000Z"})
        )
        .is_ok()
    );
    assert_eq!(
        reason(
            "message.sent",
            json!({"propertyId": "p", "timestamp": "2026-08-27T11:59:59.999Z"})
        ),
        "expired"
    );
}

#[test]
fn channel_rules() {
    assert_eq!(
        reason("message.sent", json!({"propertyId": "p", "channel": "fax"})),
        "invalid_channel"
    );
    assert_eq!(
        reason("message.sent", json!({"propertyId": "p", "channel": 3})),
        "invalid_channel"
    );
    assert_eq!(
        reason("message.sent", json!({"propertyId": "p", "channel": "SMS"})),
        "invalid_channel"
    );
}

#[test]
fn invalid_field_rules() {
    let p = |extra: Value| {
        let mut v = json!({"propertyId": "p"});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };
    for extra in [
        json!({"id": ""}),
        json!({"id": 5}),
        json!({"id": "x".repeat(129)}),
        json!({"guestId": 1}),
        json!({"staffId": ["s"]}),
        json!({"conversationId": "c".repeat(129)}),
        json!({"taskId": {}}),
        json!({"value": "3"}),
        json!({"durationMs": -1}),
        json!({"durationMs": 1.5}),
        json!({"durationMs": "10"}),
        json!({"durationMs": 1e19}),
        json!({"metadata": "x"}),
        json!({"metadata": []}),
    ] {
        assert_eq!(
            reason("message.sent", p(extra.clone())),
            "invalid_field",
            "{extra}"
        );
    }
    assert_eq!(
        reason(
            "satisfaction.rating_received",
            json!({"propertyId": "p", "value": 0})
        ),
        "invalid_field"
    );
    assert_eq!(
        reason(
            "satisfaction.rating_received",
            json!({"propertyId": "p", "value": 6})
        ),
        "invalid_field"
    );
    assert_eq!(
        reason(
            "satisfaction.rating_received",
            json!({"propertyId": "p", "value": 4.5})
        ),
        "invalid_field"
    );
    assert!(
        check_json(
            "satisfaction.rating_received",
            json!({"propertyId": "p", "value": 4.0})
        )
        .is_ok()
    );
    assert_eq!(
        reason(
            "intent.classified",
            json!({"propertyId": "p", "value": 1.01, "metadata": {"intent": "x"}})
        ),
        "invalid_field"
    );
    assert_eq!(
        reason(
            "intent.classified",
            json!({"propertyId": "p", "value": -0.1, "metadata": {"intent": "x"}})
        ),
        "invalid_field"
    );
    assert!(
        check_json(
            "intent.classified",
            json!({"propertyId": "p", "value": 1, "metadata": {"intent": "x"}})
        )
        .is_ok()
    );
    assert_eq!(
        reason(
            "intent.action_taken",
            json!({"propertyId": "p", "metadata": {"intent": 3}})
        ),
        "invalid_field"
    );
    // An empty guestId is a string of at most 128 characters: allowed.
    assert!(check_json("message.sent", json!({"propertyId": "p", "guestId": ""})).is_ok());
}

#[test]
fn missing_required_field_rules() {
    assert_eq!(
        reason("response.time_recorded", json!({"propertyId": "p"})),
        "missing_required_field"
    );
    assert_eq!(
        reason("satisfaction.rating_received", json!({"propertyId": "p"})),
        "missing_required_field"
    );
    for t in [
        "intent.classified",
        "intent.action_taken",
        "intent.confidence_low",
    ] {
        assert_eq!(
            reason(t, json!({"propertyId": "p"})),
            "missing_required_field"
        );
        assert_eq!(
            reason(t, json!({"propertyId": "p", "metadata": {}})),
            "missing_required_field"
        );
        assert!(check_json(t, json!({"propertyId": "p", "metadata": {"intent": "spa"}})).is_ok());
    }
}

#[test]
fn the_first_failing_rule_is_the_reason() {
    // Each payload breaks its expected rule and every rule after it.
    let all_after = |from: &str| -> Value {
        let mut v = json!({"channel": "fax", "durationMs": -1});
        let o = v.as_object_mut().unwrap();
        match from {
            "event_type_mismatch" => {
                o.insert("eventType".into(), json!("message.sent"));
                o.insert("timestamp".into(), json!("nope"));
            }
            "invalid_timestamp" => {
                o.insert("propertyId".into(), json!("p"));
                o.insert("timestamp".into(), json!("nope"));
            }
            "timestamp_in_future" => {
                o.insert("propertyId".into(), json!("p"));
                o.insert("timestamp".into(), json!("2031-01-01T00:00:00Z"));
            }
            "expired" => {
                o.insert("propertyId".into(), json!("p"));
                o.insert("timestamp".into(), json!("2019-01-01T00:00:00Z"));
            }
            "invalid_channel" => {
                o.insert("propertyId".into(), json!("p"));
            }
            _ => unreachable!(),
        }
        v
    };
    for code in [
        "event_type_mismatch",
        "invalid_timestamp",
        "timestamp_in_future",
        "expired",
        "invalid_channel",
    ] {
        assert_eq!(reason("response.time_recorded", all_after(code)), code);
    }
    assert_eq!(
        reason(
            "response.time_recorded",
            json!({"propertyId": "p", "durationMs": -1})
        ),
        "invalid_field"
    );
}

#[test]
fn live_effects_follow_the_lifecycle() {
    let effect = |t: &str, extra: Value| {
        let mut v = json!({"propertyId": "p"});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        check_json(t, v).unwrap().live_effect
    };
    let conv = json!({"conversationId": "c"});
    assert_eq!(
        effect("conversation.started", conv.clone()),
        Some(LiveEffect::Conversation { active: true })
    );
    assert_eq!(
        effect("conversation.escalated", conv.clone()),
        Some(LiveEffect::Conversation { active: true })
    );
    assert_eq!(
        effect("conversation.resolved", conv.clone()),
        Some(LiveEffect::Conversation { active: false })
    );
    assert_eq!(
        effect("conversation.closed", conv),
        Some(LiveEffect::Conversation { active: false })
    );
    assert_eq!(effect("conversation.started", json!({})), None);
    assert_eq!(
        effect("staff.login", json!({"staffId": "s"})),
        Some(LiveEffect::Staff { online: true })
    );
    assert_eq!(
        effect("staff.logout", json!({"staffId": "s"})),
        Some(LiveEffect::Staff { online: false })
    );
    assert_eq!(
        effect(
            "staff.status_changed",
            json!({"staffId": "s", "metadata": {"status": "available"}})
        ),
        Some(LiveEffect::Staff { online: true })
    );
    assert_eq!(
        effect(
            "staff.status_changed",
            json!({"staffId": "s", "metadata": {"status": "busy"}})
        ),
        Some(LiveEffect::Staff { online: false })
    );
    assert_eq!(
        effect("task.created", json!({"taskId": "t"})),
        Some(LiveEffect::TaskCreated)
    );
    assert_eq!(
        effect("task.completed", json!({"taskId": "t"})),
        Some(LiveEffect::TaskCompleted)
    );
    assert_eq!(effect("task.assigned", json!({"taskId": "t"})), None);
    assert_eq!(effect("message.sent", json!({"conversationId": "c"})), None);
}

/// Hostile input: whatever arrives, validation answers (an event or a reason) without
/// panicking, and what it accepts keeps the stored form's invariants.
mod hostile {
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    use super::super::fields::{Field, Fields};
    use super::*;

    const FIELDS: [&str; 13] = [
        "id",
        "eventType",
        "timestamp",
        "propertyId",
        "channel",
        "guestId",
        "staffId",
        "conversationId",
        "taskId",
        "value",
        "durationMs",
        "metadata",
        "extra",
    ];

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "\\PC{0,40}".prop_map(Value::String),
            prop_oneof![
                Just("2026-11-25T10:00:00Z"),
                Just("2026-11-25T10:00:00.123456+05:30"),
                Just("message.received"),
                Just("sms"),
                Just("'; DROP TABLE analytics_events; --"),
                Just("\u{0000}\u{001b}[31m\u{202e}"),
            ]
            .prop_map(|s| Value::String(s.to_owned())),
        ];
        leaf.prop_recursive(6, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec(("\\PC{0,8}", inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
            ]
        })
    }

    fn event_like() -> impl Strategy<Value = Value> {
        prop::collection::vec((prop::sample::select(FIELDS.to_vec()), any_json()), 0..12)
            .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
    }

    fn subject() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(EventType::ALL.to_vec())
                .prop_map(|t| format!("butler.events.{t}")),
            "\\PC{0,30}",
            Just("butler.events.".to_owned()),
            Just("butler.events.message.received.extra".to_owned()),
        ]
    }

    fn accepted_is_well_formed(e: &Event) {
        assert_eq!(e.timestamp.to_string().len(), 24);
        assert!(!e.id.is_empty() && e.id.chars().count() <= 128 || e.id.starts_with("evt_"));
        assert!(!e.property_id.is_empty() && e.property_id.chars().count() <= 128);
        if let Some(m) = &e.metadata {
            assert!(serde_json::from_str::<Map<String, Value>>(m).is_ok());
        }
        assert!(e.duration_ms.is_none_or(|d| d >= 0));
        assert!(e.value.is_none_or(f64::is_finite));
    }

    proptest! {
        // PROPTEST_CASES=1000000 for a long run; make test runs 4000 cases.
        #![proptest_config(ProptestConfig {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(4000),
            ..ProptestConfig::default()
        })]

        #[test]
        fn arbitrary_bytes_never_panic(subject in subject(), payload in prop::collection::vec(any::<u8>(), 0..2048)) {
            if let Ok(e) = check(&subject, &payload, None) {
                accepted_is_well_formed(&e);
            }
        }

        #[test]
        fn arbitrary_event_shaped_json_never_panics(subject in subject(), body in event_like(), msg_id in proptest::option::of("\\PC{0,200}")) {
            let bytes = serde_json::to_vec(&body).unwrap();
            match check(&subject, &bytes, msg_id.as_deref()) {
                Ok(e) => accepted_is_well_formed(&e),
                Err(r) => prop_assert!(!r.detail.is_empty()),
            }
        }
    }

    /// Events of the usual shape: every known field often of its own type, sometimes
    /// null, absent or repeated, strings with and without characters to escape.
    fn usual_event() -> impl Strategy<Value = Vec<u8>> {
        let text = prop_oneof![
            4 => "[a-z0-9_.:-]{0,24}".prop_map(Value::String),
            1 => "\\PC{0,12}".prop_map(Value::String),
            1 => Just(Value::Null),
        ];
        let number = prop_oneof![
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1e6..1e6f64).prop_map(Value::from),
            (0..10_000i64).prop_map(|i| Value::from(i as f64)),
            Just(Value::Null),
        ];
        let metadata = prop_oneof![
            prop::collection::vec(("[a-z]{1,6}", any_json()), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            Just(Value::Null),
        ];
        let field = prop_oneof![
            (prop::sample::select(FIELDS[..9].to_vec()), text).prop_map(|(k, v)| (k, v)),
            (prop::sample::select(vec!["value", "durationMs"]), number),
            (Just("metadata"), metadata),
            (Just("extra"), any_json()),
        ];
        (prop::collection::vec(field, 0..14), any::<bool>()).prop_map(|(kv, repeat)| {
            // Written by hand, so that a key may appear twice.
            let mut body = String::from("{");
            let mut pairs: Vec<_> = kv.iter().collect();
            if repeat && let Some(first) = kv.first() {
                pairs.push(first);
            }
            for (i, (k, v)) in pairs.iter().enumerate() {
                if i > 0 {
                    body.push(',');
                }
                body.push_str(&format!("{}:{v}", Value::from(*k)));
            }
            body.push('}');
            body.into_bytes()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(4000),
            ..ProptestConfig::default()
        })]

        /// The typed reader, where it answers, reads exactly what the general one does.
        #[test]
        fn both_readers_agree(body in usual_event()) {
            if let Some(typed) = Fields::typed(&body) {
                let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(&body) else {
                    panic!("the typed reader accepted what is not a JSON object");
                };
                prop_assert_eq!(typed, Fields::from_object(object));
            }
        }
    }

    #[test]
    fn the_usual_event_is_read_without_a_tree_and_the_unusual_falls_back() {
        let usual = br#"{"id":"e1","propertyId":"p","channel":"sms","value":4,"durationMs":12,"metadata":{"intent":"wifi"},"extra":[1,{"a":null}]}"#;
        let fields = Fields::typed(usual).expect("the typed reader takes the usual shape");
        assert_eq!(fields.property_id, Field::Given("p".into()));
        assert_eq!(fields.value, Field::Given(4.0));
        for unusual in [
            &br#"{"propertyId":"a","propertyId":"b"}"#[..],
            br#"{"propertyId":"caf\u00e9"}"#,
            br#"{"propertyId":5}"#,
            br#"{"metadata":[]}"#,
            br#"["p"]"#,
        ] {
            assert!(Fields::typed(unusual).is_none(), "{unusual:?}");
        }
        let last_wins = check(
            "butler.events.message.sent",
            br#"{"propertyId":"a","propertyId":"b"}"#,
            None,
        )
        .unwrap();
        assert_eq!(last_wins.property_id, "b");
        let escaped = check(
            "butler.events.message.sent",
            br#"{"propertyId":"caf\u00e9"}"#,
            None,
        )
        .unwrap();
        assert_eq!(escaped.property_id, "café");
    }

    #[test]
    fn deep_nesting_is_invalid_json_not_a_stack_overflow() {
        let deep = format!(
            r#"{{"propertyId":"p","metadata":{{"a":{}1{}}}}}"#,
            "[".repeat(30_000),
            "]".repeat(30_000)
        );
        let r = check("butler.events.message.sent", deep.as_bytes(), None).unwrap_err();
        assert_eq!(r.reason, RejectReason::InvalidJson);
        let moderately_deep = format!(
            r#"{{"propertyId":"p","metadata":{{"a":{}1{}}}}}"#,
            "[".repeat(100),
            "]".repeat(100)
        );
        assert!(
            check(
                "butler.events.message.sent",
                moderately_deep.as_bytes(),
                None
            )
            .is_ok()
        );
    }

    #[test]
    fn numbers_json_cannot_carry_are_invalid_json() {
        for body in [
            r#"{"propertyId":"p","value":NaN}"#,
            r#"{"propertyId":"p","value":Infinity}"#,
            r#"{"propertyId":"p","value":1e999}"#,
        ] {
            let r = check("butler.events.message.sent", body.as_bytes(), None).unwrap_err();
            assert_eq!(r.reason, RejectReason::InvalidJson, "{body}");
        }
    }

    #[test]
    fn control_characters_and_sql_are_kept_as_text() {
        let body = serde_json::json!({"propertyId": "p'; DROP TABLE x; --", "guestId": "\u{0}\u{7}\u{1b}", "metadata": {"note": "\u{202e}"}});
        let e = check(
            "butler.events.message.sent",
            &serde_json::to_vec(&body).unwrap(),
            None,
        )
        .unwrap();
        assert_eq!(e.property_id, "p'; DROP TABLE x; --");
        assert_eq!(e.guest_id.as_deref(), Some("\u{0}\u{7}\u{1b}"));
    }
}

/// Validation cost per message, printed; run with
/// `cargo test --release -p butler-events validation_cost -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn validation_cost() {
    let payload = br#"{"channel":"whatsapp","conversationId":"conv_007_0000012345","eventType":"message.received","guestId":"guest_12345","id":"evt_019ab0c0a1b2_0001e240","metadata":{"lang":"en","length":120},"propertyId":"prop_007","timestamp":"2026-11-25T09:12:01.123Z"}"#;
    let n = 200_000;
    let started = std::time::Instant::now();
    for _ in 0..n {
        let event = check("butler.events.message.received", payload, None);
        assert!(event.is_ok());
    }
    let took = started.elapsed();
    println!(
        "{n} validations in {took:?}: {:.2} us each",
        took.as_secs_f64() * 1e6 / f64::from(n)
    );
}
