//! Running tallies: counts and sums of the event types the dashboard and the report
//! read, per property, UTC hour and event type (and channel, for the satisfaction
//! types). Ingest adds each new event in its batch's transaction (`ingest_writer`); a
//! window then costs a few dozen tally rows plus its ragged edges (under an hour at
//! each end) read raw, instead of every raw event of the window.

use std::collections::BTreeMap;

use butler_events::formulas::Ratings;
use butler_events::{Event, EventTime, EventType};
use chrono::{DateTime, Utc};

use crate::sql::{Param, Role, Row, sql};
use crate::{Storage, StorageError};

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

pub(crate) const HOUR_MS: i64 = 3_600_000;

/// The types kept per channel; the others are summed over channels under `*`.
pub const BY_CHANNEL: [EventType; 2] = [
    EventType::SatisfactionSurveySent,
    EventType::SatisfactionRatingReceived,
];

/// The channel a tally of `event_type` is kept under: the event's own (`unknown` for
/// none) for the types of [`BY_CHANNEL`], `*` for the others.
pub(crate) fn tally_channel(event_type: EventType, channel: Option<&str>) -> &str {
    if BY_CHANNEL.contains(&event_type) {
        channel.unwrap_or("unknown")
    } else {
        "*"
    }
}

/// Counts and sums of one event type on one channel over a window.
#[derive(Debug, Clone, PartialEq)]
pub struct Tally {
    /// The event type.
    pub event_type: EventType,
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
    pub ratings: Ratings,
}

impl Tally {
    /// A tally of no events yet.
    pub(crate) fn new(event_type: EventType, channel: &str) -> Tally {
        Tally {
            event_type,
            channel: channel.to_owned(),
            events: 0,
            value_sum: 0.0,
            value_count: 0,
            duration_sum: 0,
            duration_count: 0,
            ratings: Ratings::default(),
        }
    }

    pub(crate) fn add(&mut self, e: &Event) {
        self.events += 1;
        if let Some(v) = e.value {
            self.value_sum += v;
            self.value_count += 1;
            if e.event_type == EventType::SatisfactionRatingReceived {
                self.ratings.add(v);
            }
        }
        if let Some(d) = e.duration_ms {
            self.duration_sum += d;
            self.duration_count += 1;
        }
    }
}

/// The key of the UTC hour holding `instant` in `event_tallies_hour.hour`:
/// `YYYY-MM-DDTHH`.
pub(crate) fn tally_hour_key(instant: DateTime<Utc>) -> String {
    let mut key = butler_events::calendar::hour_key(instant);
    key.truncate(13);
    key
}

pub(crate) fn hour_key(ms: i64) -> String {
    tally_hour_key(EventTime::from_millis(ms).to_datetime())
}

/// How a window `[start, end)` is counted: the tallies of whole hours, plus or minus
/// two raw edges. An edge in the first half of its hour is added as raw rows; one in
/// the second half takes its whole hour's tally and subtracts the raw rows outside
/// the window. So an edge never reads more than half an hour of raw rows — and a
/// dashboard's "until now" edge reads next to none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Split {
    pub(crate) hours: (i64, i64),
    pub(crate) head: (i64, i64),
    pub(crate) head_sign: i64,
    pub(crate) tail: (i64, i64),
    pub(crate) tail_sign: i64,
}

pub(crate) fn split(start: i64, end: i64) -> Split {
    let end = end.max(start);
    let floor = |t: i64| t.div_euclid(HOUR_MS) * HOUR_MS;
    let (fs, fe) = (floor(start), floor(end));
    let (start_aligned, end_aligned) = (fs == start, fe == end);
    let current_hour = floor(chrono::Utc::now().timestamp_millis());
    if fs == fe && !end_aligned {
        // Both edges in one hour: the raw window, or that hour less both sides.
        return if end - start <= HOUR_MS / 2 && fe < current_hour {
            Split {
                hours: (start, start),
                head: (start, end),
                head_sign: 1,
                tail: (end, end),
                tail_sign: 1,
            }
        } else {
            Split {
                hours: (fs, fs + HOUR_MS),
                head: (fs, start),
                head_sign: -1,
                tail: (end, fs + HOUR_MS),
                tail_sign: -1,
            }
        };
    }
    // Head: add [start, next hour) raw, or subtract [hour start, start) raw.
    let head_adds = !start_aligned && start - fs >= HOUR_MS / 2;
    // Tail: add [hour start, end) raw, or subtract [end, next hour) raw — always the
    // latter in the hour being written now, where nothing lies after "now" yet.
    let tail_adds = !end_aligned && end - fe <= HOUR_MS / 2 && fe < current_hour;
    let h0 = if start_aligned || !head_adds {
        fs
    } else {
        fs + HOUR_MS
    };
    let h1 = if end_aligned || tail_adds {
        fe
    } else {
        fe + HOUR_MS
    };
    let (head, head_sign) = match (start_aligned, head_adds) {
        (true, _) => ((start, start), 1),
        (false, true) => ((start, fs + HOUR_MS), 1),
        (false, false) => ((fs, start), -1),
    };
    let (tail, tail_sign) = match (end_aligned, tail_adds) {
        (true, _) => ((end, end), 1),
        (false, true) => ((fe, end), 1),
        (false, false) => ((end, fe + HOUR_MS), -1),
    };
    Split {
        hours: (h0, h1),
        head,
        head_sign,
        tail,
        tail_sign,
    }
}

