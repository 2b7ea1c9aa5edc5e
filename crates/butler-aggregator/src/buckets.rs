//! Bucket boundaries. Hourly buckets are UTC hours; daily, weekly and monthly buckets
//! are local to the property: a local day runs from local midnight to the next local
//! midnight (23 or 25 hours on DST days), a week from Monday 00:00, a month from the
//! 1st at 00:00.

use chrono::{
    DateTime, Datelike, Days, Duration, LocalResult, Months, NaiveDate, NaiveTime, TimeZone,
    Timelike, Utc,
};
use chrono_tz::Tz;

/// The width of a bucket.
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

/// The first instant of the local date `date` in `tz`: local midnight, or when
/// midnight falls in a DST gap, the first local time of that date that exists.
pub fn start_of_local_date(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    let mut local = date.and_time(NaiveTime::MIN);
    // Gaps are at most a few hours; step until the wall clock exists again.
    for _ in 0..(24 * 4) {
        match tz.from_local_datetime(&local) {
            LocalResult::Single(t) => return t.with_timezone(&Utc),
            LocalResult::Ambiguous(earliest, _) => return earliest.with_timezone(&Utc),
            LocalResult::None => local += Duration::minutes(15),
        }
    }
    Utc.from_utc_datetime(&date.and_time(NaiveTime::MIN))
}

impl Granularity {
    /// The bucket holding `instant`, in `tz` for local granularities.
    pub fn bucket_of(self, tz: Tz, instant: DateTime<Utc>) -> Bucket {
        match self {
            Granularity::Hour => {
                let start = instant
                    .with_minute(0)
                    .and_then(|t| t.with_second(0))
                    .and_then(|t| t.with_nanosecond(0))
                    .unwrap_or(instant);
                Bucket {
                    start,
                    end: start + Duration::hours(1),
                    key: start.format("%Y-%m-%dT%H:00:00Z").to_string(),
                }
            }
            Granularity::Day | Granularity::Week | Granularity::Month => {
                let local_date = instant.with_timezone(&tz).date_naive();
                self.local_bucket(tz, self.first_date(local_date))
            }
        }
    }

    /// The first local date of the bucket holding `date`.
    fn first_date(self, date: NaiveDate) -> NaiveDate {
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

    fn local_bucket(self, tz: Tz, first: NaiveDate) -> Bucket {
        let next = self.next_first_date(first);
        Bucket {
            start: start_of_local_date(tz, first),
            end: start_of_local_date(tz, next),
            key: match self {
                Granularity::Month => first.format("%Y-%m").to_string(),
                _ => first.format("%Y-%m-%d").to_string(),
            },
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn hours_are_utc_whatever_the_zone() {
        let b =
            Granularity::Hour.bucket_of(chrono_tz::Asia::Kolkata, utc("2026-11-24T10:59:59.999Z"));
        assert_eq!(b.key, "2026-11-24T10:00:00Z");
        assert_eq!(b.start, utc("2026-11-24T10:00:00Z"));
        assert_eq!(b.end, utc("2026-11-24T11:00:00Z"));
    }

    #[test]
    fn a_local_day_follows_the_zone() {
        let lisbon = chrono_tz::Europe::Lisbon; // UTC+0 in winter
        let ny = chrono_tz::America::New_York; // UTC-5 in winter
        let at = utc("2026-11-24T03:00:00Z");
        assert_eq!(Granularity::Day.bucket_of(lisbon, at).key, "2026-11-24");
        let b = Granularity::Day.bucket_of(ny, at);
        assert_eq!(b.key, "2026-11-23");
        assert_eq!(b.start, utc("2026-11-23T05:00:00Z"));
        assert_eq!(b.end, utc("2026-11-24T05:00:00Z"));
    }

    #[test]
    fn dst_days_last_23_and_25_hours() {
        let ny = chrono_tz::America::New_York;
        let spring = Granularity::Day.bucket_for_key(ny, "2026-03-08").unwrap();
        assert_eq!(spring.end - spring.start, Duration::hours(23));
        let autumn = Granularity::Day.bucket_for_key(ny, "2026-11-01").unwrap();
        assert_eq!(autumn.end - autumn.start, Duration::hours(25));
        assert_eq!(autumn.start, utc("2026-11-01T04:00:00Z"));
    }

    #[test]
    fn a_midnight_inside_a_dst_gap_starts_the_day_when_the_clock_resumes() {
        // Santiago springs forward at 24:00 → 01:00 on the first Sunday of September.
        let santiago = chrono_tz::America::Santiago;
        let day = Granularity::Day
            .bucket_for_key(santiago, "2026-09-06")
            .unwrap();
        assert_eq!(day.start, utc("2026-09-06T04:00:00Z"), "01:00 at -03:00");
        assert_eq!(day.end - day.start, Duration::hours(23));
    }

    #[test]
    fn half_hour_zones_shift_the_day_by_half_an_hour() {
        let kolkata = chrono_tz::Asia::Kolkata; // UTC+05:30
        let b = Granularity::Day.bucket_of(kolkata, utc("2026-11-24T18:29:59.999Z"));
        assert_eq!(b.key, "2026-11-24");
        let b = Granularity::Day.bucket_of(kolkata, utc("2026-11-24T18:30:00Z"));
        assert_eq!(b.key, "2026-11-25");
        assert_eq!(b.start, utc("2026-11-24T18:30:00Z"));
        // A UTC hour can straddle two local days there.
        let days = Granularity::Day.buckets_overlapping(
            kolkata,
            utc("2026-11-24T18:00:00Z"),
            utc("2026-11-24T19:00:00Z"),
        );
        assert_eq!(
            days.iter().map(|b| b.key.as_str()).collect::<Vec<_>>(),
            ["2026-11-24", "2026-11-25"]
        );
    }

    #[test]
    fn weeks_start_on_monday_and_months_on_the_first() {
        let utc_tz = chrono_tz::UTC;
        // 2026-11-29 is a Sunday; its ISO week starts Monday 2026-11-23.
        let w = Granularity::Week.bucket_of(utc_tz, utc("2026-11-29T23:59:59Z"));
        assert_eq!(w.key, "2026-11-23");
        assert_eq!(w.end, utc("2026-11-30T00:00:00Z"));
        // A week across a year boundary keeps its Monday.
        assert_eq!(
            Granularity::Week
                .bucket_of(utc_tz, utc("2027-01-01T12:00:00Z"))
                .key,
            "2026-12-28"
        );
        let m =
            Granularity::Month.bucket_of(chrono_tz::Europe::Lisbon, utc("2026-03-31T23:30:00Z"));
        assert_eq!(
            m.key, "2026-04",
            "23:30 UTC on 31 March is 00:30 on 1 April in Lisbon (summer time)"
        );
        assert_eq!(m.start, utc("2026-03-31T23:00:00Z"));
        assert!(
            Granularity::Week
                .bucket_for_key(utc_tz, "2026-11-24")
                .is_none(),
            "not a Monday"
        );
    }

    #[test]
    fn overlapping_buckets_cover_a_range_without_gaps() {
        let tz = chrono_tz::America::New_York;
        let days = Granularity::Day.buckets_overlapping(
            tz,
            utc("2026-03-07T12:00:00Z"),
            utc("2026-03-10T00:00:00Z"),
        );
        let keys: Vec<_> = days.iter().map(|b| b.key.as_str()).collect();
        assert_eq!(keys, ["2026-03-07", "2026-03-08", "2026-03-09"]);
        for pair in days.windows(2) {
            assert_eq!(pair[0].end, pair[1].start);
        }
    }
}
