//! Calendar rules, in one place: which bucket an instant falls in at each granularity,
//! where a property's local day starts, how periods are keyed, and what a date in a
//! request means. Hourly buckets are UTC hours; days, ISO weeks and months are local
//! to the property: a local day runs from local midnight to the next (23 or 25 hours on
//! DST days), a week from Monday 00:00, a month from the 1st at 00:00.
//!
//! The aggregator buckets events with it, the query service turns request dates into
//! ranges and ranges into period keys with it, and the storage crate keys its tallies
//! and retention with it, so the three always agree.

use std::collections::HashMap;

use chrono::{
    DateTime, Datelike, Days, Duration, LocalResult, Months, NaiveDate, NaiveTime, TimeZone,
    Timelike, Utc,
};
use chrono_tz::Tz;

/// The width of a bucket, and of a time series' periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Granularity {
    /// A UTC hour.
    Hour,
    /// A local day.
    Day,
    /// A local ISO week, Monday to Monday.
    Week,
    /// A local calendar month.
    Month,
}

/// One bucket: its half-open UTC interval and the key stored in its table's period
/// column.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bucket {
    /// First instant inside.
    pub start: DateTime<Utc>,
    /// First instant after.
    pub end: DateTime<Utc>,
    /// `YYYY-MM-DDTHH:00:00Z`, `YYYY-MM-DD` (the day, or the week's Monday), or
    /// `YYYY-MM`.
    pub key: String,
}

/// The instant of local wall-clock `time` on `date` in `tz`. A wall-clock time that
/// does not exist (inside a DST gap) moves forward to the first one that does; one
/// that exists twice (a DST overlap) is the earlier.
pub fn local_instant(tz: Tz, date: NaiveDate, time: NaiveTime) -> DateTime<Utc> {
    let mut local = date.and_time(time);
    // Gaps are at most a few hours; step until the wall clock exists again.
    for _ in 0..(24 * 4) {
        match tz.from_local_datetime(&local) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => return t.with_timezone(&Utc),
            LocalResult::None => local += Duration::minutes(15),
        }
    }
    Utc.from_utc_datetime(&date.and_time(time))
}

/// The first instant of the local date `date` in `tz`: local midnight, or when
/// midnight falls in a DST gap, the first local time of that date that exists.
pub fn start_of_local_date(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    local_instant(tz, date, NaiveTime::MIN)
}

/// The key of the UTC hour holding `instant`: `YYYY-MM-DDTHH:00:00Z`, the period of
/// the hourly tables and of the late-data bookkeeping.
pub fn hour_key(instant: DateTime<Utc>) -> String {
    instant.format("%Y-%m-%dT%H:00:00Z").to_string()
}

/// The start of the UTC hour holding `instant`.
pub fn hour_floor(instant: DateTime<Utc>) -> DateTime<Utc> {
    instant
        .with_minute(0)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(instant)
}

impl Granularity {
    /// Every granularity, finest first.
    pub const ALL: [Granularity; 4] = [
        Granularity::Hour,
        Granularity::Day,
        Granularity::Week,
        Granularity::Month,
    ];

