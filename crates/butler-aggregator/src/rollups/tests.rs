//! Hand-checked cases for each definition; the end-to-end tests compare whole tables
//! with an independent reference.

use super::*;
use butler_events::EventType;

/// `conversation_metrics` of property `p`, day `d`, in UTC, always open, with the
/// default first-response target.
fn conversations(
    events: &[AggEvent],
    earliest: &HashMap<String, i64>,
) -> Vec<butler_storage::tables::ConversationMetricsRow> {
    conversation_metrics(&crate::jobs::BucketInput {
        property: "p",
        key: "d",
        events,
        earliest,
        online_at_start: &std::collections::BTreeSet::new(),
        start_ms: 0,
        end_ms: 0,
        now_ms: 0,
        zone: chrono_tz::UTC,
        rules: &butler_events::business::BusinessRules::default(),
    })
}

fn ev(id: &str, t: EventType, ts: i64) -> AggEvent {
    AggEvent {
        id: id.into(),
        event_type: t,
        timestamp_ms: ts,
        channel: Some("sms".into()),
        staff_id: None,
        conversation_id: None,
        value: None,
        duration_ms: None,
        intent: None,
        task_id: None,
        status: None,
    }
}

#[test]
fn message_counts_by_channel_and_direction_with_unknown_channel() {
    let mut a = ev("a", EventType::MessageReceived, 0);
    a.channel = None;
    let rows = message_counts(
        "p",
        "2026-11-24T10:00:00Z",
        &[
            a,
            ev("b", EventType::MessageReceived, 1),
            ev("c", EventType::MessageSent, 2),
            ev("d", EventType::MessageSent, 3),
            ev("e", EventType::MessageDelivered, 4),
        ],
    );
    let got: Vec<_> = rows
        .iter()
        .map(|r| (r.channel.as_str(), r.direction.as_str(), r.count))
        .collect();
    assert_eq!(
        got,
        [
            ("sms", "inbound", 1),
            ("sms", "outbound", 2),
            ("unknown", "inbound", 1)
        ]
    );
}

#[test]
fn response_times_round_half_away_and_take_nearest_ranks() {
    let events: Vec<_> = [1, 2]
        .iter()
        .map(|ms| AggEvent {
            duration_ms: Some(*ms),
            ..ev(&ms.to_string(), EventType::ResponseTimeRecorded, 0)
        })
        .collect();
    let r = &response_times("p", "k", &events)[0];
    assert_eq!(
        (r.count, r.avg_ms, r.p50_ms, r.p95_ms, r.p99_ms, r.max_ms),
        (2, Some(2), Some(1), Some(2), Some(2), Some(2))
    );
}

#[test]
fn first_response_is_the_earliest_per_conversation_and_ties_break_by_id() {
    let resp = |id: &str, conv: Option<&str>, ts: i64, ms: i64| AggEvent {
        conversation_id: conv.map(String::from),
        duration_ms: Some(ms),
        ..ev(id, EventType::ResponseTimeRecorded, ts)
    };
    let events = [
        resp("b", Some("c1"), 100, 5000),
        resp("a", Some("c1"), 100, 1000), // same time, smaller id: wins
        resp("z", Some("c1"), 50_000, 9000),
        resp("x", None, 10, 3000), // stands for itself
    ];
    let r = &conversations(&events, &HashMap::new())[0];
    assert_eq!(r.avg_first_response_ms, Some(2000));
    assert_eq!(r.p50_first_response_ms, Some(1000));
    assert_eq!(r.p95_first_response_ms, Some(3000));
}

