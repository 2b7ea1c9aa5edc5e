//! The rules of CONTRACT §1, applied in its order of precedence.

mod fields;

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, Duration, Utc};
use fields::{Field, Fields};
use serde_json::{Map, Number, Value};

use crate::{Event, EventTime, EventType, LiveEffect};

/// Largest payload accepted; anything longer is `payload_too_large`.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// Longest id of any kind (`id`, `propertyId`, `guestId`, …), in characters.
const MAX_ID_CHARS: usize = 128;

/// Why a message was rejected: a stable snake_case code for dead letters, metrics and
/// alerts. Declared in the contract's order of precedence: when several rules fail,
/// the first one listed here is the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// Body longer than [`MAX_PAYLOAD_BYTES`].
    PayloadTooLarge,
    /// Not UTF-8 JSON, empty, or not a JSON object.
    InvalidJson,
    /// The subject suffix (or the payload's `eventType`) is not one of the 25 types.
    UnknownEventType,
    /// The payload's `eventType` differs from the subject's suffix.
    EventTypeMismatch,
    /// `propertyId` absent, empty or not a string.
    MissingPropertyId,
    /// `timestamp` not an RFC 3339 string.
    InvalidTimestamp,
    /// `timestamp` further in the future than `ingest.max_future_skew_s`.
    TimestampInFuture,
    /// `timestamp` older than the raw-event retention.
    Expired,
    /// `channel` not one of `ingest.channels`.
    InvalidChannel,
    /// A field of the wrong type or out of range.
    InvalidField,
    /// A field that the event's type requires is absent.
    MissingRequiredField,
}

impl RejectReason {
    /// Every reason, in order of precedence.
    pub const ALL: [RejectReason; 11] = [
        RejectReason::PayloadTooLarge,
        RejectReason::InvalidJson,
        RejectReason::UnknownEventType,
        RejectReason::EventTypeMismatch,
        RejectReason::MissingPropertyId,
        RejectReason::InvalidTimestamp,
        RejectReason::TimestampInFuture,
        RejectReason::Expired,
        RejectReason::InvalidChannel,
        RejectReason::InvalidField,
        RejectReason::MissingRequiredField,
    ];

    /// The stable code stored in `analytics_dead_letters.reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::PayloadTooLarge => "payload_too_large",
            RejectReason::InvalidJson => "invalid_json",
            RejectReason::UnknownEventType => "unknown_event_type",
            RejectReason::EventTypeMismatch => "event_type_mismatch",
            RejectReason::MissingPropertyId => "missing_property_id",
            RejectReason::InvalidTimestamp => "invalid_timestamp",
            RejectReason::TimestampInFuture => "timestamp_in_future",
            RejectReason::Expired => "expired",
            RejectReason::InvalidChannel => "invalid_channel",
            RejectReason::InvalidField => "invalid_field",
            RejectReason::MissingRequiredField => "missing_required_field",
        }
    }

    /// Parses a stored code, e.g. for `dead-letters list --reason`.
    pub fn parse(code: &str) -> Option<RejectReason> {
        RejectReason::ALL.into_iter().find(|r| r.as_str() == code)
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message that is not a valid event: the reason code plus a sentence for the
/// operator saying what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The stable code.
    pub reason: RejectReason,
    /// What exactly was wrong, e.g. "durationMs must be an integer >= 0".
    pub detail: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}

impl std::error::Error for Rejection {}

fn reject<T>(reason: RejectReason, detail: impl Into<String>) -> Result<T, Rejection> {
    Err(Rejection {
        reason,
        detail: detail.into(),
    })
}

/// The settings the rules depend on, taken from the `nats`, `ingest` and `retention`
/// config sections.
#[derive(Debug, Clone)]
pub struct ValidationRules {
    /// Subject prefix, e.g. `butler.events`; the event type is what follows it.
    pub subject_prefix: String,
    /// Accepted `channel` values.
    pub channels: Vec<String>,
    /// How far in the future a timestamp may be.
    pub max_future_skew: Duration,
    /// How far in the past a timestamp may be: the raw-event retention.
    pub raw_retention: Duration,
}

