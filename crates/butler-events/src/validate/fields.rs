//! A payload's known fields, read once, before any rule is applied.
//!
//! Two readers produce the same [`Fields`]: a typed one that borrows the strings from
//! the payload and builds no tree, for the events publishers normally send; and a
//! general one over a `serde_json::Value` object, which also records fields of the
//! wrong type, so that the rules can reject them in the contract's order. The typed
//! reader gives up on anything unusual (a field of the wrong type, an escaped string,
//! a repeated key, not an object) and leaves it to the general one, so both always
//! agree; a property test checks that they do.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{Map, Number, Value};

/// One known field of a payload.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) enum Field<T> {
    /// Absent, or `null` (publishers that serialize optional fields as `null` mean
    /// "not given").
    #[default]
    Absent,
    /// Present with the expected JSON type.
    Given(T),
    /// Present with another type; the value, for the rejection's detail.
    Wrong(Value),
}

/// The fields the rules read; unknown ones are ignored.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Fields<'a> {
    pub id: Field<Cow<'a, str>>,
    pub event_type: Field<Cow<'a, str>>,
    pub timestamp: Field<Cow<'a, str>>,
    pub property_id: Field<Cow<'a, str>>,
    pub channel: Field<Cow<'a, str>>,
    pub guest_id: Field<Cow<'a, str>>,
    pub staff_id: Field<Cow<'a, str>>,
    pub conversation_id: Field<Cow<'a, str>>,
    pub task_id: Field<Cow<'a, str>>,
    pub value: Field<f64>,
    pub duration_ms: Field<Number>,
    pub metadata: Field<Map<String, Value>>,
}

/// The usual shape of an event, borrowed from the payload.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Typed<'a> {
    #[serde(borrow, default)]
    id: Option<&'a str>,
    #[serde(borrow, default)]
    event_type: Option<&'a str>,
    #[serde(borrow, default)]
    timestamp: Option<&'a str>,
    #[serde(borrow, default)]
    property_id: Option<&'a str>,
    #[serde(borrow, default)]
    channel: Option<&'a str>,
    #[serde(borrow, default)]
    guest_id: Option<&'a str>,
    #[serde(borrow, default)]
    staff_id: Option<&'a str>,
    #[serde(borrow, default)]
    conversation_id: Option<&'a str>,
    #[serde(borrow, default)]
    task_id: Option<&'a str>,
    #[serde(default)]
    value: Option<f64>,
    #[serde(default)]
    duration_ms: Option<Number>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
}

fn given<T>(v: Option<T>) -> Field<T> {
    v.map_or(Field::Absent, Field::Given)
}

fn text(v: Option<&str>) -> Field<Cow<'_, str>> {
    given(v.map(Cow::Borrowed))
}

impl<'a> Fields<'a> {
    /// The typed reader: `None` when the payload is anything but the usual shape.
    pub(super) fn typed(payload: &'a [u8]) -> Option<Fields<'a>> {
        // A derived struct also reads a JSON array, field by field: only objects here.
        let first = payload.iter().find(|b| !b.is_ascii_whitespace())?;
        if *first != b'{' {
            return None;
        }
        let t: Typed<'a> = serde_json::from_slice(payload).ok()?;
        Some(Fields {
            id: text(t.id),
            event_type: text(t.event_type),
            timestamp: text(t.timestamp),
            property_id: text(t.property_id),
            channel: text(t.channel),
            guest_id: text(t.guest_id),
            staff_id: text(t.staff_id),
            conversation_id: text(t.conversation_id),
            task_id: text(t.task_id),
            value: given(t.value),
            duration_ms: given(t.duration_ms),
            metadata: given(t.metadata),
        })
    }

    /// The general reader, over any JSON object (the last of repeated keys wins).
    pub(super) fn from_object(mut object: Map<String, Value>) -> Fields<'static> {
        let mut take = |name: &str| object.remove(name).filter(|v| !v.is_null());
        let string = |v: Option<Value>| match v {
            None => Field::Absent,
            Some(Value::String(s)) => Field::Given(Cow::Owned(s)),
            Some(other) => Field::Wrong(other),
        };
        Fields {
            id: string(take("id")),
            event_type: string(take("eventType")),
            timestamp: string(take("timestamp")),
            property_id: string(take("propertyId")),
            channel: string(take("channel")),
            guest_id: string(take("guestId")),
            staff_id: string(take("staffId")),
            conversation_id: string(take("conversationId")),
            task_id: string(take("taskId")),
            value: match take("value") {
                None => Field::Absent,
                Some(Value::Number(n)) => n.as_f64().map_or(Field::Absent, Field::Given),
                Some(other) => Field::Wrong(other),
            },
            duration_ms: match take("durationMs") {
                None => Field::Absent,
                Some(Value::Number(n)) => Field::Given(n),
                Some(other) => Field::Wrong(other),
            },
            metadata: match take("metadata") {
                None => Field::Absent,
                Some(Value::Object(m)) => Field::Given(m),
                Some(other) => Field::Wrong(other),
            },
        }
    }
}