#[test]
fn resolution_uses_duration_else_the_earliest_start() {
    let resolved = |id: &str, conv: &str, ts: i64, ms: Option<i64>| AggEvent {
        conversation_id: Some(conv.into()),
        duration_ms: ms,
        ..ev(id, EventType::ConversationResolved, ts)
    };
    let starts = HashMap::from([("c2".to_owned(), 0), ("c3".to_owned(), 10_000_000)]);
    let events = [
        resolved("r1", "c1", 1_000, Some(90_000)), // 1.5 min from its own duration
        resolved("r2", "c2", 150_000, None),       // 2.5 min from its start
        resolved("r3", "c3", 5_000, None),         // start after it: left out
        resolved("r4", "c4", 5_000, None),         // no start at all: left out
    ];
    let r = &conversations(&events, &starts)[0];
    assert_eq!(r.conversations_resolved, 4);
    assert_eq!(r.avg_resolution_minutes, Some(2)); // 120000 ms = 2 min
    assert_eq!(r.p50_resolution_minutes, Some(2)); // 90000 ms → 1.5 → 2 (half away)
    assert_eq!(r.p95_resolution_minutes, Some(3)); // 150000 ms → 2.5 → 3
}

#[test]
fn ai_counts_are_distinct_conversations() {
    let with = |id: &str, t: EventType, conv: Option<&str>| AggEvent {
        conversation_id: conv.map(String::from),
        ..ev(id, t, 0)
    };
    let events = [
        with("1", EventType::ResponseAiGenerated, Some("c1")),
        with("2", EventType::ResponseAiGenerated, Some("c1")),
        with("3", EventType::ResponseAiGenerated, Some("c2")),
        with("4", EventType::ResponseAiGenerated, None),
        with("5", EventType::ConversationEscalated, Some("c2")),
        with("6", EventType::ConversationEscalated, Some("c9")),
    ];
    let r = &conversations(&events, &HashMap::new())[0];
    assert_eq!(
        (
            r.ai_handled_count,
            r.ai_escalated_count,
            r.conversations_escalated
        ),
        (2, 1, 2)
    );
}

#[test]
fn a_bucket_with_nothing_counted_has_no_row() {
    let lonely = ev("1", EventType::ResponseAiGenerated, 0); // no conversation
    assert!(conversations(std::slice::from_ref(&lonely), &HashMap::new()).is_empty());
    assert!(staff_performance("p", "d", std::slice::from_ref(&lonely)).is_empty());
    assert!(intent_distribution("p", "d", std::slice::from_ref(&lonely)).is_empty());
    assert!(satisfaction("p", "w", std::slice::from_ref(&lonely)).is_empty());
    assert!(monthly_summary("p", "m", &[lonely]).is_empty());
}

#[test]
fn nps_and_rating_counts() {
    let rating = |id: &str, v: f64| AggEvent {
        value: Some(v),
        ..ev(id, EventType::SatisfactionRatingReceived, 0)
    };
    let events = [
        rating("a", 5.0),
        rating("b", 5.0),
        rating("c", 4.0),
        rating("d", 3.0),
        rating("e", 1.0),
        ev("s", EventType::SatisfactionSurveySent, 0),
    ];
    let r = &satisfaction("p", "w", &events)[0];
    assert_eq!(
        [r.rating_1, r.rating_2, r.rating_3, r.rating_4, r.rating_5],
        [1, 0, 1, 1, 2]
    );
    assert_eq!(r.responses_received, 5);
    assert_eq!(r.surveys_sent, 1);
    assert_eq!(r.avg_rating, Some(3.6));
    assert_eq!(r.nps_score, Some(0.0));
}

