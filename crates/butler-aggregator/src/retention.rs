//! Retention: each table loses the rows past its own retention, by its own period
//! column, in small chunks so that ingest never waits long for the write lock; the
//! live state loses what can no longer count (`butler_storage::live_state`).

use butler_events::Granularity;
use butler_storage::live_state::LiveTable;
use butler_storage::retention::RetentionClass;
use butler_storage::{Storage, StorageError};
use chrono::{DateTime, Duration, Utc};

/// Days each class keeps (the `retention` config section).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// `retention.live_state`.
    pub live_state: u32,
}

/// Rows deleted per chunk.
const CHUNK: u32 = 5_000;

/// Live-state keys examined per prune transaction.
const LIVE_STATE_WINDOW: u32 = 20_000;

/// Each class with its cutoff at `now`: rows of periods that began before it go.
pub fn cutoffs(days: RetentionDays, now: DateTime<Utc>) -> Vec<(RetentionClass, DateTime<Utc>)> {
    let before = |d: u32| now - Duration::days(i64::from(d));
    vec![
        (RetentionClass::RawEvents, before(days.raw_events)),
        (
            RetentionClass::Aggregates(Granularity::Hour),
            before(days.hourly),
        ),
        (
            RetentionClass::Aggregates(Granularity::Day),
            before(days.daily),
        ),
        (
            RetentionClass::Aggregates(Granularity::Week),
            before(days.weekly),
        ),
        (
            RetentionClass::Aggregates(Granularity::Month),
            before(days.monthly),
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
            let deleted = storage.delete_expired_chunk(class, cutoff, CHUNK).await?;
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
    let cutoff = now - Duration::days(i64::from(days.live_state));
    for table in LiveTable::ALL {
        let mut after = None;
        let mut deleted = 0;
        loop {
            let step = storage
                .prune_live_state(table, cutoff, after.as_ref(), LIVE_STATE_WINDOW)
                .await?;
            deleted += step.deleted;
            match step.next {
                Some(key) => after = Some(key),
                None => break,
            }
            tokio::task::yield_now().await;
        }
        totals.push((table.name(), deleted));
    }
    Ok(totals)
}

#[cfg(test)]
mod tests;
