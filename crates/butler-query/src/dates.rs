//! Dates in requests: `YYYY-MM-DD` (local midnight in the given zone) or RFC 3339.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;

use crate::QueryError;

/// The instant `value` names; a bare date is midnight in `tz`.
///
/// # Errors
/// [`QueryError::BadRequest`] naming `field`.
pub fn parse_instant(value: &str, tz: Tz, field: &str) -> Result<DateTime<Utc>, QueryError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .map(|d| butler_aggregator::buckets::start_of_local_date(tz, d))
        .map_err(|_| {
            QueryError::BadRequest(format!(
                "{field} {value:?} is not a date (YYYY-MM-DD) or an RFC 3339 time"
            ))
        })
}

/// A half-open range `[from, to)` that must not be empty.
///
/// # Errors
/// [`QueryError::BadRequest`] for a bad date or a reversed or empty range.
pub fn parse_range(
    from: &str,
    to: &str,
    tz: Tz,
    names: (&str, &str),
) -> Result<(DateTime<Utc>, DateTime<Utc>), QueryError> {
    let start = parse_instant(from, tz, names.0)?;
    let end = parse_instant(to, tz, names.1)?;
    if start >= end {
        return Err(QueryError::BadRequest(format!(
            "{} ({from}) must be before {} ({to}); ranges are half-open [{}, {})",
            names.0, names.1, names.0, names.1
        )));
    }
    Ok((start, end))
}