#[test]
fn monthly_summary_json_columns() {
    let intent = |id: &str, name: &str| AggEvent {
        intent: Some(name.into()),
        ..ev(id, EventType::IntentClassified, 0)
    };
    let mut events: Vec<AggEvent> = ["spa", "spa", "bar", "bar", "taxi", "a1", "a2", "a3"]
        .iter()
        .enumerate()
        .map(|(i, name)| intent(&i.to_string(), name))
        .collect();
    let mut started = ev("s1", EventType::ConversationStarted, 0);
    started.channel = None;
    events.push(started);
    events.push(ev("s2", EventType::ConversationStarted, 0));
    let r = &monthly_summary("p", "2026-11", &events)[0];
    assert_eq!(
        r.top_intents.0,
        r#"[{"intent":"bar","count":2},{"intent":"spa","count":2},{"intent":"a1","count":1},{"intent":"a2","count":1},{"intent":"a3","count":1}]"#
    );
    assert_eq!(r.channel_breakdown.0, r#"{"sms":1,"unknown":1}"#);
    assert_eq!(r.total_conversations, 2);
    assert_eq!(r.ai_resolution_rate, None);
}

/// §8: a channel's sends, deliveries, reads and failures, each counted on its own
/// day (a delivery without a send counts); a null channel groups as `unknown`; a day
/// with none of them has no row.
#[test]
fn channel_delivery_counts_each_event_of_the_day() {
    let on = |id: &str, t: EventType, channel: Option<&str>| {
        let mut e = ev(id, t, 0);
        e.channel = channel.map(str::to_owned);
        e
    };
    let rows = channel_delivery(
        "p",
        "2026-11-24",
        &[
            on("1", EventType::MessageSent, Some("whatsapp")),
            on("2", EventType::MessageSent, Some("whatsapp")),
            on("3", EventType::MessageSent, Some("whatsapp")),
            on("4", EventType::MessageDelivered, Some("whatsapp")),
            on("5", EventType::MessageDelivered, Some("whatsapp")),
            on("6", EventType::MessageRead, Some("whatsapp")),
            on("7", EventType::MessageFailed, Some("whatsapp")),
            on("8", EventType::MessageDelivered, Some("sms")),
            on("9", EventType::MessageFailed, None),
            on("10", EventType::MessageReceived, Some("email")),
        ],
    );
    let got: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r.period_date.as_str(),
                r.channel.as_str(),
                r.sent,
                r.delivered,
                r.read,
                r.failed,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("2026-11-24", "sms", 0, 1, 0, 0),
            ("2026-11-24", "unknown", 0, 0, 0, 1),
            ("2026-11-24", "whatsapp", 3, 2, 1, 1),
        ]
    );
    let received = on("r", EventType::MessageReceived, Some("sms"));
    assert!(channel_delivery("p", "d", &[received]).is_empty());
}

/// §8's knowledge gaps: low-confidence and feedback events count toward the intent
/// their string `metadata.intent` names, and make its row on a day with no
/// classification; one without a string intent counts nowhere.
#[test]
fn intent_gaps_count_by_intent_and_make_rows_of_their_own() {
    let with_intent = |id: &str, t: EventType, intent: Option<&str>| {
        let mut e = ev(id, t, 0);
        e.intent = intent.map(str::to_owned);
        e
    };
    let rows = intent_distribution(
        "p",
        "2026-11-24",
        &[
            with_intent("1", EventType::IntentClassified, Some("spa")),
            with_intent("2", EventType::IntentConfidenceLow, Some("spa")),
            with_intent("3", EventType::IntentConfidenceLow, Some("spa")),
            with_intent("4", EventType::IntentConfidenceLow, Some("parking")),
            with_intent(
                "5",
                EventType::SatisfactionFeedbackReceived,
                Some("parking"),
            ),
            with_intent("6", EventType::SatisfactionFeedbackReceived, None),
            with_intent("7", EventType::IntentConfidenceLow, None),
        ],
    );
    let got: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r.intent.as_str(),
                r.count,
                r.low_confidence_count,
                r.feedback_count,
            )
        })
        .collect();
    assert_eq!(got, [("parking", 0, 1, 1), ("spa", 1, 2, 0)]);
}