/// The tallies a batch's new events add, per property, UTC hour number, type and
/// channel, in key order (so that instances sharing a database lock rows in one
/// order).
pub(crate) fn hour_tallies<'e>(
    new: &[&'e Event],
) -> BTreeMap<(&'e str, i64, EventType, &'e str), Tally> {
    let mut hours = BTreeMap::new();
    for e in new.iter().filter(|e| TALLIED.contains(&e.event_type)) {
        let channel = tally_channel(e.event_type, e.channel.as_deref());
        hours
            .entry((
                e.property_id.as_str(),
                e.timestamp.millis().div_euclid(HOUR_MS),
                e.event_type,
                channel,
            ))
            .or_insert_with(|| Tally::new(e.event_type, channel))
            .add(e);
    }
    hours
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
        let d = self.backend.dialect();
        let rating = |v: u8| {
            format!(
                "CASE WHEN event_type = '{}' AND value = {v} THEN sign ELSE 0 END AS rating_{v}",
                EventType::SatisfactionRatingReceived.as_str()
            )
        };
        // The hour tallies of `[$4, $5)`, plus the raw rows of `[$2, $3)` times `$8` and
        // of `[$6, $7)` times `$9` (each sign 1 or -1).
        let window = sql!(
            d,
            "WITH raw AS (SELECT event_type, channel, value, duration_ms, $8 AS sign \
              FROM analytics_events{index} \
              WHERE property_id = $1 AND \"timestamp\" >= $2 AND \"timestamp\" < $3 \
              UNION ALL \
              SELECT event_type, channel, value, duration_ms, $9 \
              FROM analytics_events{index} \
              WHERE property_id = $1 AND \"timestamp\" >= $6 AND \"timestamp\" < $7), \
            parts AS ( \
              SELECT event_type, \
                CASE WHEN event_type IN ({by_channel}) THEN coalesce(channel, 'unknown') ELSE '*' END AS channel, \
                sign AS events, sign * coalesce(value, 0.0) AS value_sum, \
                CASE WHEN value IS NOT NULL THEN sign ELSE 0 END AS value_count, \
                sign * coalesce(duration_ms, 0) AS duration_sum, \
                CASE WHEN duration_ms IS NOT NULL THEN sign ELSE 0 END AS duration_count, \
                {r1}, {r2}, {r3}, {r4}, {r5} \
              FROM raw WHERE event_type IN ({tallied}) \
              UNION ALL \
              SELECT event_type, channel, events, value_sum, value_count, duration_sum, duration_count, \
                rating_1, rating_2, rating_3, rating_4, rating_5 FROM event_tallies_hour \
              WHERE property_id = $1 AND hour >= $4 AND hour < $5) \
            SELECT event_type, channel, CAST(sum(events) AS BIGINT), \
              CAST(coalesce(sum(value_sum), 0) AS DOUBLE PRECISION), \
              CAST(sum(value_count) AS BIGINT), CAST(sum(duration_sum) AS BIGINT), \
              CAST(sum(duration_count) AS BIGINT), CAST(sum(rating_1) AS BIGINT), \
              CAST(sum(rating_2) AS BIGINT), CAST(sum(rating_3) AS BIGINT), \
              CAST(sum(rating_4) AS BIGINT), CAST(sum(rating_5) AS BIGINT) \
            FROM parts GROUP BY event_type, channel HAVING sum(events) <> 0 \
            ORDER BY event_type{bytewise}, channel{bytewise}",
            index = d.indexed_by("idx_events_property_time"),
            by_channel = sql_list(&BY_CHANNEL),
            tallied = sql_list(&TALLIED),
            r1 = rating(1),
            r2 = rating(2),
            r3 = rating(3),
            r4 = rating(4),
            r5 = rating(5),
            bytewise = d.bytewise(),
        );
        let s = split(start.millis(), end.millis());
        let (first_hour, last_hour) = (hour_key(s.hours.0), hour_key(s.hours.1));
        let at = |t: i64| Param::Time(EventTime::from_millis(t));
        let params = [
            Param::Text(property_id),
            at(s.head.0),
            at(s.head.1),
            Param::Text(&first_hour),
            Param::Text(&last_hour),
            at(s.tail.0),
            at(s.tail.1),
            Param::Int(s.head_sign),
            Param::Int(s.tail_sign),
        ];
        let tallies = self
            .backend
            .fetch(Role::Read, window, &params, tally)
            .await?;
        Ok(tallies.into_iter().flatten().collect())
    }
}