    /// The name used in requests and replies.
    pub fn as_str(self) -> &'static str {
        match self {
            Granularity::Hour => "hour",
            Granularity::Day => "day",
            Granularity::Week => "week",
            Granularity::Month => "month",
        }
    }

    /// Parses `hour|day|week|month`.
    pub fn parse(name: &str) -> Option<Granularity> {
        Granularity::ALL.into_iter().find(|g| g.as_str() == name)
    }

    /// The bucket holding `instant`, in `tz` for local granularities.
    pub fn bucket_of(self, tz: Tz, instant: DateTime<Utc>) -> Bucket {
        match self {
            Granularity::Hour => {
                let start = hour_floor(instant);
                Bucket {
                    start,
                    end: start + Duration::hours(1),
                    key: hour_key(start),
                }
            }
            Granularity::Day | Granularity::Week | Granularity::Month => {
                let local_date = instant.with_timezone(&tz).date_naive();
                self.local_bucket(tz, self.first_date(local_date))
            }
        }
    }

    /// The first local date of the bucket holding `date`: the date itself, its week's
    /// Monday, or its month's first day.
    pub fn first_date(self, date: NaiveDate) -> NaiveDate {
        match self {
            Granularity::Hour | Granularity::Day => date,
            Granularity::Week => date - Days::new(u64::from(date.weekday().num_days_from_monday())),
            Granularity::Month => date.with_day(1).unwrap_or(date),
        }
    }

    fn next_first_date(self, first: NaiveDate) -> NaiveDate {
        match self {
            Granularity::Hour | Granularity::Day => first + Days::new(1),
            Granularity::Week => first + Days::new(7),
            Granularity::Month => first + Months::new(1),
        }
    }

    fn previous_first_date(self, first: NaiveDate) -> NaiveDate {
        match self {
            Granularity::Hour | Granularity::Day => first - Days::new(1),
            Granularity::Week => first - Days::new(7),
            Granularity::Month => first - Months::new(1),
        }
    }

    /// The local dates `[start, end)` of the period before the one holding `today`:
    /// yesterday, last ISO week, last month. A scheduled report covers it.
    pub fn previous_period(self, today: NaiveDate) -> (NaiveDate, NaiveDate) {
        let current = self.first_date(today);
        (self.previous_first_date(current), current)
    }

    /// The period key of the local bucket starting on `first`.
    fn date_key(self, first: NaiveDate) -> String {
        match self {
            Granularity::Month => first.format("%Y-%m").to_string(),
            _ => first.format("%Y-%m-%d").to_string(),
        }
    }

    fn local_bucket(self, tz: Tz, first: NaiveDate) -> Bucket {
        let next = self.next_first_date(first);
        Bucket {
            start: start_of_local_date(tz, first),
            end: start_of_local_date(tz, next),
            key: self.date_key(first),
        }
    }

    /// Every bucket that overlaps `[from, to)`, in time order.
    pub fn buckets_overlapping(
        self,
        tz: Tz,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<Bucket> {
        let mut out = Vec::new();
        if from >= to {
            return out;
        }
        let mut bucket = self.bucket_of(tz, from);
        while bucket.start < to {
            let next_start = bucket.end;
            out.push(bucket);
            bucket = self.bucket_of(tz, next_start);
        }
        out
    }

    /// The bucket whose key is `key` (as stored in the period column).
    pub fn bucket_for_key(self, tz: Tz, key: &str) -> Option<Bucket> {
        match self {
            Granularity::Hour => {
                let start = DateTime::parse_from_rfc3339(key).ok()?.with_timezone(&Utc);
                Some(self.bucket_of(tz, start))
            }
            Granularity::Month => {
                let first = NaiveDate::parse_from_str(&format!("{key}-01"), "%Y-%m-%d").ok()?;
                Some(self.local_bucket(tz, first))
            }
            Granularity::Day | Granularity::Week => {
                let date = NaiveDate::parse_from_str(key, "%Y-%m-%d").ok()?;
                (self.first_date(date) == date).then(|| self.local_bucket(tz, date))
            }
        }
    }

    /// The keys bounding the periods that overlap `[from, to)`: a period belongs when
    /// its key, read as a date (a month as its first day), is in `[first, last)`. Hour
    /// keys are UTC hours; the others local dates (a week by its Monday).
    pub fn key_range(self, tz: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> (String, String) {
        if self == Granularity::Hour {
            let end = if hour_floor(to) == to {
                to
            } else {
                to + Duration::hours(1)
            };
            return (hour_key(from), hour_key(end));
        }
        let first = self.first_date(from.with_timezone(&tz).date_naive());
        // Periods starting before `to`: keys up to the local date of `to`, that date
        // included unless `to` is its midnight.
        let to_day = to.with_timezone(&tz).date_naive();
        let last = if start_of_local_date(tz, to_day) == to {
            to_day
        } else {
            to_day + Days::new(1)
        };
        (
            first.format("%Y-%m-%d").to_string(),
            last.format("%Y-%m-%d").to_string(),
        )
    }

    /// `instant` in the form of this granularity's period keys, over its UTC date and
    /// hour: a stored key below it names a period that began before `instant`'s hour,
    /// day or month. Retention compares period columns with it.
    pub fn cutoff_key(self, instant: DateTime<Utc>) -> String {
        match self {
            Granularity::Hour => hour_key(instant),
            Granularity::Day | Granularity::Week => instant.format("%Y-%m-%d").to_string(),
            Granularity::Month => instant.format("%Y-%m").to_string(),
        }
    }
}

/// The zone of each property's local days: its own when configured, else the
/// default. Built once from the configuration and handed to every part.
#[derive(Debug, Clone, PartialEq)]
pub struct Zones {
    default: Tz,
    by_property: HashMap<String, Tz>,
}

impl Zones {
    /// Every property in `default`, except those of `by_property`.
    pub fn new(default: Tz, by_property: HashMap<String, Tz>) -> Zones {
        Zones {
            default,
            by_property,
        }
    }

    /// The zone of `property`.
    pub fn of(&self, property: &str) -> Tz {
        self.by_property
            .get(property)
            .copied()
            .unwrap_or(self.default)
    }

    /// The default zone: of properties without their own, of the schedules, and of
    /// dates that name no property (backfill ranges).
    pub fn default_zone(&self) -> Tz {
        self.default
    }
}

impl Default for Zones {
    fn default() -> Self {
        Zones::new(chrono_tz::UTC, HashMap::new())
    }
}

/// A date in a request that cannot be read, naming the field or option it was given
/// as and what was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadDate {
    /// Where a date or an instant is accepted.
    #[error("{0} {1:?} is not a date (YYYY-MM-DD) or an RFC 3339 time")]
    NotAnInstant(String, String),
    /// Where a local date is expected.
    #[error("{0} {1:?} is not a date (YYYY-MM-DD)")]
    NotADate(String, String),
}

/// The instant a request's date names: an RFC 3339 time as it is, a bare
/// `YYYY-MM-DD` as the start of that local date in `tz` (the property's zone).
///
/// # Errors
/// [`BadDate`] naming `field`.
pub fn parse_request_instant(value: &str, tz: Tz, field: &str) -> Result<DateTime<Utc>, BadDate> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .map(|d| start_of_local_date(tz, d))
        .map_err(|_| BadDate::NotAnInstant(field.to_owned(), value.to_owned()))
}

/// The local date a request's date names: the date of `YYYY-MM-DD`, or of the date
/// part of an RFC 3339 time as written.
///
/// # Errors
/// [`BadDate`] naming `field`.
pub fn parse_request_date(value: &str, field: &str) -> Result<NaiveDate, BadDate> {
    let date_part = value.get(..10).unwrap_or(value);
    NaiveDate::parse_from_str(date_part, "%Y-%m-%d")
        .map_err(|_| BadDate::NotADate(field.to_owned(), value.to_owned()))
}

#[cfg(test)]
mod tests;
