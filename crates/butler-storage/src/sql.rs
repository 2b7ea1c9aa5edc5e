//! Multi-row statements. sqlx runs every statement on SQLite's worker thread, so one
//! statement per row costs two thread hand-offs per event; one statement per chunk of
//! rows does not. Chunk sizes are powers of two, so only a handful of distinct
//! statements are ever prepared and the per-connection statement cache keeps them.

use std::sync::{Arc, OnceLock};

use sqlx::AssertSqlSafe;

/// Largest chunk: 512 rows × 12 columns stays far below SQLite's 32766 parameters.
pub(crate) const MAX_CHUNK: usize = 512;
const SIZES: usize = MAX_CHUNK.trailing_zeros() as usize + 1;

/// Splits `n` rows into chunks of [`MAX_CHUNK`], then powers of two.
pub(crate) fn chunks(n: usize) -> impl Iterator<Item = usize> {
    let full = n / MAX_CHUNK;
    let rest = n % MAX_CHUNK;
    std::iter::repeat_n(MAX_CHUNK, full).chain(
        (0..SIZES)
            .rev()
            .map(|bit| 1usize << bit)
            .filter(move |size| rest & size != 0),
    )
}

fn build(head: &str, row: &str, tail: &str, rows: usize) -> Arc<str> {
    let mut sql = String::with_capacity(head.len() + tail.len() + rows * (row.len() + 1));
    sql.push_str(head);
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(row);
    }
    sql.push_str(tail);
    sql.into()
}

fn cached(
    cell: &'static OnceLock<Vec<Arc<str>>>,
    rows: usize,
    make: fn(usize) -> Arc<str>,
) -> AssertSqlSafe<Arc<str>> {
    debug_assert!(rows.is_power_of_two() && rows <= MAX_CHUNK);
    let all = cell.get_or_init(|| (0..SIZES).map(|bit| make(1 << bit)).collect());
    AssertSqlSafe(all[rows.trailing_zeros() as usize].clone())
}

/// `INSERT OR IGNORE` of `rows` events, returning the ids actually inserted (a
/// duplicate id returns nothing: the first stored wins).
pub(crate) fn insert_events(rows: usize) -> AssertSqlSafe<Arc<str>> {
    static CELL: OnceLock<Vec<Arc<str>>> = OnceLock::new();
    cached(&CELL, rows, |rows| {
        build(
            "INSERT OR IGNORE INTO analytics_events (id, event_type, timestamp, property_id, \
             channel, guest_id, staff_id, conversation_id, task_id, value, duration_ms, metadata) \
             VALUES ",
            "(?,?,?,?,?,?,?,?,?,?,?,?)",
            " RETURNING id",
            rows,
        )
    })
}

/// Marks `rows` (property, hour) pairs dirty with the batch's change sequence.
pub(crate) fn upsert_dirty_hours(rows: usize) -> AssertSqlSafe<Arc<str>> {
    static CELL: OnceLock<Vec<Arc<str>>> = OnceLock::new();
    cached(&CELL, rows, |rows| {
        build(
            "INSERT INTO agg_dirty_hours (property_id, hour_start, change_seq) VALUES ",
            "(?,?,?)",
            " ON CONFLICT (property_id, hour_start) DO UPDATE SET change_seq = excluded.change_seq",
            rows,
        )
    })
}

/// The two tally tables.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Tallies {
    Minute,
    Hour,
}

const TALLY_COLUMNS: &str = "events, value_sum, value_count, duration_sum, duration_count, \
     rating_1, rating_2, rating_3, rating_4, rating_5";

/// Adds `rows` tallies to their period's, creating the rows that are missing.
pub(crate) fn upsert_tallies(table: Tallies, rows: usize) -> AssertSqlSafe<Arc<str>> {
    fn make(table: &str, period: &str, rows: usize) -> Arc<str> {
        let add: Vec<String> = TALLY_COLUMNS
            .split(", ")
            .map(|c| format!("{c} = {c} + excluded.{c}"))
            .collect();
        build(
            &format!(
                "INSERT INTO {table} (property_id, {period}, event_type, channel, {TALLY_COLUMNS}) VALUES "
            ),
            "(?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            &format!(
                " ON CONFLICT (property_id, {period}, event_type, channel) DO UPDATE SET {}",
                add.join(", ")
            ),
            rows,
        )
    }
    static MINUTE: OnceLock<Vec<Arc<str>>> = OnceLock::new();
    static HOUR: OnceLock<Vec<Arc<str>>> = OnceLock::new();
    match table {
        Tallies::Minute => cached(&MINUTE, rows, |rows| {
            make("event_tallies_minute", "minute", rows)
        }),
        Tallies::Hour => cached(&HOUR, rows, |rows| make("event_tallies_hour", "hour", rows)),
    }
}

