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
        crate::calendar::hour_key(self.to_datetime())
    }
}

impl fmt::Display for EventTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.rendered() {
            Some(text) => f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?),
            None => write!(f, "{}", self.to_datetime().format("%Y-%m-%dT%H:%M:%S%.3fZ")),
        }
    }
}

impl EventTime {
    /// The 24 bytes of the text form for years 0000–9999, worked out directly: ingest
    /// renders every event's timestamp, and chrono's general formatter was a visible
    /// share of the ingest writer's CPU (`BENCHMARKS.md`).
    fn rendered(self) -> Option<[u8; 24]> {
        let millis = self.0.rem_euclid(1000);
        let secs = self.0.div_euclid(1000);
        let of_day = secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
        if !(0..=9999).contains(&year) {
            return None;
        }
        let mut out = *b"0000-00-00T00:00:00.000Z";
        let mut put = |at: usize, width: u32, value: i64| {
            for i in 0..width as usize {
                let digit = (value / 10_i64.pow(width - 1 - i as u32)) % 10;
                out[at + i] = b'0' + digit as u8;
            }
        };
        put(0, 4, year);
        put(5, 2, month);
        put(8, 2, day);
        put(11, 2, of_day / 3600);
        put(14, 2, of_day % 3600 / 60);
        put(17, 2, of_day % 60);
        put(20, 3, millis);
        Some(out)
    }
}

/// Year, month and day of a count of days since 1970-01-01 in the proleptic
/// Gregorian calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
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

/// Whether a staff member is online after a `staff.*` event: after `login` or a status
/// change whose `metadata.status` is `available`, not after `logout` or any other
/// status; `None` for every other type. The one rule the dashboard's live count and
/// the presence table (§8) share.
pub fn staff_online_after(event_type: EventType, status: Option<&str>) -> Option<bool> {
    match event_type {
        EventType::StaffLogin => Some(true),
        EventType::StaffLogout => Some(false),
        EventType::StaffStatusChanged => Some(status == Some("available")),
        _ => None,
    }
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

impl Event {
    /// An event with what every event has and nothing else; the `with_*` methods add
    /// the rest. For tests, benchmarks and tools that make events without a payload
    /// (ingest makes them with [`crate::validate()`]).
    pub fn new(
        id: impl Into<String>,
        event_type: EventType,
        timestamp: EventTime,
        property_id: impl Into<String>,
    ) -> Event {
        Event {
            id: id.into(),
            event_type,
            timestamp,
            property_id: property_id.into(),
            channel: None,
            guest_id: None,
            staff_id: None,
            conversation_id: None,
            task_id: None,
            value: None,
            duration_ms: None,
            metadata: None,
            live_effect: None,
        }
    }

    /// With a channel.
    pub fn with_channel(mut self, channel: &str) -> Event {
        self.channel = Some(channel.to_owned());
        self
    }

    /// With a conversation.
    pub fn with_conversation(mut self, conversation_id: &str) -> Event {
        self.conversation_id = Some(conversation_id.to_owned());
        self
    }

    /// With a staff member.
    pub fn with_staff(mut self, staff_id: &str) -> Event {
        self.staff_id = Some(staff_id.to_owned());
        self
    }

    /// With a task.
    pub fn with_task(mut self, task_id: &str) -> Event {
        self.task_id = Some(task_id.to_owned());
        self
    }

    /// With a `value`.
    pub fn with_value(mut self, value: f64) -> Event {
        self.value = Some(value);
        self
    }

    /// With a `durationMs`.
    pub fn with_duration_ms(mut self, duration_ms: i64) -> Event {
        self.duration_ms = Some(duration_ms);
        self
    }

    /// With a `metadata` object, as JSON text.
    pub fn with_metadata(mut self, metadata: &str) -> Event {
        self.metadata = Some(metadata.to_owned());
        self
    }

    /// With its effect on live state.
    pub fn with_live_effect(mut self, effect: LiveEffect) -> Event {
        self.live_effect = Some(effect);
        self
    }

    /// With the effect on live state that ingest gave it, worked out again from its
    /// stored fields: for rebuilding a pruned key's live state from its raw events.
    pub fn with_stored_live_effect(mut self) -> Event {
        let metadata = self.metadata.as_deref().and_then(|m| {
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(m).ok()
        });
        self.live_effect = crate::validate::live_effect(
            self.event_type,
            metadata.as_ref(),
            self.conversation_id.is_some(),
            self.staff_id.is_some(),
            self.task_id.is_some(),
        );
        self
    }
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
    fn direct_rendering_matches_the_calendar() {
        let chrono_form =
            |t: EventTime| format!("{}", t.to_datetime().format("%Y-%m-%dT%H:%M:%S%.3fZ"));
        // Leap days, century years, the epoch, both sides of it, the ends of the
        // four-digit years, and a spread of instants between.
        let mut instants = vec![
            0,
            -1,
            951_782_400_000,
            951_868_799_999,
            4_107_542_400_000,
            -62_167_219_200_000,
            253_402_300_799_999,
        ];
        let mut rng = crate::testing::Xorshift::new(0x2545_F491_4F6C_DD1D);
        for _ in 0..100_000 {
            instants.push(rng.below(253_402_300_800_000) as i64 - 62_167_219_200_000);
        }
        for millis in instants {
            let t = EventTime::from_millis(millis);
            assert_eq!(t.to_string(), chrono_form(t), "{millis}");
        }
        let beyond = EventTime::from_millis(253_402_300_800_000);
        assert_eq!(beyond.to_string(), chrono_form(beyond));
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