/// One message as it came off the stream: what validation needs of it, and no more.
#[derive(Debug, Clone, Copy)]
pub struct IncomingMessage<'a> {
    /// The full subject, `<prefix>.<eventType>`.
    pub subject: &'a str,
    /// The raw body.
    pub payload: &'a [u8],
    /// The `Nats-Msg-Id` header, the publisher's own dedup id, if sent.
    pub msg_id_header: Option<&'a str>,
    /// The stream name, part of the fallback id.
    pub stream: &'a str,
    /// The stream sequence, part of the fallback id.
    pub stream_sequence: u64,
    /// When JetStream stored the message: the timestamp of an event without one.
    pub published: DateTime<Utc>,
}

/// Judges one message against every rule of CONTRACT §1, with `now` as the clock for
/// the future-skew and retention rules.
///
/// # Errors
/// A [`Rejection`] with the first failing rule in the contract's order.
pub fn validate(
    msg: &IncomingMessage<'_>,
    rules: &ValidationRules,
    now: DateTime<Utc>,
) -> Result<Event, Rejection> {
    if msg.payload.len() > MAX_PAYLOAD_BYTES {
        return reject(
            RejectReason::PayloadTooLarge,
            format!(
                "payload is {} bytes, more than the {MAX_PAYLOAD_BYTES} allowed",
                msg.payload.len()
            ),
        );
    }
    let fields = match Fields::typed(msg.payload) {
        Some(fields) => fields,
        None => match serde_json::from_slice::<Value>(msg.payload) {
            Ok(Value::Object(object)) => Fields::from_object(object),
            Ok(_) => return reject(RejectReason::InvalidJson, "payload is not a JSON object"),
            Err(err) => {
                return reject(
                    RejectReason::InvalidJson,
                    format!("payload is not valid JSON: {err}"),
                );
            }
        },
    };
    judge(msg, rules, now, fields)
}

