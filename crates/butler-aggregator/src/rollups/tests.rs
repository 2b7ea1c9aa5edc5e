//! Hand-checked cases for each definition; the end-to-end tests compare whole tables
//! with an independent reference.

use super::*;
use butler_events::EventType;

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
    let r = &conversation_metrics("p", "d", &events, &HashMap::new())[0];
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
    let r = &conversation_metrics("p", "d", &events, &starts)[0];
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
    let r = &conversation_metrics("p", "d", &events, &HashMap::new())[0];
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
    assert!(
        conversation_metrics("p", "d", std::slice::from_ref(&lonely), &HashMap::new()).is_empty()
    );
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
