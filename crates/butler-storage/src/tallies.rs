//! Running tallies: counts and sums of the event types the dashboard and the report
//! read, per property, UTC hour and event type (and channel, for the satisfaction
//! types). Ingest adds each new event in its batch's transaction; a window then costs
//! a few dozen tally rows plus its ragged edges (under an hour at each end) read raw,
//! instead of every raw event of the window.

use std::collections::HashMap;

use butler_events::{Event, EventTime, EventType};
use sqlx::{Row, Sqlite, Transaction};

use crate::{Storage, StorageError, sql};

/// The event types tallied: those the dashboard and the report's summary and
/// satisfaction sections count or average.
pub const TALLIED: [EventType; 9] = [
    EventType::ConversationStarted,
    EventType::ConversationResolved,
    EventType::ConversationEscalated,
    EventType::MessageReceived,
    EventType::MessageSent,
    EventType::ResponseTimeRecorded,
    EventType::TaskCreated,
    EventType::SatisfactionSurveySent,
    EventType::SatisfactionRatingReceived,
];

const HOUR_MS: i64 = 3_600_000;

/// The types kept per channel; the others are summed over channels under `*`.
const BY_CHANNEL: [EventType; 2] = [
    EventType::SatisfactionSurveySent,
    EventType::SatisfactionRatingReceived,
];

/// Counts and sums of one event type on one channel over a window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    /// The event type.
    pub event_type: String,
    /// The channel (`unknown` for none) for the satisfaction types; `*` for the
    /// others, which are not kept per channel.
    pub channel: String,
    /// How many events.
    pub events: i64,
    /// Sum of their `value`s.
    pub value_sum: f64,
    /// How many carried a `value`.
    pub value_count: i64,
    /// Sum of their `durationMs`.
    pub duration_sum: i64,
    /// How many carried a `durationMs`.
    pub duration_count: i64,
    /// `satisfaction.rating_received` by value 1 to 5.
    pub ratings: [i64; 5],
}

impl Tally {
    fn add(&mut self, e: &Event) {
        self.events += 1;
        if let Some(v) = e.value {
            self.value_sum += v;
            self.value_count += 1;
            if e.event_type == EventType::SatisfactionRatingReceived {
                for (k, slot) in self.ratings.iter_mut().enumerate() {
                    if v == (k + 1) as f64 {
                        *slot += 1;
                    }
                }
            }
        }
        if let Some(d) = e.duration_ms {
            self.duration_sum += d;
            self.duration_count += 1;
        }
    }
}

/// Adds newly stored events to their hour tallies.
pub(crate) async fn add_tallies<'e>(
    tx: &mut Transaction<'_, Sqlite>,
    events: impl Iterator<Item = &'e Event>,
) -> Result<(), StorageError> {
    let mut hours: HashMap<(&str, i64, EventType, &str), Tally> = HashMap::new();
    for e in events.filter(|e| TALLIED.contains(&e.event_type)) {
        let hour = e.timestamp.millis().div_euclid(HOUR_MS);
        let channel = if BY_CHANNEL.contains(&e.event_type) {
            e.channel.as_deref().unwrap_or("unknown")
        } else {
            "*"
        };
        hours
            .entry((e.property_id.as_str(), hour, e.event_type, channel))
            .or_default()
            .add(e);
    }
    if hours.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = hours
        .iter()
        .map(|((property, hour, event_type, channel), t)| {
            (
                property,
                hour_key(hour * HOUR_MS),
                event_type.as_str(),
                channel,
                t.events,
                t.value_sum,
                t.value_count,
                t.duration_sum,
                t.duration_count,
                t.ratings[0],
                t.ratings[1],
                t.ratings[2],
                t.ratings[3],
                t.ratings[4],
            )
        })
        .collect();
    sqlx::query(sql::UPSERT_TALLIES)
        .bind(sql::json_rows(&rows)?)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn hour_key(ms: i64) -> String {
    let mut s = EventTime::from_millis(ms).to_string();
    s.truncate(13);
    s
}

/// How a window `[start, end)` splits: a raw head, whole hours, a raw tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Split {
    raw_head: (i64, i64),
    hours: (i64, i64),
    raw_tail: (i64, i64),
}