/// The rules after the payload has been read, in the contract's order.
fn judge(
    msg: &IncomingMessage<'_>,
    rules: &ValidationRules,
    now: DateTime<Utc>,
    fields: Fields<'_>,
) -> Result<Event, Rejection> {
    let event_type = event_type_of(msg.subject, &rules.subject_prefix, &fields.event_type)?;

    let property_id = match fields.property_id {
        Field::Given(s) if !s.is_empty() => s,
        Field::Given(_) => {
            return reject(RejectReason::MissingPropertyId, "propertyId is empty");
        }
        Field::Wrong(_) => {
            return reject(
                RejectReason::MissingPropertyId,
                "propertyId must be a string",
            );
        }
        Field::Absent => return reject(RejectReason::MissingPropertyId, "propertyId is required"),
    };

    let timestamp = match &fields.timestamp {
        Field::Absent => EventTime::from_datetime(&msg.published),
        Field::Given(s) => match DateTime::parse_from_rfc3339(s) {
            Ok(t) => EventTime::from_datetime(&t),
            Err(_) => {
                return reject(
                    RejectReason::InvalidTimestamp,
                    "timestamp must be RFC 3339 with Z or an offset, e.g. 2026-11-24T10:00:00+02:00",
                );
            }
        },
        Field::Wrong(_) => {
            return reject(RejectReason::InvalidTimestamp, "timestamp must be a string");
        }
    };
    if timestamp > EventTime::from_datetime(&(now + rules.max_future_skew)) {
        return reject(
            RejectReason::TimestampInFuture,
            format!(
                "timestamp {timestamp} is more than {} s in the future",
                rules.max_future_skew.num_seconds()
            ),
        );
    }
    if timestamp < EventTime::from_datetime(&(now - rules.raw_retention)) {
        return reject(
            RejectReason::Expired,
            format!(
                "timestamp {timestamp} is older than the raw-event retention of {} days",
                rules.raw_retention.num_days()
            ),
        );
    }

    let channel = match fields.channel {
        Field::Absent => None,
        Field::Given(s) if rules.channels.iter().any(|c| *c == *s) => Some(s.into_owned()),
        other => {
            let shown = match other {
                Field::Wrong(v) => v,
                Field::Given(s) => Value::String(s.into_owned()),
                Field::Absent => Value::Null,
            };
            return reject(
                RejectReason::InvalidChannel,
                format!(
                    "channel {shown} is not one of the configured channels: {}",
                    rules.channels.join(", ")
                ),
            );
        }
    };

    if property_id.chars().count() > MAX_ID_CHARS {
        return reject(
            RejectReason::InvalidField,
            format!("propertyId is longer than {MAX_ID_CHARS} characters"),
        );
    }
    let payload_id = optional_id(fields.id, "id", 1)?;
    let guest_id = optional_id(fields.guest_id, "guestId", 0)?;
    let staff_id = optional_id(fields.staff_id, "staffId", 0)?;
    let conversation_id = optional_id(fields.conversation_id, "conversationId", 0)?;
    let task_id = optional_id(fields.task_id, "taskId", 0)?;
    let value = match fields.value {
        Field::Absent => None,
        Field::Given(v) => Some(v),
        Field::Wrong(_) => return reject(RejectReason::InvalidField, "value must be a number"),
    };
    let duration_ms = match fields.duration_ms {
        Field::Absent => None,
        Field::Given(n) => match as_integer(&n) {
            Some(ms) if ms >= 0 => Some(ms),
            _ => {
                return reject(
                    RejectReason::InvalidField,
                    format!("durationMs must be an integer >= 0, got {n}"),
                );
            }
        },
        Field::Wrong(v) => {
            return reject(
                RejectReason::InvalidField,
                format!("durationMs must be an integer >= 0, got {v}"),
            );
        }
    };
    let metadata = match fields.metadata {
        Field::Absent => None,
        Field::Given(m) => Some(m),
        Field::Wrong(_) => {
            return reject(RejectReason::InvalidField, "metadata must be a JSON object");
        }
    };
    let intent = metadata.as_ref().and_then(|m| present(m, "intent"));

    match event_type {
        EventType::SatisfactionRatingReceived => {
            if let Some(v) = value
                && !(v.fract() == 0.0 && (1.0..=5.0).contains(&v))
            {
                return reject(
                    RejectReason::InvalidField,
                    format!("a rating value must be an integer from 1 to 5, got {v}"),
                );
            }
        }
        EventType::IntentClassified => {
            if let Some(v) = value
                && !(0.0..=1.0).contains(&v)
            {
                return reject(
                    RejectReason::InvalidField,
                    format!("an intent confidence (value) must be within [0, 1], got {v}"),
                );
            }
        }
        _ => {}
    }
    let needs_intent = matches!(
        event_type,
        EventType::IntentClassified | EventType::IntentActionTaken | EventType::IntentConfidenceLow
    );
    if needs_intent && intent.is_some_and(|i| !i.is_string()) {
        return reject(
            RejectReason::InvalidField,
            "metadata.intent must be a string",
        );
    }

    match event_type {
        EventType::ResponseTimeRecorded if duration_ms.is_none() => {
            return reject(
                RejectReason::MissingRequiredField,
                "response.time_recorded requires durationMs",
            );
        }
        EventType::SatisfactionRatingReceived if value.is_none() => {
            return reject(
                RejectReason::MissingRequiredField,
                "satisfaction.rating_received requires value (a rating from 1 to 5)",
            );
        }
        _ if needs_intent && intent.is_none() => {
            return reject(
                RejectReason::MissingRequiredField,
                format!("{event_type} requires metadata.intent"),
            );
        }
        _ => {}
    }

    let live_effect = live_effect(
        event_type,
        metadata.as_ref(),
        conversation_id.is_some(),
        staff_id.is_some(),
        task_id.is_some(),
    );
    let id = payload_id
        .or_else(|| {
            msg.msg_id_header
                .filter(|h| !h.is_empty() && h.chars().count() <= MAX_ID_CHARS)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| format!("evt_{}_{}", msg.stream, msg.stream_sequence));

    Ok(Event {
        id,
        event_type,
        timestamp,
        property_id: property_id.into_owned(),
        channel,
        guest_id,
        staff_id,
        conversation_id,
        task_id,
        value,
        duration_ms,
        metadata: metadata.map(|m| Value::Object(m).to_string()),
        live_effect,
    })
}

/// The type named by the subject, checked against the payload's `eventType`.
fn event_type_of(
    subject: &str,
    prefix: &str,
    named: &Field<Cow<'_, str>>,
) -> Result<EventType, Rejection> {
    let suffix = subject
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('.'))
        .unwrap_or(subject);
    let Some(from_subject) = EventType::parse(suffix) else {
        return reject(
            RejectReason::UnknownEventType,
            format!("subject {subject} does not name one of the 25 event types"),
        );
    };
    match named {
        Field::Absent => Ok(from_subject),
        Field::Given(name) => match EventType::parse(name) {
            None => reject(
                RejectReason::UnknownEventType,
                format!("eventType {name:?} is not one of the 25 event types"),
            ),
            Some(t) if t != from_subject => reject(
                RejectReason::EventTypeMismatch,
                format!("eventType {t} does not match the subject {subject}"),
            ),
            Some(t) => Ok(t),
        },
        Field::Wrong(_) => reject(RejectReason::UnknownEventType, "eventType must be a string"),
    }
}