/// §8's task performance: each count of the day; a completion timed from its task's
/// earliest creation (not its own durationMs), untimed without a creation at or
/// before it; minutes rounded after the percentile.
#[test]
fn task_completions_are_timed_from_the_earliest_creation() {
    let task = |id: &str, t: EventType, ts: i64, task: Option<&str>| AggEvent {
        task_id: task.map(str::to_owned),
        duration_ms: Some(1),
        ..ev(id, t, ts)
    };
    let minute = 60_000;
    let earliest: HashMap<String, i64> = [
        ("t1".to_owned(), 0),
        ("t2".to_owned(), 10 * minute),
        ("t3".to_owned(), 500 * minute), // created after its completion
    ]
    .into();
    let rows = task_performance(
        "p",
        "2026-11-24",
        &[
            task("1", EventType::TaskCreated, 0, Some("t1")),
            task("2", EventType::TaskAssigned, minute, Some("t1")),
            task(
                "3",
                EventType::TaskCompleted,
                90 * minute + 29_999,
                Some("t1"),
            ),
            task(
                "4",
                EventType::TaskCompleted,
                40 * minute + 30_000,
                Some("t2"),
            ),
            task("5", EventType::TaskCompleted, 100 * minute, Some("t3")),
            task("6", EventType::TaskCompleted, 100 * minute, None),
            task("7", EventType::TaskSlaBreached, 0, Some("t1")),
            task("8", EventType::TaskSlaBreached, 0, Some("t2")),
            task("9", EventType::TaskCreated, 0, None),
        ],
        &earliest,
    );
    // t1: 90.4998 min, t2: 30.5 min; the mean 60.49998 → 60; p50 30.5 → 31 (half
    // away from zero), p95 90.4998 → 90.
    let r = &rows[0];
    assert_eq!(
        (
            r.tasks_created,
            r.tasks_assigned,
            r.tasks_completed,
            r.sla_breached,
            r.completions_timed,
            r.avg_completion_minutes,
            r.p50_completion_minutes,
            r.p95_completion_minutes,
        ),
        (2, 1, 4, 2, 2, Some(60), Some(31), Some(90))
    );
    assert_eq!(rows.len(), 1);
    let only_other = ev("x", EventType::StaffLogin, 0);
    assert!(task_performance("p", "d", &[only_other], &HashMap::new()).is_empty());
}

/// §8's conversation columns, hand-counted over one Tuesday in Paris with opening
/// hours Monday 08:00–18:00 and Tuesday 08:00–12:00, 13:00–18:00: first responses and
/// resolutions in business time (one interval open across midnight, one resolution
/// timed from the previous day's start), the SLA met on business time where the
/// clock time would miss it, the assistant's resolutions, and every conversation any
/// event names.
#[test]
fn conversation_business_time_sla_and_automation() {
    use chrono::TimeZone;
    let paris = chrono_tz::Europe::Paris;
    let at = |day: u32, h: u32, m: u32| {
        paris
            .with_ymd_and_hms(2026, 11, day, h, m, 0)
            .unwrap()
            .timestamp_millis()
    };
    let minute = 60_000;
    let on = |id: &str, t: EventType, ts: i64, conv: Option<&str>, ms: Option<i64>| AggEvent {
        conversation_id: conv.map(str::to_owned),
        duration_ms: ms,
        ..ev(id, t, ts)
    };
    use EventType as E;
    let events = [
        on(
            "01",
            E::ResponseTimeRecorded,
            at(24, 9, 10),
            Some("c1"),
            Some(20 * minute),
        ),
        on(
            "02",
            E::ResponseTimeRecorded,
            at(24, 12, 3),
            Some("c2"),
            Some(6 * minute),
        ),
        on(
            "03",
            E::ResponseTimeRecorded,
            at(24, 0, 10),
            Some("c3"),
            Some(30 * minute),
        ),
        on(
            "04",
            E::ResponseTimeRecorded,
            at(24, 14, 0),
            Some("c2"),
            Some(minute),
        ),
        on(
            "05",
            E::ResponseTimeRecorded,
            at(24, 13, 30),
            None,
            Some(2 * minute),
        ),
        on(
            "06",
            E::ConversationResolved,
            at(24, 17, 0),
            Some("c1"),
            Some(480 * minute),
        ),
        on(
            "07",
            E::ConversationResolved,
            at(24, 10, 0),
            Some("c4"),
            None,
        ),
        on(
            "08",
            E::ConversationResolved,
            at(24, 11, 0),
            Some("c5"),
            None,
        ),
        on("09", E::ResponseAiGenerated, at(24, 9, 0), Some("c1"), None),
        on("10", E::ResponseAiGenerated, at(24, 9, 0), Some("c2"), None),
        on("11", E::ResponseAiGenerated, at(24, 9, 0), Some("c4"), None),
        on(
            "12",
            E::ConversationEscalated,
            at(24, 9, 20),
            Some("c2"),
            None,
        ),
        on(
            "13",
            E::ConversationEscalated,
            at(24, 9, 30),
            Some("c4"),
            None,
        ),
        on("14", E::MessageReceived, at(24, 15, 0), Some("c6"), None),
    ];
    let earliest: HashMap<String, i64> = [("c4".to_owned(), at(23, 17, 0))].into();
    let week = butler_events::business::Schedule::parse(
        &[
            ("mon", &["08:00-18:00".to_owned()][..]),
            (
                "tue",
                &["08:00-12:00".to_owned(), "13:00-18:00".to_owned()][..],
            ),
        ],
        &[],
    )
    .unwrap();
    let rules = |target: i64| butler_events::business::BusinessRules {
        hours: butler_events::business::BusinessHours::new(week.clone(), HashMap::new()),
        sla: butler_events::business::SlaTargets::new(target, HashMap::new()),
    };
    let row = |target: i64| {
        let rows = conversation_metrics(&crate::jobs::BucketInput {
            property: "p",
            key: "2026-11-24",
            events: &events,
            earliest: &earliest,
            online_at_start: &std::collections::BTreeSet::new(),
            start_ms: 0,
            end_ms: 0,
            now_ms: 0,
            zone: paris,
            rules: &rules(target),
        });
        assert_eq!(rows.len(), 1);
        rows.into_iter().next().unwrap()
    };
    let r = row(300_000);
    // Business time of the first responses: c1 20 min, c2 3 of its 6 min (closed at
    // noon), c3 none (Monday 23:40 to Tuesday 00:10), the one without a conversation
    // 2 min; c2's later response is not a first.
    assert_eq!(r.first_responses, 4);
    assert_eq!(r.avg_first_response_business_ms, Some(375_000));
    assert_eq!(r.p50_first_response_business_ms, Some(120_000));
    assert_eq!(r.p95_first_response_business_ms, Some(1_200_000));
    assert_eq!(r.first_response_sla_met, 3);
    // Clock time, as before: 6, 2, 30 and 20 minutes.
    assert_eq!(r.avg_first_response_ms, Some(870_000));
    // c1 09:00–17:00 is 7 business hours; c4 from Monday 17:00 to Tuesday 10:00 is 3;
    // c5 has no start.
    assert_eq!(r.resolutions_timed, 2);
    assert_eq!(r.avg_resolution_business_minutes, Some(300));
    assert_eq!(
        (
            r.ai_handled_count,
            r.ai_escalated_count,
            r.ai_resolved_count
        ),
        (3, 2, 1)
    );
    assert_eq!(r.conversations_active, 6);
    // A property's own target: only c3's zero meets 100 000 ms; a target equal to a
    // response's business time is met by it.
    assert_eq!(row(100_000).first_response_sla_met, 1);
    assert_eq!(row(120_000).first_response_sla_met, 2);
    assert_eq!(row(119_999).first_response_sla_met, 1);
}