/// A row of the window's tallies; `None` for a type this version does not know.
fn tally(r: &dyn Row) -> Result<Option<Tally>, StorageError> {
    let Some(event_type) = EventType::parse(r.str(0)?) else {
        return Ok(None);
    };
    Ok(Some(Tally {
        event_type,
        channel: r.text(1)?,
        events: r.int(2)?,
        value_sum: r.real(3)?,
        value_count: r.int(4)?,
        duration_sum: r.int(5)?,
        duration_count: r.int(6)?,
        ratings: Ratings([r.int(7)?, r.int(8)?, r.int(9)?, r.int(10)?, r.int(11)?]),
    }))
}

/// `'a', 'b'`: the names of `types` as an SQL list.
fn sql_list(types: &[EventType]) -> String {
    let names: Vec<String> = types.iter().map(|t| format!("'{}'", t.as_str())).collect();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StorageOptions;
    use sqlx::Row;

    use butler_events::testing::Xorshift;

    fn random_event(rng: &mut Xorshift, i: u64, base: i64) -> Event {
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
        // Some ids repeat: the second one is not new, and must not be tallied.
        let id = format!("e{}", if i % 50 == 7 { i - 1 } else { i });
        let at = EventTime::from_millis(base + rng.below(3 * HOUR_MS as u64) as i64);
        let mut e = Event::new(id, event_type, at, format!("p{}", rng.below(2)));
        e.channel = channels[rng.below(4) as usize].map(str::to_owned);
        e.value = (rating || rng.below(3) == 0).then(|| 1.0 + rng.below(5) as f64);
        e.duration_ms = (rng.below(2) == 0).then(|| rng.below(100_000) as i64);
        e
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
        .fetch_all(&storage.sqlite().sql_readers)
        .await
        .unwrap();
        rows.iter()
            .map(|r| Tally {
                event_type: EventType::parse(r.get(0)).unwrap(),
                channel: r.get(1),
                events: r.get(2),
                value_sum: r.get(3),
                value_count: r.get(4),
                duration_sum: r.get(5),
                duration_count: r.get(6),
                ratings: Ratings([r.get(7), r.get(8), r.get(9), r.get(10), r.get(11)]),
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
        let mut rng = Xorshift::new(0x9E37_79B9_7F4A_7C15);
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
    fn edges_in_the_first_half_hour_are_added_and_others_subtracted() {
        let s = split(ms("2026-11-24T10:45:30.5Z"), ms("2026-11-24T13:02:10Z"));
        assert_eq!(
            s.head,
            (ms("2026-11-24T10:45:30.5Z"), ms("2026-11-24T11:00:00Z"))
        );
        assert_eq!(s.head_sign, 1);
        assert_eq!(
            s.hours,
            (ms("2026-11-24T11:00:00Z"), ms("2026-11-24T13:00:00Z"))
        );
        assert_eq!(
            s.tail,
            (ms("2026-11-24T13:00:00Z"), ms("2026-11-24T13:02:10Z"))
        );
        assert_eq!(s.tail_sign, 1);
        let s = split(ms("2026-11-24T10:15:00Z"), ms("2026-11-24T13:58:00Z"));
        assert_eq!(
            s.head,
            (ms("2026-11-24T10:00:00Z"), ms("2026-11-24T10:15:00Z"))
        );
        assert_eq!(s.head_sign, -1);
        assert_eq!(
            s.hours,
            (ms("2026-11-24T10:00:00Z"), ms("2026-11-24T14:00:00Z"))
        );
        assert_eq!(
            s.tail,
            (ms("2026-11-24T13:58:00Z"), ms("2026-11-24T14:00:00Z"))
        );
        assert_eq!(s.tail_sign, -1);
    }

    #[test]
    fn aligned_windows_read_no_raw_rows() {
        let s = split(ms("2026-11-23T18:00:00Z"), ms("2026-11-24T18:00:00Z"));
        assert_eq!(s.head.0, s.head.1);
        assert_eq!(s.tail.0, s.tail.1);
        assert_eq!(
            s.hours,
            (ms("2026-11-23T18:00:00Z"), ms("2026-11-24T18:00:00Z"))
        );
    }

    #[test]
    fn windows_within_one_hour() {
        let a = ms("2026-11-24T10:15:30Z");
        let s = split(a, a + 20_000);
        assert_eq!((s.head, s.head_sign), ((a, a + 20_000), 1));
        assert_eq!(s.hours.0, s.hours.1);
        assert_eq!(split(a, a - 5).head, (a, a));
        // A dashboard at 00:40: the hour's tally less what came after now.
        let s = split(ms("2026-11-24T00:00:00Z"), ms("2026-11-24T00:40:00Z"));
        assert_eq!(
            s.hours,
            (ms("2026-11-24T00:00:00Z"), ms("2026-11-24T01:00:00Z"))
        );
        assert_eq!(
            (s.tail, s.tail_sign),
            ((ms("2026-11-24T00:40:00Z"), ms("2026-11-24T01:00:00Z")), -1)
        );
    }

    #[test]
    fn keys_are_prefixes_of_stored_timestamps() {
        let t = ms("2026-11-24T10:15:30.5Z");
        assert_eq!(hour_key(t.div_euclid(HOUR_MS) * HOUR_MS), "2026-11-24T10");
    }
}