/// A metadata field's value, treating JSON `null` as absent.
fn present<'a>(fields: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    fields.get(name).filter(|v| !v.is_null())
}

/// An optional id-like string of `min_chars..=128` characters.
fn optional_id(
    field: Field<Cow<'_, str>>,
    name: &str,
    min_chars: usize,
) -> Result<Option<String>, Rejection> {
    match field {
        Field::Absent => Ok(None),
        Field::Given(s) => {
            let chars = s.chars().count();
            if chars < min_chars {
                reject(RejectReason::InvalidField, format!("{name} is empty"))
            } else if chars > MAX_ID_CHARS {
                reject(
                    RejectReason::InvalidField,
                    format!("{name} is longer than {MAX_ID_CHARS} characters"),
                )
            } else {
                Ok(Some(s.into_owned()))
            }
        }
        Field::Wrong(_) => reject(
            RejectReason::InvalidField,
            format!("{name} must be a string"),
        ),
    }
}

/// A JSON number with no fractional part (`4.0` counts) that fits an i64.
fn as_integer(n: &Number) -> Option<i64> {
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    let f = n.as_f64()?;
    // i64::MAX as f64 rounds up to 2^63, which no longer fits.
    (f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64).then_some(f as i64)
}

pub(crate) fn live_effect(
    event_type: EventType,
    metadata: Option<&Map<String, Value>>,
    has_conversation: bool,
    has_staff: bool,
    has_task: bool,
) -> Option<LiveEffect> {
    use EventType as T;
    match event_type {
        T::ConversationStarted | T::ConversationEscalated if has_conversation => {
            Some(LiveEffect::Conversation { active: true })
        }
        T::ConversationResolved | T::ConversationClosed if has_conversation => {
            Some(LiveEffect::Conversation { active: false })
        }
        T::StaffLogin | T::StaffLogout | T::StaffStatusChanged if has_staff => {
            let status = metadata
                .and_then(|m| m.get("status"))
                .and_then(Value::as_str);
            crate::event::staff_online_after(event_type, status)
                .map(|online| LiveEffect::Staff { online })
        }
        T::TaskCreated if has_task => Some(LiveEffect::TaskCreated),
        T::TaskCompleted if has_task => Some(LiveEffect::TaskCompleted),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
