use chrono::{NaiveDate, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;

use super::*;

/// [`Schedule::parse`] of string slices.
fn parse(days: &[(&str, &[&str])], holidays: &[&str]) -> Result<Schedule, ScheduleError> {
    let owned: Vec<(&str, Vec<String>)> = days
        .iter()
        .map(|(d, i)| (*d, i.iter().map(|s| (*s).to_owned()).collect()))
        .collect();
    let days: Vec<(&str, &[String])> = owned.iter().map(|(d, i)| (*d, i.as_slice())).collect();
    let holidays: Vec<String> = holidays.iter().map(|s| (*s).to_owned()).collect();
    Schedule::parse(&days, &holidays)
}

fn schedule(days: &[(&str, &[&str])], holidays: &[&str]) -> Schedule {
    parse(days, holidays).unwrap()
}

fn local_ms(tz: Tz, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
    tz.with_ymd_and_hms(y, mo, d, h, mi, 0)
        .earliest()
        .unwrap()
        .timestamp_millis()
}

const HOUR: i64 = 3_600_000;
const EVERY_DAY: [&str; 7] = WEEKDAYS;

/// The contract's own examples: a 23-hour day's 00:00–24:00 is 23 hours, a stretch in
/// the repeated hour counts twice, a holiday is closed, an unnamed weekday is closed
/// once any is named, and no weekday at all is open around the clock.
#[test]
fn dst_days_holidays_and_unnamed_weekdays() {
    let paris = chrono_tz::Europe::Paris;
    let all_day: Vec<(&str, &[&str])> = EVERY_DAY
        .iter()
        .map(|d| (*d, &["00:00-24:00"][..]))
        .collect();
    let around_the_clock = schedule(&all_day, &[]);
    let spring = local_ms(paris, 2026, 3, 29, 0, 0);
    let next = local_ms(paris, 2026, 3, 30, 0, 0);
    assert_eq!(around_the_clock.business_ms(paris, spring, next), 23 * HOUR);

    let night: Vec<(&str, &[&str])> = EVERY_DAY
        .iter()
        .map(|d| (*d, &["02:00-03:00"][..]))
        .collect();
    let night = schedule(&night, &[]);
    let autumn = local_ms(paris, 2026, 10, 25, 0, 0);
    let after = local_ms(paris, 2026, 10, 26, 0, 0);
    assert_eq!(after - autumn, 25 * HOUR);
    assert_eq!(night.business_ms(paris, autumn, after), 2 * HOUR);
    // On the spring day the hour 02:00–03:00 does not exist.
    assert_eq!(night.business_ms(paris, spring, next), 0);

    let weekdays = schedule(&[("mon", &["08:00-12:00", "13:00-20:00"])], &["2026-11-30"]);
    let monday = local_ms(paris, 2026, 11, 23, 0, 0);
    let tuesday = local_ms(paris, 2026, 11, 24, 0, 0);
    assert_eq!(weekdays.business_ms(paris, monday, tuesday), 11 * HOUR);
    assert_eq!(weekdays.business_ms(paris, tuesday, tuesday + 24 * HOUR), 0);
    let holiday = local_ms(paris, 2026, 11, 30, 0, 0);
    assert_eq!(weekdays.business_ms(paris, holiday, holiday + 24 * HOUR), 0);
    // An interval from Monday 11:30 to 13:30: half an hour before the break, half
    // an hour after it.
    let from = local_ms(paris, 2026, 11, 23, 11, 30);
    let to = local_ms(paris, 2026, 11, 23, 13, 30);
    assert_eq!(weekdays.business_ms(paris, from, to), HOUR);

    let always = Schedule::always_open();
    assert_eq!(always.business_ms(paris, spring, next), 23 * HOUR);
    let with_holiday = schedule(&[], &["2026-03-29"]);
    assert_eq!(with_holiday.business_ms(paris, spring, next + HOUR), HOUR);
    assert_eq!(always.business_ms(paris, next, spring), 0);
}

#[test]
fn bad_schedules_are_refused_naming_the_part() {
    let refused = |days: &[(&str, &[&str])], holidays: &[&str]| parse(days, holidays).unwrap_err();
    for (interval, says) in [
        ("08:00-12:00x", "not an interval"),
        ("8:00-12:00", "not an interval"),
        ("08:00-25:00", "not an interval"),
        ("08:60-12:00", "not an interval"),
        ("24:00-24:00", "only an end"),
        ("12:00-08:00", "after the start"),
        ("12:00-12:00", "after the start"),
        ("24:30-23:00", "not an interval"),
    ] {
        let err = refused(&[("tue", &[interval])], &[]);
        assert_eq!(err.part, "tue", "{interval}");
        assert!(err.message.contains(says), "{interval}: {err}");
    }
    let err = refused(&[("wed", &["13:00-14:00", "08:00-13:30"])], &[]);
    assert_eq!(
        (err.part.as_str(), err.message.as_str()),
        ("wed", "08:00-13:30 and 13:00-14:00 overlap")
    );
    // Half-open: touching intervals do not overlap.
    schedule(&[("wed", &["08:00-12:00", "12:00-14:00"])], &[]);
    assert_eq!(refused(&[("Mon", &[])], &[]).part, "Mon");
    for holiday in ["2026-13-01", "25/12/2026", "2026-12-5"] {
        assert_eq!(refused(&[], &[holiday]).part, "holidays", "{holiday}");
    }
}

/// The brute-force reference: minute by minute, the local wall clock read with
/// chrono-tz, open when the minute is inside an interval of its local date.
fn brute_force(
    tz: Tz,
    week: &Option<[Vec<(i64, i64)>; 7]>,
    holidays: &[NaiveDate],
    a: i64,
    b: i64,
) -> i64 {
    let mut open = 0;
    let mut t = a;
    while t < b {
        let local = Utc
            .timestamp_millis_opt(t)
            .unwrap()
            .with_timezone(&tz)
            .naive_local();
        let minute = i64::from(local.hour() * 60 + local.minute());
        let today = match week {
            _ if holidays.contains(&local.date()) => false,
            None => true,
            Some(week) => week[local.date().weekday().num_days_from_monday() as usize]
                .iter()
                .any(|(s, e)| *s <= minute && minute < *e),
        };
        if today {
            open += 60_000;
        }
        t += 60_000;
    }
    open
}

/// Random weekly schedules: some weekdays named, each with up to three intervals
/// drawn as sorted distinct minutes of the day.
fn week() -> impl Strategy<Value = Option<[Vec<(i64, i64)>; 7]>> {
    let day = prop::option::weighted(
        0.75,
        prop::collection::btree_set(0i64..=1440, 0..=6).prop_map(|bounds| {
            let bounds: Vec<i64> = bounds.into_iter().collect();
            bounds
                .chunks_exact(2)
                .map(|p| (p[0], p[1]))
                .collect::<Vec<_>>()
        }),
    );
    prop::option::weighted(0.85, prop::array::uniform7(day)).prop_map(|days| {
        days.and_then(|named| {
            let mut week: [Vec<(i64, i64)>; 7] = Default::default();
            let mut any = false;
            for (i, intervals) in named.into_iter().enumerate() {
                if let Some(intervals) = intervals {
                    any = true;
                    week[i] = intervals;
                }
            }
            // A week that names no weekday is open around the clock: drawn as None.
            if any { Some(week) } else { None }
        })
    })
}

/// DST changes of 2026: Paris and New York (an hour), Lord Howe (half an hour), and
/// Kathmandu (+05:45, none).
fn around_a_change() -> impl Strategy<Value = (Tz, i64)> {
    let changes = [
        (chrono_tz::Europe::Paris, (2026, 3, 29)),
        (chrono_tz::Europe::Paris, (2026, 10, 25)),
        (chrono_tz::America::New_York, (2026, 3, 8)),
        (chrono_tz::America::New_York, (2026, 11, 1)),
        (chrono_tz::Asia::Kathmandu, (2026, 6, 1)),
        (chrono_tz::Australia::Lord_Howe, (2026, 4, 5)),
        (chrono_tz::Australia::Lord_Howe, (2026, 10, 4)),
    ];
    (0..changes.len(), -3 * 1440i64..2 * 1440).prop_map(move |(i, minutes)| {
        let (tz, (y, m, d)) = changes[i];
        let midnight = Utc
            .with_ymd_and_hms(y, m, d, 0, 0, 0)
            .unwrap()
            .timestamp_millis();
        (tz, midnight + minutes * 60_000)
    })
}

fn config_form(week: &Option<[Vec<(i64, i64)>; 7]>) -> Vec<(&'static str, Vec<String>)> {
    let Some(week) = week else {
        return Vec::new();
    };
    WEEKDAYS
        .iter()
        .zip(week)
        .map(|(day, intervals)| (*day, intervals.iter().map(|i| show(*i)).collect()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(160))]

    /// Business time equals the minute-by-minute reference over random schedules,
    /// holidays, and intervals of up to three days around DST changes.
    #[test]
    fn business_time_is_the_open_minutes_of_the_local_wall_clock(
        week in week(),
        (tz, a) in around_a_change(),
        length in 0i64..=3 * 1440,
        holiday_days in prop::collection::vec(-1i64..4, 0..3),
    ) {
        let b = a + length * 60_000;
        let first = Utc.timestamp_millis_opt(a).unwrap().with_timezone(&tz).date_naive();
        let holidays: Vec<NaiveDate> = holiday_days
            .iter()
            .map(|d| first + chrono::Duration::days(*d))
            .collect();
        let days = config_form(&week);
        let days: Vec<(&str, &[String])> = days.iter().map(|(d, i)| (*d, i.as_slice())).collect();
        let holiday_text: Vec<String> = holidays.iter().map(|d| d.to_string()).collect();
        let schedule = Schedule::parse(&days, &holiday_text).unwrap();
        prop_assert_eq!(
            schedule.business_ms(tz, a, b),
            brute_force(tz, &week, &holidays, a, b)
        );
    }
}
