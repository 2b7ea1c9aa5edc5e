//! Business hours (CONTRACT §8): when a property is open, and the business time of an
//! interval. A property is open at an instant when its local wall clock then shows a
//! time inside an open interval of that local date; the business time of `[a, b)` is
//! the length of its open instants. So on a 23-hour day 00:00–24:00 is 23 hours, a
//! stretch inside a repeated hour counts twice, and a holiday is closed all day.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Datelike, NaiveDate, Offset, TimeZone};
use chrono_tz::Tz;

/// The weekday keys of a schedule, Monday first, as the config spells them.
pub const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;

/// One property's opening hours: per weekday, half-open intervals in minutes after
/// local midnight; `None` is open around the clock (except holidays).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schedule {
    week: Option<[Vec<(i64, i64)>; 7]>,
    holidays: BTreeSet<NaiveDate>,
}

/// Why a schedule was refused: the part at fault (`mon`, `holidays`) and what is
/// wrong, for the config check to name with its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{part}: {message}")]
pub struct ScheduleError {
    /// The weekday key or `holidays`.
    pub part: String,
    /// What is wrong.
    pub message: String,
}

impl Schedule {
    /// Open around the clock, every day: the default.
    pub fn always_open() -> Schedule {
        Schedule::default()
    }

    /// A schedule from its config form: the weekdays it names (`("mon",
    /// ["08:00-12:00"])`; once any is named, an unnamed one is closed) and its
    /// holidays (`YYYY-MM-DD`, local dates).
    ///
    /// # Errors
    /// A [`ScheduleError`] for an interval not `HH:MM-HH:MM` with two digits each, an
    /// end not after its start, `24:00` other than as an end, two intervals of a day
    /// overlapping, or a holiday that is not a date.
    pub fn parse(
        days: &[(&str, &[String])],
        holidays: &[String],
    ) -> Result<Schedule, ScheduleError> {
        let week = if days.is_empty() {
            None
        } else {
            let mut week: [Vec<(i64, i64)>; 7] = Default::default();
            for (day, intervals) in days {
                let fail = |message: String| ScheduleError {
                    part: (*day).to_owned(),
                    message,
                };
                let index = WEEKDAYS.iter().position(|d| d == day).ok_or_else(|| {
                    fail(format!("not a weekday (one of {})", WEEKDAYS.join(", ")))
                })?;
                let mut parsed: Vec<(i64, i64)> = intervals
                    .iter()
                    .map(|i| parse_interval(i).map_err(&fail))
                    .collect::<Result<_, _>>()?;
                parsed.sort_unstable();
                for pair in parsed.windows(2) {
                    if pair[1].0 < pair[0].1 {
                        return Err(fail(format!(
                            "{} and {} overlap",
                            show(pair[0]),
                            show(pair[1])
                        )));
                    }
                }
                week[index] = parsed;
            }
            Some(week)
        };
        let holidays = holidays
            .iter()
            .map(|h| {
                NaiveDate::parse_from_str(h, "%Y-%m-%d")
                    .ok()
                    .filter(|_| h.len() == 10)
                    .ok_or_else(|| ScheduleError {
                        part: "holidays".into(),
                        message: format!("{h:?} is not a date (YYYY-MM-DD)"),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Schedule { week, holidays })
    }

    /// The open intervals of local `date`, in minutes after its midnight.
    fn open_on(&self, date: NaiveDate) -> &[(i64, i64)] {
        const ALL_DAY: &[(i64, i64)] = &[(0, 24 * 60)];
        if self.holidays.contains(&date) {
            return &[];
        }
        match &self.week {
            None => ALL_DAY,
            Some(week) => &week[date.weekday().num_days_from_monday() as usize],
        }
    }

    /// The business time of `[a, b)` (milliseconds since the epoch) in zone `tz`, in
    /// milliseconds; 0 when `b` is not after `a`.
    pub fn business_ms(&self, tz: Tz, a: i64, b: i64) -> i64 {
        if b <= a {
            return 0;
        }
        if self.week.is_none() && self.holidays.is_empty() {
            return b - a;
        }
        // Each stretch of one UTC offset maps onto local wall-clock time by a shift;
        // the open part of that local range is the stretch's business time.
        let mut total = 0;
        let mut start = a;
        while start < b {
            let offset = offset_ms(tz, start);
            let end = next_offset_change(tz, start, b, offset);
            total += self.open_local(start + offset, end + offset);
            start = end;
        }
        total
    }

    /// How much of the local wall-clock range `[from, to)` (milliseconds of naive
    /// local time since the epoch) is open.
    fn open_local(&self, from: i64, to: i64) -> i64 {
        let mut total = 0;
        for day in from.div_euclid(DAY_MS)..=(to - 1).div_euclid(DAY_MS) {
            let midnight = day * DAY_MS;
            for (start, end) in self.open_on(date_of(day)) {
                let lo = (midnight + start * MINUTE_MS).max(from);
                let hi = (midnight + end * MINUTE_MS).min(to);
                total += (hi - lo).max(0);
            }
        }
        total
    }
}

/// Every property's schedule: its own, else the default (whole, never merged).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BusinessHours {
    default: Schedule,
    by_property: HashMap<String, Schedule>,
}

impl BusinessHours {
    /// `default` for every property but those of `by_property`.
    pub fn new(default: Schedule, by_property: HashMap<String, Schedule>) -> BusinessHours {
        BusinessHours {
            default,
            by_property,
        }
    }

    /// The schedule of `property`.
    pub fn of(&self, property: &str) -> &Schedule {
        self.by_property.get(property).unwrap_or(&self.default)
    }
}

/// Everything §8 reads from the configuration: when each property is open, and its
/// targets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BusinessRules {
    /// Opening hours.
    pub hours: BusinessHours,
    /// Service-level targets.
    pub sla: SlaTargets,
}

/// The first-response target of each property, in business milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaTargets {
    first_response_ms: i64,
    by_property: HashMap<String, i64>,
}