fn split(start: i64, end: i64) -> Split {
    let end = end.max(start);
    let up = start.div_euclid(HOUR_MS) * HOUR_MS
        + if start.rem_euclid(HOUR_MS) == 0 {
            0
        } else {
            HOUR_MS
        };
    let down = end.div_euclid(HOUR_MS) * HOUR_MS;
    if up >= down {
        return Split {
            raw_head: (start, end),
            hours: (end, end),
            raw_tail: (end, end),
        };
    }
    Split {
        raw_head: (start, up),
        hours: (up, down),
        raw_tail: (down, end),
    }
}

impl Storage {
    /// The tallies of one property's events in `[start, end)`, per event type of
    /// [`TALLIED`] and channel; equal to counting the raw events of the window.
    ///
    /// # Errors
    /// Any database error.
    pub async fn tallies(
        &self,
        property_id: &str,
        start: EventTime,
        end: EventTime,
    ) -> Result<Vec<Tally>, StorageError> {
        let s = split(start.millis(), end.millis());
        let raw = |t: i64| EventTime::from_millis(t).to_string();
        let rows = sqlx::query(sql::WINDOW_TALLIES)
            .bind(property_id)
            .bind(raw(s.raw_head.0))
            .bind(raw(s.raw_head.1))
            .bind(hour_key(s.hours.0))
            .bind(hour_key(s.hours.1))
            .bind(raw(s.raw_tail.0))
            .bind(raw(s.raw_tail.1))
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Tally {
                    event_type: r.try_get(0)?,
                    channel: r.try_get(1)?,
                    events: r.try_get(2)?,
                    value_sum: r.try_get(3)?,
                    value_count: r.try_get(4)?,
                    duration_sum: r.try_get(5)?,
                    duration_count: r.try_get(6)?,
                    ratings: [
                        r.try_get(7)?,
                        r.try_get(8)?,
                        r.try_get(9)?,
                        r.try_get(10)?,
                        r.try_get(11)?,
                    ],
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StorageOptions;

    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    fn random_event(rng: &mut Rng, i: u64, base: i64) -> Event {
        const TYPES: [EventType; 11] = [
            EventType::ConversationStarted,
            EventType::ConversationResolved,
            EventType::ConversationEscalated,
            EventType::MessageReceived,
            EventType::MessageSent,
            EventType::ResponseTimeRecorded,
            EventType::TaskCreated,
            EventType::SatisfactionSurveySent,
            EventType::SatisfactionRatingReceived,
            EventType::IntentClassified,
            EventType::StaffLogin,
        ];
        let event_type = TYPES[rng.below(TYPES.len() as u64) as usize];
        let channels = [None, Some("sms"), Some("whatsapp"), Some("unknown")];
        let rating = event_type == EventType::SatisfactionRatingReceived;
        Event {
            // Some ids repeat: the second one is not new, and must not be tallied.
            id: format!("e{}", if i % 50 == 7 { i - 1 } else { i }),
            event_type,
            timestamp: EventTime::from_millis(base + rng.below(3 * HOUR_MS as u64) as i64),
            property_id: format!("p{}", rng.below(2)),
            channel: channels[rng.below(4) as usize].map(str::to_owned),
            guest_id: None,
            staff_id: None,
            conversation_id: None,
            task_id: None,
            value: (rating || rng.below(3) == 0).then(|| 1.0 + rng.below(5) as f64),
            duration_ms: (rng.below(2) == 0).then(|| rng.below(100_000) as i64),
            metadata: None,
            live_effect: None,
        }
    }

    async fn raw_tallies(storage: &Storage, property: &str, start: i64, end: i64) -> Vec<Tally> {
        let rows = sqlx::query(
            "SELECT event_type, CASE WHEN event_type LIKE 'satisfaction.%' \
             THEN coalesce(channel, 'unknown') ELSE '*' END AS ch, count(*), total(value), \
             count(value), coalesce(sum(duration_ms), 0), count(duration_ms), \
             count(*) FILTER (WHERE event_type = 'satisfaction.rating_received' AND value = 1), \
             count(*) FILTER (WHERE event_type = 'satisfaction.rating_received' AND value = 2), \
             count(*) FILTER (WHERE event_type = 'satisfaction.rating_received' AND value = 3), \
             count(*) FILTER (WHERE event_type = 'satisfaction.rating_received' AND value = 4), \
             count(*) FILTER (WHERE event_type = 'satisfaction.rating_received' AND value = 5) \
             FROM analytics_events WHERE property_id = ? AND timestamp >= ? AND timestamp < ? \
             AND event_type NOT IN ('intent.classified', 'staff.login') \
             GROUP BY 1, 2 ORDER BY 1, 2",
        )
        .bind(property)
        .bind(EventTime::from_millis(start).to_string())
        .bind(EventTime::from_millis(end).to_string())
        .fetch_all(&storage.reader)
        .await
        .unwrap();
        rows.iter()
            .map(|r| Tally {
                event_type: r.get(0),
                channel: r.get(1),
                events: r.get(2),
                value_sum: r.get(3),
                value_count: r.get(4),
                duration_sum: r.get(5),
                duration_count: r.get(6),
                ratings: [r.get(7), r.get(8), r.get(9), r.get(10), r.get(11)],
            })
            .collect()
    }

    #[tokio::test]
    async fn tallies_of_any_window_equal_counting_the_raw_events() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(&StorageOptions::new(dir.path().join("a.db")))
            .await
            .unwrap();
        let base = ms("2026-11-24T09:00:00Z");
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let events: Vec<Event> = (0..4000).map(|i| random_event(&mut rng, i, base)).collect();
        for batch in events.chunks(700) {
            storage.commit_batch(batch, &[]).await.unwrap();
        }
        // Redelivered batch: already stored, adds nothing.
        storage.commit_batch(&events[..300], &[]).await.unwrap();
        let mut windows = vec![
            (base, base + 3 * HOUR_MS),
            (base - 5, base + 3 * HOUR_MS + 5),
            (base + 61_001, base + 2 * HOUR_MS + 59_999),
            (base + HOUR_MS, base + 2 * HOUR_MS),
            (base + 600_000, base + 1_200_000),
            (base + 30_000, base + 50_000),
        ];
        for _ in 0..60 {
            let a = base + rng.below(3 * HOUR_MS as u64) as i64;
            let b = base + rng.below(3 * HOUR_MS as u64) as i64;
            windows.push((a.min(b), a.max(b)));
        }
        for (start, end) in windows {
            for property in ["p0", "p1"] {
                let got = storage
                    .tallies(
                        property,
                        EventTime::from_millis(start),
                        EventTime::from_millis(end),
                    )
                    .await
                    .unwrap();
                let want = raw_tallies(&storage, property, start, end).await;
                assert_eq!(got, want, "{property} [{start}, {end})");
            }
        }
    }

    fn ms(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn a_window_splits_into_raw_edges_and_hours() {
        let s = split(ms("2026-11-24T10:15:30.5Z"), ms("2026-11-24T13:02:10Z"));
        assert_eq!(
            s.raw_head,
            (ms("2026-11-24T10:15:30.5Z"), ms("2026-11-24T11:00:00Z"))
        );
        assert_eq!(
            s.hours,
            (ms("2026-11-24T11:00:00Z"), ms("2026-11-24T13:00:00Z"))
        );
        assert_eq!(
            s.raw_tail,
            (ms("2026-11-24T13:00:00Z"), ms("2026-11-24T13:02:10Z"))
        );
    }

    #[test]
    fn aligned_windows_read_no_raw_rows() {
        let s = split(ms("2026-11-23T18:00:00Z"), ms("2026-11-24T18:00:00Z"));
        assert_eq!(s.raw_head.0, s.raw_head.1);
        assert_eq!(s.raw_tail.0, s.raw_tail.1);
        assert_eq!(
            s.hours,
            (ms("2026-11-23T18:00:00Z"), ms("2026-11-24T18:00:00Z"))
        );
    }

    #[test]
    fn short_and_empty_windows_are_read_raw() {
        let a = ms("2026-11-24T10:15:30Z");
        let s = split(a, a + 20_000);
        assert_eq!(s.raw_head, (a, a + 20_000));
        assert_eq!(s.hours.0, s.hours.1);
        assert_eq!(split(a, a - 5).raw_head, (a, a));
        let s = split(ms("2026-11-24T10:15:30Z"), ms("2026-11-24T11:40:00Z"));
        assert_eq!(s.raw_head, (a, ms("2026-11-24T11:40:00Z")));
        assert_eq!(s.hours.0, s.hours.1);
    }

    #[test]
    fn keys_are_prefixes_of_stored_timestamps() {
        let t = ms("2026-11-24T10:15:30.5Z");
        assert_eq!(hour_key(t.div_euclid(HOUR_MS) * HOUR_MS), "2026-11-24T10");
    }
}
