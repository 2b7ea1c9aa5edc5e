use super::*;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

#[test]
fn hours_are_utc_whatever_the_zone() {
    let b = Granularity::Hour.bucket_of(chrono_tz::Asia::Kolkata, utc("2026-11-24T10:59:59.999Z"));
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
fn wall_clock_times_in_a_gap_move_forward_and_in_an_overlap_take_the_earlier() {
    let paris = chrono_tz::Europe::Paris;
    // 2026-03-29 02:30 does not exist in Paris (02:00 → 03:00).
    let t = NaiveTime::from_hms_opt(2, 30, 0).unwrap();
    assert_eq!(
        local_instant(paris, d("2026-03-29"), t),
        utc("2026-03-29T01:00:00Z"),
        "03:00 at +02:00"
    );
    // 2026-10-25 02:30 happens twice; the first is at +02:00.
    assert_eq!(
        local_instant(paris, d("2026-10-25"), t),
        utc("2026-10-25T00:30:00Z")
    );
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
    let m = Granularity::Month.bucket_of(chrono_tz::Europe::Lisbon, utc("2026-03-31T23:30:00Z"));
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

#[test]
fn key_ranges_hold_every_period_overlapping_the_range() {
    let lisbon = chrono_tz::Europe::Lisbon;
    // Hours: the hour holding the end is in when the end is not on the hour.
    assert_eq!(
        Granularity::Hour.key_range(
            lisbon,
            utc("2026-11-24T10:15:00Z"),
            utc("2026-11-24T12:00:00Z")
        ),
        (
            "2026-11-24T10:00:00Z".to_owned(),
            "2026-11-24T12:00:00Z".to_owned()
        )
    );
    assert_eq!(
        Granularity::Hour
            .key_range(
                lisbon,
                utc("2026-11-24T10:00:00Z"),
                utc("2026-11-24T12:00:00.001Z")
            )
            .1,
        "2026-11-24T13:00:00Z"
    );
    // Weeks: from the Monday of the start's week to the day after the end's date.
    let ny = chrono_tz::America::New_York;
    assert_eq!(
        Granularity::Week.key_range(ny, utc("2026-11-26T12:00:00Z"), utc("2026-12-01T05:00:00Z")),
        ("2026-11-23".to_owned(), "2026-12-01".to_owned()),
        "the end is local midnight in New York, so that day is out"
    );
    assert_eq!(
        Granularity::Month
            .key_range(ny, utc("2026-11-26T12:00:00Z"), utc("2026-12-01T06:00:00Z"))
            .0,
        "2026-11-01"
    );
}

#[test]
fn the_period_before_today() {
    assert_eq!(
        Granularity::Day.previous_period(d("2026-11-25")),
        (d("2026-11-24"), d("2026-11-25"))
    );
    assert_eq!(
        Granularity::Week.previous_period(d("2026-11-25")),
        (d("2026-11-16"), d("2026-11-23"))
    );
    assert_eq!(
        Granularity::Week.previous_period(d("2026-11-23")),
        (d("2026-11-16"), d("2026-11-23"))
    );
    assert_eq!(
        Granularity::Month.previous_period(d("2026-11-25")),
        (d("2026-10-01"), d("2026-11-01"))
    );
    assert_eq!(
        Granularity::Month.previous_period(d("2026-01-01")),
        (d("2025-12-01"), d("2026-01-01"))
    );
}

#[test]
fn cutoffs_take_the_form_of_each_period_column() {
    let t = utc("2026-11-24T10:15:30.5Z");
    assert_eq!(Granularity::Hour.cutoff_key(t), "2026-11-24T10:00:00Z");
    assert_eq!(Granularity::Day.cutoff_key(t), "2026-11-24");
    assert_eq!(Granularity::Week.cutoff_key(t), "2026-11-24");
    assert_eq!(Granularity::Month.cutoff_key(t), "2026-11");
}

#[test]
fn a_bare_request_date_is_midnight_in_the_zone_given() {
    let ny = chrono_tz::America::New_York;
    assert_eq!(
        parse_request_instant("2026-11-24", ny, "startDate").unwrap(),
        utc("2026-11-24T05:00:00Z")
    );
    assert_eq!(
        parse_request_instant("2026-11-24T10:00:00+01:00", ny, "startDate").unwrap(),
        utc("2026-11-24T09:00:00Z")
    );
    let err = parse_request_instant("yesterday", ny, "startDate").unwrap_err();
    assert_eq!(
        err.to_string(),
        "startDate \"yesterday\" is not a date (YYYY-MM-DD) or an RFC 3339 time"
    );
    assert_eq!(
        parse_request_date("2026-11-24T23:00:00Z", "end").unwrap(),
        d("2026-11-24")
    );
    assert!(parse_request_date("24/11/2026", "end").is_err());
}

#[test]
fn zones_fall_back_to_the_default() {
    let zones = Zones::new(
        chrono_tz::America::New_York,
        [("prop_lisbon".to_owned(), chrono_tz::Europe::Lisbon)].into(),
    );
    assert_eq!(zones.of("prop_lisbon"), chrono_tz::Europe::Lisbon);
    assert_eq!(zones.of("elsewhere"), chrono_tz::America::New_York);
    assert_eq!(zones.default_zone(), chrono_tz::America::New_York);
}

#[test]
fn granularity_names_round_trip() {
    for g in Granularity::ALL {
        assert_eq!(Granularity::parse(g.as_str()), Some(g));
    }
    assert_eq!(Granularity::parse("year"), None);
}
