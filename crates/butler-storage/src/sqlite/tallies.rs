//! Reading a window's tallies on SQLite.

use std::sync::LazyLock;

use butler_events::formulas::Ratings;
use butler_events::{EventTime, EventType};

use super::SqliteDb;
use crate::StorageError;
use crate::tallies::{BY_CHANNEL, TALLIED, Tally, hour_key, split};

/// `'a', 'b'`: the names of `types` as an SQL list.
fn sql_list(types: &[EventType]) -> String {
    let names: Vec<String> = types.iter().map(|t| format!("'{}'", t.as_str())).collect();
    names.join(", ")
}

/// One window's tallies for property `?1`: the hour tallies of `[?4, ?5)`, plus the
/// raw rows of `[?2, ?3)` times `?8` and of `[?6, ?7)` times `?9` (each sign 1 or -1).
/// Its lists of types are those of [`TALLIED`] and [`BY_CHANNEL`].
static WINDOW_TALLIES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH raw AS (SELECT event_type, channel, value, duration_ms, ?8 AS sign \
          FROM analytics_events INDEXED BY idx_events_property_time \
          WHERE property_id = ?1 AND timestamp >= ?2 AND timestamp < ?3 \
          UNION ALL \
          SELECT event_type, channel, value, duration_ms, ?9 \
          FROM analytics_events INDEXED BY idx_events_property_time \
          WHERE property_id = ?1 AND timestamp >= ?6 AND timestamp < ?7), \
        parts AS ( \
          SELECT event_type, \
            CASE WHEN event_type IN ({by_channel}) THEN coalesce(channel, 'unknown') ELSE '*' END AS channel, \
            sign AS events, sign * coalesce(value, 0.0) AS value_sum, \
            sign * (value IS NOT NULL) AS value_count, \
            sign * coalesce(duration_ms, 0) AS duration_sum, \
            sign * (duration_ms IS NOT NULL) AS duration_count, \
            sign * (event_type = '{rating}' AND value = 1) AS rating_1, \
            sign * (event_type = '{rating}' AND value = 2) AS rating_2, \
            sign * (event_type = '{rating}' AND value = 3) AS rating_3, \
            sign * (event_type = '{rating}' AND value = 4) AS rating_4, \
            sign * (event_type = '{rating}' AND value = 5) AS rating_5 \
          FROM raw WHERE event_type IN ({tallied}) \
          UNION ALL \
          SELECT event_type, channel, events, value_sum, value_count, duration_sum, duration_count, \
            rating_1, rating_2, rating_3, rating_4, rating_5 FROM event_tallies_hour \
          WHERE property_id = ?1 AND hour >= ?4 AND hour < ?5) \
        SELECT event_type, channel, sum(events), total(value_sum), sum(value_count), sum(duration_sum), \
          sum(duration_count), sum(rating_1), sum(rating_2), sum(rating_3), sum(rating_4), sum(rating_5) \
        FROM parts GROUP BY event_type, channel HAVING sum(events) <> 0 ORDER BY event_type, channel",
        by_channel = sql_list(&BY_CHANNEL),
        tallied = sql_list(&TALLIED),
        rating = EventType::SatisfactionRatingReceived.as_str(),
    )
});

impl SqliteDb {
    pub(crate) async fn tallies(
        &self,
        property_id: &str,
        start: EventTime,
        end: EventTime,
    ) -> Result<Vec<Tally>, StorageError> {
        let s = split(start.millis(), end.millis());
        let raw = |t: i64| EventTime::from_millis(t).to_string();
        let text = [
            property_id.to_owned(),
            raw(s.head.0),
            raw(s.head.1),
            hour_key(s.hours.0),
            hour_key(s.hours.1),
            raw(s.tail.0),
            raw(s.tail.1),
        ];
        let signs = (s.head_sign, s.tail_sign);
        self.row_readers
            .run(move |conn| {
                let mut stmt = conn.prepare_cached(&WINDOW_TALLIES)?;
                let [p1, p2, p3, p4, p5, p6, p7] = &text;
                let rows = stmt.query_map(
                    rusqlite::params![p1, p2, p3, p4, p5, p6, p7, signs.0, signs.1],
                    |r| {
                        let name: String = r.get(0)?;
                        let Some(event_type) = EventType::parse(&name) else {
                            return Ok(None);
                        };
                        Ok(Some(Tally {
                            event_type,
                            channel: r.get(1)?,
                            events: r.get(2)?,
                            value_sum: r.get(3)?,
                            value_count: r.get(4)?,
                            duration_sum: r.get(5)?,
                            duration_count: r.get(6)?,
                            ratings: Ratings([
                                r.get(7)?,
                                r.get(8)?,
                                r.get(9)?,
                                r.get(10)?,
                                r.get(11)?,
                            ]),
                        }))
                    },
                )?;
                let mut tallies = Vec::new();
                for row in rows {
                    tallies.extend(row?);
                }
                Ok(tallies)
            })
            .await
    }
}
