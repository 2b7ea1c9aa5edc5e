//! Running tallies: counts and sums of the event types the dashboard and the report
//! read, per property, UTC minute and hour, event type and channel. Ingest adds each
//! new event in its batch's transaction; a window then costs a few hundred tally rows
//! plus its ragged edges (under a minute at each end) read raw, instead of every raw
//! event of the window.

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

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;

/// Counts and sums of one event type on one channel over a window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    /// The event type.
    pub event_type: String,
    /// The channel, `unknown` for none.
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

/// Adds newly stored events to their minute and hour tallies.
pub(crate) async fn add_tallies<'e>(
    tx: &mut Transaction<'_, Sqlite>,
    events: impl Iterator<Item = &'e Event>,
) -> Result<(), StorageError> {
    let mut minutes: HashMap<(&str, i64, EventType, &str), Tally> = HashMap::new();
    for e in events.filter(|e| TALLIED.contains(&e.event_type)) {
        let minute = e.timestamp.millis().div_euclid(MINUTE_MS);
        let channel = e.channel.as_deref().unwrap_or("unknown");
        minutes
            .entry((e.property_id.as_str(), minute, e.event_type, channel))
            .or_default()
            .add(e);
    }
    if minutes.is_empty() {
        return Ok(());
    }
    let mut hours: HashMap<(&str, i64, EventType, &str), Tally> = HashMap::new();
    for ((property, minute, event_type, channel), t) in &minutes {
        let hour = hours
            .entry((property, minute.div_euclid(60), *event_type, channel))
            .or_default();
        hour.events += t.events;
        hour.value_sum += t.value_sum;
        hour.value_count += t.value_count;
        hour.duration_sum += t.duration_sum;
        hour.duration_count += t.duration_count;
        for (sum, n) in hour.ratings.iter_mut().zip(t.ratings) {
            *sum += n;
        }
    }
    upsert(tx, sql::Tallies::Minute, &minutes, |m| {
        minute_key(m * MINUTE_MS)
    })
    .await?;
    upsert(tx, sql::Tallies::Hour, &hours, |h| hour_key(h * HOUR_MS)).await
}

async fn upsert(
    tx: &mut Transaction<'_, Sqlite>,
    table: sql::Tallies,
    rows: &HashMap<(&str, i64, EventType, &str), Tally>,
    key: fn(i64) -> String,
) -> Result<(), StorageError> {
    let rows: Vec<_> = rows.iter().collect();
    let mut offset = 0;
    for n in sql::chunks(rows.len()) {
        let mut query = sqlx::query(sql::upsert_tallies(table, n));
        for ((property, period, event_type, channel), t) in &rows[offset..offset + n] {
            query = query
                .bind(*property)
                .bind(key(*period))
                .bind(event_type.as_str())
                .bind(*channel)
                .bind(t.events)
                .bind(t.value_sum)
                .bind(t.value_count)
                .bind(t.duration_sum)
                .bind(t.duration_count);
            for r in t.ratings {
                query = query.bind(r);
            }
        }
        query.execute(&mut **tx).await?;
        offset += n;
    }
    Ok(())
}

fn minute_key(ms: i64) -> String {
    let mut s = EventTime::from_millis(ms).to_string();
    s.truncate(16);
    s
}

fn hour_key(ms: i64) -> String {
    let mut s = EventTime::from_millis(ms).to_string();
    s.truncate(13);
    s
}

/// How a window `[start, end)` splits: raw edges, whole minutes, whole hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Split {
    raw_head: (i64, i64),
    minutes_head: (i64, i64),
    hours: (i64, i64),
    minutes_tail: (i64, i64),
    raw_tail: (i64, i64),
}