/// One window's tallies: raw head `[?2, ?3)`, minutes `[?4, ?5)`, hours `[?6, ?7)`,
/// minutes `[?8, ?9)`, raw tail `[?10, ?11)`, for property `?1`.
pub(crate) const WINDOW_TALLIES: &str = "\
    WITH raw AS (SELECT event_type, coalesce(channel, 'unknown') AS channel, 1 AS events, \
        coalesce(value, 0.0) AS value_sum, value IS NOT NULL AS value_count, \
        coalesce(duration_ms, 0) AS duration_sum, duration_ms IS NOT NULL AS duration_count, \
        event_type = 'satisfaction.rating_received' AND value = 1 AS rating_1, \
        event_type = 'satisfaction.rating_received' AND value = 2 AS rating_2, \
        event_type = 'satisfaction.rating_received' AND value = 3 AS rating_3, \
        event_type = 'satisfaction.rating_received' AND value = 4 AS rating_4, \
        event_type = 'satisfaction.rating_received' AND value = 5 AS rating_5 \
      FROM analytics_events INDEXED BY idx_events_property_time \
      WHERE property_id = ?1 AND timestamp >= ?2 AND timestamp < ?3 \
      UNION ALL \
      SELECT event_type, coalesce(channel, 'unknown'), 1, coalesce(value, 0.0), value IS NOT NULL, \
        coalesce(duration_ms, 0), duration_ms IS NOT NULL, \
        event_type = 'satisfaction.rating_received' AND value = 1, \
        event_type = 'satisfaction.rating_received' AND value = 2, \
        event_type = 'satisfaction.rating_received' AND value = 3, \
        event_type = 'satisfaction.rating_received' AND value = 4, \
        event_type = 'satisfaction.rating_received' AND value = 5 \
      FROM analytics_events INDEXED BY idx_events_property_time \
      WHERE property_id = ?1 AND timestamp >= ?10 AND timestamp < ?11), \
    parts AS ( \
      SELECT event_type, channel, events, value_sum, value_count, duration_sum, duration_count, \
        rating_1, rating_2, rating_3, rating_4, rating_5 FROM raw \
      WHERE event_type IN ('conversation.started', 'conversation.resolved', 'conversation.escalated', \
          'message.received', 'message.sent', 'response.time_recorded', 'task.created', \
          'satisfaction.survey_sent', 'satisfaction.rating_received') \
      UNION ALL \
      SELECT event_type, channel, events, value_sum, value_count, duration_sum, duration_count, \
        rating_1, rating_2, rating_3, rating_4, rating_5 FROM event_tallies_minute \
      WHERE property_id = ?1 AND minute >= ?4 AND minute < ?5 \
      UNION ALL \
      SELECT event_type, channel, events, value_sum, value_count, duration_sum, duration_count, \
        rating_1, rating_2, rating_3, rating_4, rating_5 FROM event_tallies_hour \
      WHERE property_id = ?1 AND hour >= ?6 AND hour < ?7 \
      UNION ALL \
      SELECT event_type, channel, events, value_sum, value_count, duration_sum, duration_count, \
        rating_1, rating_2, rating_3, rating_4, rating_5 FROM event_tallies_minute \
      WHERE property_id = ?1 AND minute >= ?8 AND minute < ?9) \
    SELECT event_type, channel, sum(events), total(value_sum), sum(value_count), sum(duration_sum), \
      sum(duration_count), sum(rating_1), sum(rating_2), sum(rating_3), sum(rating_4), sum(rating_5) \
    FROM parts GROUP BY event_type, channel ORDER BY event_type, channel";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_every_row_with_few_distinct_sizes() {
        for n in [0, 1, 7, 511, 512, 513, 1000, 1024, 5000] {
            let sizes: Vec<_> = chunks(n).collect();
            assert_eq!(sizes.iter().sum::<usize>(), n, "{n}");
            assert!(sizes.iter().all(|s| s.is_power_of_two() && *s <= MAX_CHUNK));
        }
        assert_eq!(chunks(1000).collect::<Vec<_>>(), [512, 256, 128, 64, 32, 8]);
    }

    #[test]
    fn statements_have_one_placeholder_per_value() {
        let sql = insert_events(4).0;
        assert_eq!(sql.matches('?').count(), 48);
        assert!(sql.ends_with("RETURNING id"));
    }
}