impl Default for SlaTargets {
    fn default() -> Self {
        SlaTargets::new(300_000, HashMap::new())
    }
}

impl SlaTargets {
    /// `first_response_ms` for every property but those of `by_property`.
    pub fn new(first_response_ms: i64, by_property: HashMap<String, i64>) -> SlaTargets {
        SlaTargets {
            first_response_ms,
            by_property,
        }
    }

    /// The first-response target of `property`.
    pub fn first_response_ms(&self, property: &str) -> i64 {
        self.by_property
            .get(property)
            .copied()
            .unwrap_or(self.first_response_ms)
    }
}

/// `HH:MM-HH:MM` as minutes after midnight: two digits each, `24:00` only as the end,
/// the end after the start.
fn parse_interval(text: &str) -> Result<(i64, i64), String> {
    let bad = || format!("{text:?} is not an interval HH:MM-HH:MM");
    let (start, end) = text.split_once('-').ok_or_else(bad)?;
    let minutes = |t: &str| -> Option<i64> {
        let b = t.as_bytes();
        if b.len() != 5
            || b[2] != b':'
            || !t[..2]
                .bytes()
                .chain(t[3..].bytes())
                .all(|c| c.is_ascii_digit())
        {
            return None;
        }
        let (h, m): (i64, i64) = (t[..2].parse().ok()?, t[3..].parse().ok()?);
        (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
    };
    let (start, end) = (
        minutes(start).ok_or_else(bad)?,
        minutes(end).ok_or_else(bad)?,
    );
    if start == 24 * 60 {
        return Err(format!("{text:?}: 24:00 is only an end"));
    }
    if end <= start {
        return Err(format!("{text:?}: the end must be after the start"));
    }
    Ok((start, end))
}

fn show((start, end): (i64, i64)) -> String {
    format!(
        "{:02}:{:02}-{:02}:{:02}",
        start / 60,
        start % 60,
        end / 60,
        end % 60
    )
}

/// The local date `day` days after 1970-01-01.
fn date_of(day: i64) -> NaiveDate {
    NaiveDate::default() + chrono::Duration::days(day)
}

/// The zone's offset from UTC at `instant`, in milliseconds.
fn offset_ms(tz: Tz, instant: i64) -> i64 {
    let utc = DateTime::from_timestamp_millis(instant).unwrap_or_default();
    i64::from(
        tz.offset_from_utc_datetime(&utc.naive_utc())
            .fix()
            .local_minus_utc(),
    ) * 1000
}

/// The first instant in `(from, to]` whose offset is not `offset` (`to` when none):
/// stepping a day at a time, then halving the step where the offset changed. Zones
/// change their offset at most once a day.
fn next_offset_change(tz: Tz, from: i64, to: i64, offset: i64) -> i64 {
    let mut known = from;
    loop {
        let probe = (known + DAY_MS).min(to);
        if offset_ms(tz, probe) == offset {
            if probe == to {
                return to;
            }
            known = probe;
            continue;
        }
        // The offset is `offset` at `known`, another at `probe`: the change is in
        // `(known, probe]`.
        let (mut lo, mut hi) = (known, probe);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if offset_ms(tz, mid) == offset {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        return hi;
    }
}

#[cfg(test)]
mod tests;
