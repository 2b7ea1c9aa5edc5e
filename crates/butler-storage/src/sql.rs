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
