//! Retention: each table loses the rows past its own retention, by its own period
//! column, in small chunks so that ingest never waits long for the write lock.

use butler_events::EventTime;
use butler_storage::aggregation::RetentionTable;
use butler_storage::{Storage, StorageError};
use chrono::{DateTime, Duration, Utc};

/// Days each class keeps (the `retention` config section).
#[derive(Debug, Clone, Copy)]
pub struct RetentionDays {
    /// `retention.raw_events`.
    pub raw_events: u32,
    /// `retention.hourly_aggregations`.
    pub hourly: u32,
    /// `retention.daily_aggregations`.
    pub daily: u32,
    /// `retention.weekly_aggregations`.
    pub weekly: u32,
    /// `retention.monthly_aggregations`.
    pub monthly: u32,
}

/// Rows deleted per chunk.
const CHUNK: u32 = 5_000;

/// The cutoff of each class at `now`, in the form of its period column: a row whose
/// period is below it is past retention.
pub fn cutoffs(days: RetentionDays, now: DateTime<Utc>) -> Vec<(RetentionTable, String)> {
    let before = |d: u32| now - Duration::days(i64::from(d));
    vec![
        (
            RetentionTable::RawEvents,
            EventTime::from_datetime(&before(days.raw_events)).to_string(),
        ),
        (
            RetentionTable::Hourly,
            before(days.hourly).format("%Y-%m-%dT%H:00:00Z").to_string(),
        ),
        (
            RetentionTable::Daily,
            before(days.daily).format("%Y-%m-%d").to_string(),
        ),
        (
            RetentionTable::Weekly,
            before(days.weekly).format("%Y-%m-%d").to_string(),
        ),
        (
            RetentionTable::Monthly,
            before(days.monthly).format("%Y-%m").to_string(),
        ),
    ]
}

/// Deletes everything past retention; returns rows deleted per table.
///
/// # Errors
/// A database error; the chunks deleted before it stay deleted.
pub async fn apply(
    storage: &Storage,
    days: RetentionDays,
    now: DateTime<Utc>,
) -> Result<Vec<(&'static str, u64)>, StorageError> {
    let mut totals: Vec<(&'static str, u64)> = Vec::new();
    for (class, cutoff) in cutoffs(days, now) {
        loop {
            let deleted = storage.delete_expired_chunk(class, &cutoff, CHUNK).await?;
            let mut any = false;
            for (table, n) in deleted {
                any |= n > 0;
                match totals.iter_mut().find(|(t, _)| *t == table) {
                    Some((_, total)) => *total += n,
                    None => totals.push((table, n)),
                }
            }
            if !any {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
    Ok(totals)
}

#[cfg(test)]
mod tests;
