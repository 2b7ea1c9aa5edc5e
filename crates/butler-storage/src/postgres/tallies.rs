//! Reading a window's tallies on PostgreSQL: the hour tallies of its whole hours,
//! plus or minus the raw events of its two ragged edges (`crate::tallies::split`).

use std::sync::LazyLock;

use butler_events::formulas::Ratings;
use butler_events::{EventTime, EventType};
use sqlx::Row;

use super::PgDb;
use crate::StorageError;
use crate::tallies::{BY_CHANNEL, TALLIED, Tally, hour_key, split};

/// `'a', 'b'`: the names of `types` as an SQL list.
fn sql_list(types: &[EventType]) -> String {
    let names: Vec<String> = types.iter().map(|t| format!("'{}'", t.as_str())).collect();
    names.join(", ")
}

/// One window's tallies for property `$1`: the hour tallies of `[$4, $5)`, plus the
/// raw rows of `[$2, $3)` times `$8` and of `[$6, $7)` times `$9` (each 1 or -1).
static WINDOW_TALLIES: LazyLock<String> = LazyLock::new(|| {
    let rating = |v: u8| {
        format!(
            "CASE WHEN event_type = '{}' AND value = {v} THEN sign ELSE 0 END AS rating_{v}",
            EventType::SatisfactionRatingReceived.as_str()
        )
    };
    format!(
        "WITH raw AS (SELECT event_type, channel, value, duration_ms, $8::int8 AS sign \
          FROM analytics_events WHERE property_id = $1 AND \"timestamp\" >= $2 AND \"timestamp\" < $3 \
          UNION ALL \
          SELECT event_type, channel, value, duration_ms, $9::int8 \
          FROM analytics_events WHERE property_id = $1 AND \"timestamp\" >= $6 AND \"timestamp\" < $7), \
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
        SELECT event_type, channel, sum(events)::int8, coalesce(sum(value_sum), 0)::float8, \
          sum(value_count)::int8, sum(duration_sum)::int8, sum(duration_count)::int8, \
          sum(rating_1)::int8, sum(rating_2)::int8, sum(rating_3)::int8, sum(rating_4)::int8, \
          sum(rating_5)::int8 \
        FROM parts GROUP BY event_type, channel HAVING sum(events) <> 0 \
        ORDER BY event_type COLLATE \"C\", channel COLLATE \"C\"",
        by_channel = sql_list(&BY_CHANNEL),
        tallied = sql_list(&TALLIED),
        r1 = rating(1),
        r2 = rating(2),
        r3 = rating(3),
        r4 = rating(4),
        r5 = rating(5),
    )
});

impl PgDb {
    pub(crate) async fn tallies(
        &self,
        property_id: &str,
        start: EventTime,
        end: EventTime,
    ) -> Result<Vec<Tally>, StorageError> {
        let s = split(start.millis(), end.millis());
        let at = |t: i64| EventTime::from_millis(t).to_datetime();
        let rows = sqlx::query(sqlx::AssertSqlSafe(WINDOW_TALLIES.as_str()))
            .bind(property_id)
            .bind(at(s.head.0))
            .bind(at(s.head.1))
            .bind(hour_key(s.hours.0))
            .bind(hour_key(s.hours.1))
            .bind(at(s.tail.0))
            .bind(at(s.tail.1))
            .bind(s.head_sign)
            .bind(s.tail_sign)
            .fetch_all(&self.pool)
            .await?;
        let mut tallies = Vec::with_capacity(rows.len());
        for r in &rows {
            let Some(event_type) = EventType::parse(r.try_get::<&str, _>(0)?) else {
                continue;
            };
            tallies.push(Tally {
                event_type,
                channel: r.try_get(1)?,
                events: r.try_get(2)?,
                value_sum: r.try_get(3)?,
                value_count: r.try_get(4)?,
                duration_sum: r.try_get(5)?,
                duration_count: r.try_get(6)?,
                ratings: Ratings([
                    r.try_get(7)?,
                    r.try_get(8)?,
                    r.try_get(9)?,
                    r.try_get(10)?,
                    r.try_get(11)?,
                ]),
            });
        }
        Ok(tallies)
    }
}
