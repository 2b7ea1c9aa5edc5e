//! A NATS message into an event or a dead letter.

use async_nats::jetstream;
use butler_events::{Event, EventTime, EventType, IncomingMessage, ValidationRules, validate};
use butler_storage::NewDeadLetter;
use chrono::{DateTime, Utc};

/// A message judged: stored as an event, or kept as a dead letter.
#[derive(Debug)]
pub enum Decoded {
    /// It passed every rule.
    Event(Event),
    /// It failed one; kept byte for byte.
    Rejected(NewDeadLetter),
}

/// The header a publisher sets for JetStream's own deduplication; the event id when
/// the payload has none.
const MSG_ID_HEADER: &str = "Nats-Msg-Id";

/// Judges one message.
pub fn decode(msg: &jetstream::Message, rules: &ValidationRules, now: DateTime<Utc>) -> Decoded {
    let (stream, stream_sequence, published) = match msg.info() {
        Ok(info) => (info.stream, info.stream_sequence, to_chrono(info.published)),
        // Every message of a pull consumer carries its ack subject; without one there is
        // no stream position, and the receive time stands in for the publish time.
        Err(_) => ("", 0, now),
    };
    let msg_id_header = msg
        .headers
        .as_ref()
        .and_then(|h| h.get(MSG_ID_HEADER))
        .map(|v| v.as_str());
    let incoming = IncomingMessage {
        subject: msg.subject.as_str(),
        payload: &msg.payload,
        msg_id_header,
        stream,
        stream_sequence,
        published,
    };
    match validate(&incoming, rules, now) {
        Ok(event) => Decoded::Event(event),
        Err(rejection) => Decoded::Rejected(NewDeadLetter {
            subject: msg.subject.to_string(),
            stream: stream.to_owned(),
            stream_sequence,
            published_at: Some(EventTime::from_datetime(&published)),
            payload: msg.payload.to_vec(),
            headers_json: headers_json(msg.headers.as_ref()),
            reason: rejection.reason,
            detail: rejection.detail,
        }),
    }
}

/// The event type named by a subject, for the `received` metric's label.
pub fn subject_event_type(subject: &str, prefix: &str) -> Option<EventType> {
    subject
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('.'))
        .and_then(EventType::parse)
}

fn to_chrono(t: time::OffsetDateTime) -> DateTime<Utc> {
    DateTime::from_timestamp(t.unix_timestamp(), t.nanosecond()).unwrap_or_else(Utc::now)
}

/// Headers as a JSON object of name → list of values, as stored with a dead letter.
pub fn headers_json(headers: Option<&async_nats::HeaderMap>) -> String {
    let mut map = serde_json::Map::new();
    if let Some(headers) = headers {
        for (name, values) in headers.iter() {
            let values = values
                .iter()
                .map(|v| serde_json::Value::from(v.as_str()))
                .collect();
            map.insert(name.to_string(), serde_json::Value::Array(values));
        }
    }
    serde_json::Value::Object(map).to_string()
}