fn split(start: i64, end: i64) -> Split {
    let end = end.max(start);
    let up = |t: i64, unit: i64| t.div_euclid(unit) * unit + if t % unit == 0 { 0 } else { unit };
    let down = |t: i64, unit: i64| t.div_euclid(unit) * unit;
    let (sm, em) = (up(start, MINUTE_MS), down(end, MINUTE_MS));
    if sm >= em {
        return Split {
            raw_head: (start, end),
            minutes_head: (end, end),
            hours: (end, end),
            minutes_tail: (end, end),
            raw_tail: (end, end),
        };
    }
    let (sh, eh) = (up(sm, HOUR_MS), down(em, HOUR_MS));
    if sh >= eh {
        return Split {
            raw_head: (start, sm),
            minutes_head: (sm, em),
            hours: (em, em),
            minutes_tail: (em, em),
            raw_tail: (em, end),
        };
    }
    Split {
        raw_head: (start, sm),
        minutes_head: (sm, sh),
        hours: (sh, eh),
        minutes_tail: (eh, em),
        raw_tail: (em, end),
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
        let raw = |(a, b): (i64, i64)| {
            (
                EventTime::from_millis(a).to_string(),
                EventTime::from_millis(b).to_string(),
            )
        };
        let minutes = |(a, b): (i64, i64)| (minute_key(a), minute_key(b));
        let (rh, mh, hh, mt, rt) = (
            raw(s.raw_head),
            minutes(s.minutes_head),
            (hour_key(s.hours.0), hour_key(s.hours.1)),
            minutes(s.minutes_tail),
            raw(s.raw_tail),
        );
        let rows = sqlx::query(sql::WINDOW_TALLIES)
            .bind(property_id)
            .bind(&rh.0)
            .bind(&rh.1)
            .bind(&mh.0)
            .bind(&mh.1)
            .bind(&hh.0)
            .bind(&hh.1)
            .bind(&mt.0)
            .bind(&mt.1)
            .bind(&rt.0)
            .bind(&rt.1)
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
            "SELECT event_type, coalesce(channel, 'unknown') AS ch, count(*), total(value), \
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
    fn a_window_splits_into_raw_edges_minutes_and_hours() {
        let s = split(ms("2026-11-24T10:15:30.5Z"), ms("2026-11-24T13:02:10Z"));
        assert_eq!(
            s.raw_head,
            (ms("2026-11-24T10:15:30.5Z"), ms("2026-11-24T10:16:00Z"))
        );
        assert_eq!(
            s.minutes_head,
            (ms("2026-11-24T10:16:00Z"), ms("2026-11-24T11:00:00Z"))
        );
        assert_eq!(
            s.hours,
            (ms("2026-11-24T11:00:00Z"), ms("2026-11-24T13:00:00Z"))
        );
        assert_eq!(
            s.minutes_tail,
            (ms("2026-11-24T13:00:00Z"), ms("2026-11-24T13:02:00Z"))
        );
        assert_eq!(
            s.raw_tail,
            (ms("2026-11-24T13:02:00Z"), ms("2026-11-24T13:02:10Z"))
        );
    }

    #[test]
    fn aligned_windows_read_no_raw_rows() {
        let s = split(ms("2026-11-23T18:30:00Z"), ms("2026-11-24T18:30:00Z"));
        assert_eq!(s.raw_head.0, s.raw_head.1);
        assert_eq!(s.raw_tail.0, s.raw_tail.1);
        assert_eq!(
            s.minutes_head,
            (ms("2026-11-23T18:30:00Z"), ms("2026-11-23T19:00:00Z"))
        );
        assert_eq!(
            s.hours,
            (ms("2026-11-23T19:00:00Z"), ms("2026-11-24T18:00:00Z"))
        );
    }

    #[test]
    fn short_and_empty_windows_are_read_raw() {
        let a = ms("2026-11-24T10:15:30Z");
        let s = split(a, a + 20_000);
        assert_eq!(s.raw_head, (a, a + 20_000));
        assert_eq!(s.minutes_head.0, s.minutes_head.1);
        let s = split(a, a - 5);
        assert_eq!(s.raw_head, (a, a));
        let s = split(ms("2026-11-24T10:15:30Z"), ms("2026-11-24T10:40:00Z"));
        assert_eq!(
            s.minutes_head,
            (ms("2026-11-24T10:16:00Z"), ms("2026-11-24T10:40:00Z"))
        );
        assert_eq!(s.hours.0, s.hours.1);
        assert_eq!(s.raw_tail.0, s.raw_tail.1);
    }

    #[test]
    fn keys_are_prefixes_of_stored_timestamps() {
        let t = ms("2026-11-24T10:15:30.5Z");
        assert_eq!(
            minute_key(t.div_euclid(MINUTE_MS) * MINUTE_MS),
            "2026-11-24T10:15"
        );
        assert_eq!(hour_key(t.div_euclid(HOUR_MS) * HOUR_MS), "2026-11-24T10");
    }
}
