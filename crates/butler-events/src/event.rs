//! A validated event, ready to store.

use std::fmt;

use chrono::{DateTime, Utc};

use crate::EventType;

/// An instant with millisecond precision, always rendered as the 24-character UTC
/// form `YYYY-MM-DDTHH:MM:SS.sssZ`, so that stored timestamps sort as strings in
/// time order (seed defect 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventTime(i64);

impl EventTime {
    /// Truncates (never rounds) to the millisecond, as CONTRACT §1 requires.
    pub fn from_datetime<Tz: chrono::TimeZone>(instant: &DateTime<Tz>) -> EventTime {
        EventTime(instant.timestamp_millis())
    }

    /// Milliseconds since the Unix epoch.
    pub fn from_millis(millis: i64) -> EventTime {
        EventTime(millis)
    }

    /// Milliseconds since the Unix epoch.
    pub fn millis(self) -> i64 {
        self.0
    }

    /// The instant as a chrono value, for calendar arithmetic.
    pub fn to_datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.0).unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// The start of the UTC hour holding this instant, as `YYYY-MM-DDTHH:00:00Z`: the
    /// key of the hourly buckets and of the late-data bookkeeping.
    pub fn hour_start(self) -> String {
        self.to_datetime().format("%Y-%m-%dT%H:00:00Z").to_string()
    }
}

impl fmt::Display for EventTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_datetime().format("%Y-%m-%dT%H:%M:%S%.3fZ"))
    }
}

/// What an event does to the dashboard's live state (active conversations, staff
/// online, pending tasks). Ingest keeps that state so the dashboard need not scan
/// history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveEffect {
    /// A conversation lifecycle event: active after `started`/`escalated`, not after
    /// `resolved`/`closed`.
    Conversation {
        /// Whether the conversation is active after this event.
        active: bool,
    },
    /// A `staff.*` event: online after `login` or a status change to `available`.
    Staff {
        /// Whether the staff member is online after this event.
        online: bool,
    },
    /// `task.created`: the task exists.
    TaskCreated,
    /// `task.completed`: the task is done, whenever its creation arrives.
    TaskCompleted,
}

/// An event that passed every rule of CONTRACT §1, with its id, type and timestamp
/// resolved from the payload, the headers or the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Payload `id`, else the `Nats-Msg-Id` header, else `evt_<stream>_<sequence>`.
    pub id: String,
    /// From the subject (the payload's `eventType`, when present, agrees with it).
    pub event_type: EventType,
    /// Payload `timestamp`, else the JetStream publish time.
    pub timestamp: EventTime,
    /// The hotel this event belongs to.
    pub property_id: String,
    /// One of the configured channels, or none.
    pub channel: Option<String>,
    /// The guest involved, if any.
    pub guest_id: Option<String>,
    /// The staff member involved, if any.
    pub staff_id: Option<String>,
    /// The conversation this event belongs to, if any.
    pub conversation_id: Option<String>,
    /// The task this event belongs to, if any.
    pub task_id: Option<String>,
    /// A rating, a confidence or another measure.
    pub value: Option<f64>,
    /// A duration in milliseconds.
    pub duration_ms: Option<i64>,
    /// The payload's `metadata` object as JSON text.
    pub metadata: Option<String>,
    /// The effect on live state, worked out while the payload was at hand.
    pub live_effect: Option<LiveEffect>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_fixed_width_utc_with_milliseconds() {
        let t = DateTime::parse_from_rfc3339("2026-11-24T10:15:00.250+01:00").unwrap();
        let t = EventTime::from_datetime(&t);
        assert_eq!(t.to_string(), "2026-11-24T09:15:00.250Z");
        assert_eq!(t.to_string().len(), 24);
        assert_eq!(t.hour_start(), "2026-11-24T09:00:00Z");
    }

    #[test]
    fn truncates_finer_digits_instead_of_rounding() {
        let t = DateTime::parse_from_rfc3339("2026-11-24T16:02:11.123999Z").unwrap();
        assert_eq!(
            EventTime::from_datetime(&t).to_string(),
            "2026-11-24T16:02:11.123Z"
        );
        let before_epoch = DateTime::parse_from_rfc3339("1969-12-31T23:59:59.9999Z").unwrap();
        assert_eq!(
            EventTime::from_datetime(&before_epoch).to_string(),
            "1969-12-31T23:59:59.999Z"
        );
    }
}