/// §8's staff presence, hand-counted in Paris: a shift from Monday evening to
/// Wednesday morning gives Tuesday its whole day; a login followed by `available` is
/// one session, `busy` ends it; a logout at local midnight gives that day nothing; the
/// 25-hour day counts 25 hours; an open day counts up to now.
#[test]
fn staff_presence_is_online_time_within_each_local_day() {
    use chrono::TimeZone;
    let paris = chrono_tz::Europe::Paris;
    let at = |month: u32, day: u32, h: u32, m: u32| {
        paris
            .with_ymd_and_hms(2026, month, day, h, m, 0)
            .unwrap()
            .timestamp_millis()
    };
    let staff = |id: &str, t: EventType, ts: i64, who: &str, status: Option<&str>| AggEvent {
        staff_id: Some(who.to_owned()),
        status: status.map(str::to_owned),
        ..ev(id, t, ts)
    };
    let day = |month: u32,
               d: u32,
               events: &[AggEvent],
               online: &[&str],
               now: i64|
     -> Vec<(String, i64, i64)> {
        let online: std::collections::BTreeSet<String> =
            online.iter().map(|s| (*s).to_owned()).collect();
        let start = at(month, d, 0, 0);
        let next = paris
            .with_ymd_and_hms(2026, month, d, 12, 0, 0)
            .unwrap()
            .date_naive()
            .succ_opt()
            .unwrap();
        let end = paris
            .from_local_datetime(&next.and_hms_opt(0, 0, 0).unwrap())
            .unwrap()
            .timestamp_millis();
        staff_presence(&crate::jobs::BucketInput {
            property: "p",
            key: "d",
            events,
            earliest: &HashMap::new(),
            online_at_start: &online,
            start_ms: start,
            end_ms: end,
            now_ms: now,
            zone: paris,
            rules: &butler_events::business::BusinessRules::default(),
        })
        .into_iter()
        .map(|r| (r.staff_id, r.online_minutes, r.sessions))
        .collect()
    };
    let later = i64::MAX;
    use EventType as E;
    // Monday 2026-11-23: s1 logs in at 20:00 and becomes available (one session);
    // s2 logs in at 09:00, is busy from 09:30 to 10:00, available again.
    let monday = [
        staff("1", E::StaffLogin, at(11, 23, 20, 0), "s1", None),
        staff(
            "2",
            E::StaffStatusChanged,
            at(11, 23, 20, 5),
            "s1",
            Some("available"),
        ),
        staff("3", E::StaffLogin, at(11, 23, 9, 0), "s2", None),
        staff(
            "4",
            E::StaffStatusChanged,
            at(11, 23, 9, 30),
            "s2",
            Some("busy"),
        ),
        staff(
            "5",
            E::StaffStatusChanged,
            at(11, 23, 10, 0),
            "s2",
            Some("available"),
        ),
        staff("6", E::StaffLogout, at(11, 23, 17, 0), "s2", None),
    ];
    assert_eq!(
        day(11, 23, &monday, &[], later),
        [("s1".into(), 240, 1), ("s2".into(), 30 + 420, 2)]
    );
    // Tuesday: no event of s1's, online all day.
    assert_eq!(day(11, 24, &[], &["s1"], later), [("s1".into(), 1440, 0)]);
    // Wednesday: s1 logs out at 06:00; s3, online since before, logs out at 00:00.
    let wednesday = [
        staff("7", E::StaffLogout, at(11, 25, 6, 0), "s1", None),
        staff("8", E::StaffLogout, at(11, 25, 0, 0), "s3", None),
    ];
    assert_eq!(
        day(11, 25, &wednesday, &["s1", "s3"], later),
        [("s1".into(), 360, 0)]
    );
    // A logout of someone offline changes nothing; a second login while online is no
    // new session.
    let idle = [
        staff("9", E::StaffLogout, at(11, 26, 8, 0), "s4", None),
        staff("a", E::StaffLogin, at(11, 26, 9, 0), "s5", None),
        staff("b", E::StaffLogin, at(11, 26, 9, 30), "s5", None),
        staff("c", E::StaffLogout, at(11, 26, 10, 0), "s5", None),
    ];
    assert_eq!(day(11, 26, &idle, &[], later), [("s5".into(), 60, 1)]);
    // Sunday 2026-10-25 has 25 hours.
    assert_eq!(day(10, 25, &[], &["s1"], later), [("s1".into(), 1500, 0)]);
    // Rounded once per day: two sessions of 40 s are one minute, not two; 29 s none.
    let short = [
        staff("e", E::StaffLogin, at(11, 26, 9, 0), "s6", None),
        staff("f", E::StaffLogout, at(11, 26, 9, 0) + 40_000, "s6", None),
        staff("g", E::StaffLogin, at(11, 26, 10, 0), "s6", None),
        staff("h", E::StaffLogout, at(11, 26, 10, 0) + 40_000, "s6", None),
        staff("i", E::StaffLogin, at(11, 26, 11, 0), "s7", None),
        staff("j", E::StaffLogout, at(11, 26, 11, 0) + 29_000, "s7", None),
    ];
    assert_eq!(
        day(11, 26, &short, &[], later),
        [("s6".into(), 1, 2), ("s7".into(), 0, 1)]
    );
    // Today, at 14:30, for someone online since 08:00.
    let today = [staff("d", E::StaffLogin, at(11, 27, 8, 0), "s1", None)];
    assert_eq!(
        day(11, 27, &today, &[], at(11, 27, 14, 30)),
        [("s1".into(), 390, 1)]
    );
}
