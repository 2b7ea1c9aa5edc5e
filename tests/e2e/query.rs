//! The query endpoints over NATS against known data.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::aggregation::{config, dataset, publish_dataset};
use crate::helpers::{App, NatsServer, error_code, publish_all, request, wait_until};

const WAIT: Duration = Duration::from_secs(60);

async fn ask(client: &async_nats::Client, subject: &str, body: Value) -> (Option<String>, Value) {
    let reply = request(client, subject, body.to_string()).await;
    let code = error_code(&reply).map(str::to_owned);
    (code, serde_json::from_slice(&reply.payload).unwrap())
}

fn ev(t: &str, id: &str, at: &str, extra: Value) -> (String, Vec<u8>) {
    ev_of("p_dash", t, id, at, extra)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_compares_today_so_far_with_yesterday_like_for_like() {
    let nats = NatsServer::start();
    let app = App::start(
        &nats.url(),
        "retention:\n  raw_events: 36500\naggregation:\n  property_timezones: {p_dash: Europe/Lisbon}\n",
    );
    let js = nats.jetstream().await;
    // As of 2026-11-24 15:00 in Lisbon (UTC+0 in November).
    let today = |h: u32| format!("2026-11-24T{h:02}:00:00Z");
    let yesterday = |h: u32| format!("2026-11-23T{h:02}:00:00Z");
    let c = |id: &str| json!({"conversationId": id});
    let mut events = vec![
        ev("conversation.started", "d1", &today(9), c("c1")),
        ev("conversation.started", "d2", &today(9), c("c2")),
        ev("conversation.started", "d3", &today(10), c("c3")),
        ev("conversation.started", "d4", &today(10), c("c4")),
        ev("conversation.escalated", "d5", &today(11), c("c3")),
        ev("conversation.resolved", "d6", &today(12), c("c1")),
        ev("conversation.resolved", "d7", &today(12), c("c2")),
        ev(
            "response.time_recorded",
            "d8",
            &today(12),
            json!({"durationMs": 1000}),
        ),
        ev(
            "response.time_recorded",
            "d9",
            &today(13),
            json!({"durationMs": 3000}),
        ),
        ev(
            "satisfaction.rating_received",
            "d10",
            &today(13),
            json!({"value": 4}),
        ),
        ev(
            "satisfaction.rating_received",
            "d11",
            &today(14),
            json!({"value": 5}),
        ),
        // After "now": not today so far.
        ev("conversation.started", "d12", &today(16), json!({})),
        ev("message.received", "d13", &today(16), json!({})),
        // Yesterday before 15:00 counts; after it does not (like for like).
        ev("conversation.started", "y1", &yesterday(9), json!({})),
        ev("conversation.started", "y2", &yesterday(14), json!({})),
        ev(
            "response.time_recorded",
            "y3",
            &yesterday(10),
            json!({"durationMs": 4000}),
        ),
        ev(
            "satisfaction.rating_received",
            "y4",
            &yesterday(11),
            json!({"value": 3}),
        ),
        ev("conversation.started", "y5", &yesterday(16), json!({})),
        ev(
            "response.time_recorded",
            "y6",
            &yesterday(17),
            json!({"durationMs": 99000}),
        ),
        // Live state.
        ev("staff.login", "s1", &today(8), json!({"staffId": "s1"})),
        ev("staff.login", "s2", &today(8), json!({"staffId": "s2"})),
        ev("staff.logout", "s3", &today(9), json!({"staffId": "s2"})),
        ev(
            "staff.status_changed",
            "s4",
            &today(9),
            json!({"staffId": "s3", "metadata": {"status": "available"}}),
        ),
        ev(
            "staff.status_changed",
            "s5",
            &today(9),
            json!({"staffId": "s4", "metadata": {"status": "busy"}}),
        ),
        ev("task.created", "t1", &today(9), json!({"taskId": "t1"})),
        ev("task.created", "t2", &today(9), json!({"taskId": "t2"})),
        ev("task.completed", "t3", &today(10), json!({"taskId": "t2"})),
        ev("task.completed", "t4", &today(10), json!({"taskId": "t3"})),
    ];
    for i in 0..5 {
        events.push(ev(
            "message.received",
            &format!("r{i}"),
            &today(10 + i),
            json!({}),
        ));
    }
    for i in 0..3 {
        events.push(ev(
            "message.sent",
            &format!("s{i}x"),
            &today(10 + i),
            json!({}),
        ));
    }
    let n = events.len() as i64;
    publish_all(&js, events).await;
    wait_until(WAIT, "every event stored", || async {
        app.event_count().await == n
    })
    .await;

    let client = async_nats::connect(nats.url()).await.unwrap();
    let (code, d) = ask(
        &client,
        "analytics.query.dashboard",
        json!({"propertyId": "p_dash", "asOf": "2026-11-24T15:00:00Z"}),
    )
    .await;
    assert_eq!(code, None, "{d}");
    assert_eq!(
        d["today"],
        json!({"conversationsActive": 2, "conversationsResolved": 2, "messagesReceived": 5, "messagesSent": 3,
               "avgResponseTimeMs": 2000.0, "escalationRate": 0.25})
    );
    assert_eq!(
        d["comparison"],
        json!({"conversationsChange": 100.0, "responseTimeChange": -50.0, "satisfactionChange": 50.0})
    );
    assert_eq!(
        (
            d["activeConversations"].as_i64(),
            d["staffOnline"].as_i64(),
            d["pendingTasks"].as_i64()
        ),
        (Some(2), Some(2), Some(1))
    );
    assert_eq!(d["asOf"], "2026-11-24T15:00:00.000Z");

    // A property with no events: zeros, not an error.
    let (code, d) = ask(
        &client,
        "analytics.query.dashboard",
        json!({"propertyId": "nobody"}),
    )
    .await;
    assert_eq!(code, None);
    assert_eq!(d["today"]["messagesReceived"], 0);
    assert_eq!(d["comparison"]["conversationsChange"], 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dashboard_is_served_from_the_cache_within_its_ttl() {
    const TTL: Duration = Duration::from_secs(10);
    let nats = NatsServer::start();
    // The property's today is hours away from its midnight, whenever the test runs.
    // Without live dashboards, whose every new value replaces the cached reply (the
    // hotel-client tests show that): here the TTL alone decides.
    let app = App::start(
        &nats.url(),
        &format!(
            "dashboard:\n  live: false\ncache:\n  ttl_ms: {}\naggregation:\n  property_timezones: {{p_dash: {}}}\n",
            TTL.as_millis(),
            crate::helpers::midday_zone()
        ),
    );
    let js = nats.jetstream().await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let now = || chrono::Utc::now().to_rfc3339();
    publish_all(&js, vec![ev("message.received", "m1", &now(), json!({}))]).await;
    wait_until(WAIT, "stored", || async { app.event_count().await == 1 }).await;
    let received = |d: &Value| d["today"]["messagesReceived"].as_i64().unwrap();
    let dashboard = || {
        ask(
            &client,
            "analytics.query.dashboard",
            json!({"propertyId": "p_dash"}),
        )
    };
    // The entry is cached after this instant: it lives until at least TTL past it.
    let cached_at = std::time::Instant::now();
    let (_, first) = dashboard().await;
    assert_eq!(received(&first), 1);
    publish_all(&js, vec![ev("message.received", "m2", &now(), json!({}))]).await;
    wait_until(WAIT, "stored", || async { app.event_count().await == 2 }).await;
    let (_, cached) = dashboard().await;
    assert!(
        cached_at.elapsed() < TTL,
        "the second request came within the TTL"
    );
    assert_eq!(cached, first, "within the TTL the same reply");
    assert_eq!(
        app.metric(r#"butler_analytics_query_cache_requests_total{result="hit"}"#),
        1.0
    );
    // Asked again and again: the stored event shows once the TTL has passed, not before.
    wait_until(
        WAIT,
        "the dashboard read again from the database",
        || async { received(&dashboard().await.1) == 2 },
    )
    .await;
    assert!(
        cached_at.elapsed() >= TTL,
        "served from the cache for its whole TTL ({:?})",
        cached_at.elapsed()
    );
    assert_eq!(
        app.metric(r#"butler_analytics_query_cache_requests_total{result="miss"}"#),
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_series_at_every_granularity_match_the_events() {
    let nats = NatsServer::start();
    let app = App::start(&nats.url(), &config());
    let js = nats.jetstream().await;
    let events = dataset(1500);
    publish_dataset(&js, &events).await;
    wait_until(WAIT, "stored", || async { app.event_count().await == 1500 }).await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let (code, _) = ask(
        &client,
        "analytics.admin.aggregate",
        json!({"from": "2026-10-25", "to": "2026-11-10"}),
    )
    .await;
    assert_eq!(code, None);

    let series = |metric: &str, granularity: &str, dims: Value| {
        json!({"metric": metric, "granularity": granularity, "startDate": "2026-10-25", "endDate": "2026-11-10",
               "propertyId": "p_utc", "dimensions": dims})
    };
    let values = |reply: &Value| -> BTreeMap<String, f64> {
        reply["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["period"].as_str().unwrap().to_owned(),
                    r["value"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    let p_utc: Vec<_> = events.iter().filter(|e| e.property == "p_utc").collect();
    let count_by = |key: &dyn Fn(i64) -> String, types: &[&str]| {
        let mut m: BTreeMap<String, f64> = BTreeMap::new();
        for e in p_utc.iter().filter(|e| types.contains(&e.event_type)) {
            *m.entry(key(e.ts_ms)).or_default() += 1.0;
        }
        m
    };
    let utc = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).unwrap();

    // Hour, without dimensions: summed over channel and direction.
    let (code, reply) = ask(
        &client,
        "analytics.query.timeseries",
        series("message_counts.count", "hour", json!([])),
    )
    .await;
    assert_eq!(code, None, "{reply}");
    let want = count_by(
        &|ms| utc(ms).format("%Y-%m-%dT%H:00:00Z").to_string(),
        &["message.received", "message.sent"],
    );
    assert_eq!(values(&reply), want);
    assert_eq!(
        reply["metadata"]["rowCount"].as_u64(),
        Some(want.len() as u64)
    );
    assert!(reply["metadata"]["queryTimeMs"].is_number());
    assert_eq!(reply["query"]["metric"], "message_counts.count");

    // With dimensions, one row per combination, carrying them.
    let (_, reply) = ask(
        &client,
        "analytics.query.timeseries",
        series(
            "message_counts.count",
            "hour",
            json!(["channel", "direction"]),
        ),
    )
    .await;
    let total: f64 = reply["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["value"].as_f64().unwrap())
        .sum();
    assert_eq!(total, want.values().sum::<f64>());
    assert!(
        reply["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["channel"].is_string() && r["direction"].is_string())
    );

    // Day and month (UTC property: local = UTC).
    let (_, reply) = ask(
        &client,
        "analytics.query.timeseries",
        series("conversations_started", "day", json!([])),
    )
    .await;
    assert_eq!(
        values(&reply),
        count_by(
            &|ms| utc(ms).format("%Y-%m-%d").to_string(),
            &["conversation.started"]
        )
    );
    let (_, reply) = ask(
        &client,
        "analytics.query.timeseries",
        series("monthly_summary.total_messages", "month", json!([])),
    )
    .await;
    assert_eq!(
        values(&reply),
        count_by(
            &|ms| utc(ms).format("%Y-%m").to_string(),
            &["message.received", "message.sent"]
        )
    );

    // Week: NPS recomputed from the rating counts of every channel.
    let (_, reply) = ask(
        &client,
        "analytics.query.timeseries",
        series("satisfaction.nps_score", "week", json!([])),
    )
    .await;
    let mut ratings: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for e in p_utc
        .iter()
        .filter(|e| e.event_type == "satisfaction.rating_received")
    {
        let d = utc(e.ts_ms).date_naive();
        let monday = d - chrono::Days::new(u64::from(
            chrono::Datelike::weekday(&d).num_days_from_monday(),
        ));
        ratings
            .entry(monday.to_string())
            .or_default()
            .push(e.value.unwrap());
    }
    let nps: BTreeMap<String, f64> = ratings
        .into_iter()
        .map(|(w, r)| {
            let promoters = r.iter().filter(|v| **v == 5.0).count() as f64;
            let detractors = r.iter().filter(|v| **v <= 3.0).count() as f64;
            (w, 100.0 * (promoters - detractors) / r.len() as f64)
        })
        .collect();
    let got = values(&reply);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        nps.keys().collect::<Vec<_>>()
    );
    for (week, v) in &nps {
        assert!((got[week] - v).abs() < 1e-9, "{week}: {} vs {v}", got[week]);
    }

    // §8's derived rate: the day's summed deliveries over its summed sends, every
    // channel together (not a mean of the channels' rates); null where none was sent.
    let (code, reply) = ask(
        &client,
        "analytics.query.timeseries",
        series("channel_delivery.delivery_rate", "day", json!([])),
    )
    .await;
    assert_eq!(code, None, "{reply}");
    let day = |ms: i64| utc(ms).format("%Y-%m-%d").to_string();
    let sent = count_by(&day, &["message.sent"]);
    let delivered = count_by(&day, &["message.delivered"]);
    let any = count_by(
        &day,
        &[
            "message.sent",
            "message.delivered",
            "message.read",
            "message.failed",
        ],
    );
    let want: BTreeMap<String, Option<f64>> = any
        .keys()
        .map(|d| {
            let s = sent.get(d).copied().unwrap_or(0.0);
            let v = delivered.get(d).copied().unwrap_or(0.0);
            (d.clone(), (s > 0.0).then(|| v / s))
        })
        .collect();
    let got: BTreeMap<String, Option<f64>> = reply["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["period"].as_str().unwrap().to_owned(),
                r["value"].as_f64(),
            )
        })
        .collect();
    assert_eq!(got, want);
    assert!(
        want.values().any(|v| v.is_some_and(|v| v != 1.0)),
        "{want:?}"
    );

    // A percentile needs the dimension it is stored by.
    let (code, reply) = ask(
        &client,
        "analytics.query.timeseries",
        series("response_times.p95_ms", "hour", json!([])),
    )
    .await;
    assert_eq!(code.as_deref(), Some("400"));
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"channel\""),
        "{reply}"
    );
    let (code, _) = ask(
        &client,
        "analytics.query.timeseries",
        series("response_times.p95_ms", "hour", json!(["channel"])),
    )
    .await;
    assert_eq!(code, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalogue_lists_every_metric_and_bad_queries_get_a_400() {
    let nats = NatsServer::start();
    let app = App::start(&nats.url(), "");
    let client = async_nats::connect(nats.url()).await.unwrap();
    let (code, cat) = ask(&client, "analytics.query.metrics", json!({})).await;
    assert_eq!(code, None);
    for g in ["hour", "day", "week", "month"] {
        assert!(!cat[g]["metrics"].as_array().unwrap().is_empty(), "{g}");
    }
    let p95 = cat["hour"]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "response_times.p95_ms")
        .unwrap();
    assert_eq!(p95["requiredDimensions"], json!(["channel"]));
    assert_eq!(cat["hour"]["dimensions"], json!(["channel", "direction"]));
    assert_eq!(
        cat["day"]["dimensions"],
        json!(["channel", "intent", "staff_id"])
    );

    let ok = json!({"metric": "message_counts.count", "granularity": "hour", "startDate": "2026-11-01",
                    "endDate": "2026-11-02", "propertyId": "p"});
    let with = |k: &str, v: Value| {
        let mut b = ok.clone();
        b[k] = v;
        b
    };
    for (body, needle) in [
        (json!("not an object"), "invalid request"),
        (with("metric", json!("nope.nothing")), "unknown metric"),
        (with("metric", json!("count")), "ambiguous"),
        (
            with("metric", json!("count; DROP TABLE analytics_events")),
            "unknown metric",
        ),
        (with("granularity", json!("minute")), "granularity"),
        (
            with("dimensions", json!(["channel) UNION SELECT 1 --"])),
            "not available",
        ),
        (with("dimensions", json!(["staff_id"])), "not available"),
        (with("propertyId", json!("")), "propertyId"),
        (with("endDate", json!("2026-10-01")), "must be before"),
        (with("startDate", json!("next week")), "startDate"),
        (with("surprise", json!(1)), "surprise"),
    ] {
        let (code, reply) = ask(&client, "analytics.query.timeseries", body.clone()).await;
        assert_eq!(code.as_deref(), Some("400"), "{body}");
        assert_eq!(reply["error"]["code"], "bad_request");
        let message = reply["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{body}: {message}");
    }
    // An injection in the property is only ever a bound value: an empty series.
    let (code, reply) = ask(
        &client,
        "analytics.query.timeseries",
        with("propertyId", json!("p' OR '1'='1")),
    )
    .await;
    assert_eq!(code, None);
    assert_eq!(reply["data"], json!([]));
    let (code, _) = ask(
        &client,
        "analytics.query.dashboard",
        json!({"propertyId": "x'; DELETE FROM live_staff; --"}),
    )
    .await;
    assert_eq!(code, None);
    let (code, _) = ask(&client, "analytics.query.dashboard", json!({})).await;
    assert_eq!(code.as_deref(), Some("400"));
    let db = app.db().await;
    let tables = db.table_names().await;
    assert!(tables.len() >= 19, "no table dropped: {tables:?}");
}

/// An event of `property` (extra fields merged in).
pub(crate) fn ev_of(
    property: &str,
    t: &str,
    id: &str,
    at: &str,
    extra: Value,
) -> (String, Vec<u8>) {
    let mut body = json!({"id": id, "propertyId": property, "timestamp": at});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    (
        format!("butler.events.{t}"),
        serde_json::to_vec(&body).unwrap(),
    )
}

fn close(a: &Value, b: f64) -> bool {
    a.as_f64().is_some_and(|a| (a - b).abs() < 1e-9)
}

/// Dashboards and reports follow the property's own local days: in Tokyo (UTC+9) a
/// day starts at 15:00 UTC the day before, so events a UTC day would count are left
/// out and the other way round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_and_reports_follow_the_propertys_local_days() {
    let nats = NatsServer::start();
    let app = App::start(
        &nats.url(),
        "retention:\n  raw_events: 36500\naggregation:\n  property_timezones: {p_tokyo: Asia/Tokyo}\nservice:\n  aggregator: false\n",
    );
    let js = nats.jetstream().await;
    let e = |t: &str, id: &str, at: &str, extra: Value| ev_of("p_tokyo", t, id, at, extra);
    let c = |id: &str, ch: &str| json!({"conversationId": id, "channel": ch});
    // Local day 2026-11-10 = [2026-11-09T15:00Z, 2026-11-10T15:00Z).
    let events = vec![
        e(
            "conversation.started",
            "c1s",
            "2026-11-09T16:00:00Z",
            c("c1", "whatsapp"),
        ),
        e(
            "conversation.started",
            "c2s",
            "2026-11-10T01:00:00Z",
            c("c2", "sms"),
        ),
        e(
            "conversation.started",
            "c3s",
            "2026-11-10T14:30:00Z",
            c("c3", "sms"),
        ),
        e(
            "conversation.resolved",
            "c1r",
            "2026-11-09T18:00:00Z",
            c("c1", "whatsapp"),
        ),
        e(
            "conversation.resolved",
            "c2r",
            "2026-11-10T02:00:00Z",
            c("c2", "sms"),
        ),
        e(
            "conversation.resolved",
            "c3r",
            "2026-11-10T14:40:00Z",
            c("c3", "sms"),
        ),
        e(
            "conversation.escalated",
            "c2e",
            "2026-11-10T01:30:00Z",
            c("c2", "sms"),
        ),
        e("message.received", "m1", "2026-11-09T15:30:00Z", json!({})),
        e("message.received", "m2", "2026-11-10T05:00:00Z", json!({})),
        e("message.received", "m3", "2026-11-10T14:59:00Z", json!({})),
        e("message.sent", "m4", "2026-11-10T06:00:00Z", json!({})),
        e(
            "task.created",
            "t1",
            "2026-11-10T03:00:00Z",
            json!({"taskId": "t1"}),
        ),
        e(
            "task.created",
            "t2",
            "2026-11-10T04:00:00Z",
            json!({"taskId": "t2"}),
        ),
        e(
            "response.time_recorded",
            "r1",
            "2026-11-09T17:00:00Z",
            json!({"durationMs": 60000}),
        ),
        e(
            "response.time_recorded",
            "r2",
            "2026-11-10T07:00:00Z",
            json!({"durationMs": 180000}),
        ),
        e(
            "satisfaction.survey_sent",
            "v1",
            "2026-11-10T08:00:00Z",
            json!({"channel": "sms"}),
        ),
        e(
            "satisfaction.survey_sent",
            "v2",
            "2026-11-10T08:00:00Z",
            json!({"channel": "sms"}),
        ),
        e(
            "satisfaction.survey_sent",
            "v3",
            "2026-11-10T08:00:00Z",
            json!({"channel": "whatsapp"}),
        ),
        e(
            "satisfaction.rating_received",
            "g1",
            "2026-11-10T09:00:00Z",
            json!({"channel": "sms", "value": 5}),
        ),
        e(
            "satisfaction.rating_received",
            "g2",
            "2026-11-10T09:00:00Z",
            json!({"channel": "sms", "value": 2}),
        ),
        e(
            "satisfaction.rating_received",
            "g3",
            "2026-11-10T09:00:00Z",
            json!({"channel": "whatsapp", "value": 5}),
        ),
        // The same UTC date, other local days: a UTC day would count these.
        e(
            "conversation.started",
            "x1",
            "2026-11-10T15:30:00Z",
            c("c9", "sms"),
        ),
        e("message.received", "x2", "2026-11-10T16:00:00Z", json!({})),
        e(
            "response.time_recorded",
            "x3",
            "2026-11-10T20:00:00Z",
            json!({"durationMs": 600000}),
        ),
        e(
            "satisfaction.rating_received",
            "x4",
            "2026-11-10T21:00:00Z",
            json!({"channel": "sms", "value": 1}),
        ),
        // The local day before, like for like up to 12:00 local.
        e(
            "conversation.started",
            "y1",
            "2026-11-08T16:00:00Z",
            c("c8", "sms"),
        ),
        e("message.received", "y2", "2026-11-08T20:00:00Z", json!({})),
    ];
    let n = events.len() as i64;
    publish_all(&js, events).await;
    wait_until(WAIT, "every event stored", || async {
        app.event_count().await == n
    })
    .await;
    let client = async_nats::connect(nats.url()).await.unwrap();

    // As of 12:00 Tokyo on the 10th (03:00 UTC): today began at 15:00 UTC on the 9th.
    let (code, d) = ask(
        &client,
        "analytics.query.dashboard",
        json!({"propertyId": "p_tokyo", "asOf": "2026-11-10T03:00:00Z"}),
    )
    .await;
    assert_eq!(code, None, "{d}");
    assert_eq!(
        d["today"]["messagesReceived"], 1,
        "m1 only, at 00:30 local: {d}"
    );
    assert_eq!(d["today"]["conversationsResolved"], 2, "{d}");
    assert!(close(&d["today"]["avgResponseTimeMs"], 60000.0), "{d}");
    assert!(
        close(&d["comparison"]["conversationsChange"], 100.0),
        "two today against one yesterday by 12:00 local: {d}"
    );

    // The report over the local day 2026-11-10.
    let (code, _) = ask(
        &client,
        "analytics.admin.aggregate",
        json!({"from": "2026-11-07", "to": "2026-11-13"}),
    )
    .await;
    assert_eq!(code, None);
    let (code, r) = ask(
        &client,
        "analytics.query.report",
        json!({"type": "daily", "propertyId": "p_tokyo",
               "dateRange": {"start": "2026-11-10", "end": "2026-11-11"}}),
    )
    .await;
    assert_eq!(code, None, "{r}");
    let summary = &r["sections"]["summary"];
    assert_eq!(summary["totalConversations"], 3, "{summary}");
    assert_eq!(summary["totalMessages"], 4, "{summary}");
    assert_eq!(summary["totalTasks"], 2, "{summary}");
    assert!(
        close(&summary["aiResolutionRate"], 2.0 / 3.0),
        "c1 and c3 resolved without escalation, of three resolved: {summary}"
    );
    assert!(close(&summary["avgSatisfaction"], 4.0), "{summary}");
    assert!(close(&summary["avgResponseTimeMinutes"], 2.0), "{summary}");
    let s = &r["sections"]["satisfaction"];
    assert_eq!(
        (
            s["surveysSent"].as_i64(),
            s["responsesReceived"].as_i64(),
            s["rating2"].as_i64(),
            s["rating5"].as_i64(),
            s["rating1"].as_i64()
        ),
        (Some(3), Some(3), Some(1), Some(2), Some(0)),
        "{s}"
    );
    assert!(close(&s["avgRating"], 4.0), "{s}");
    assert!(
        close(&s["npsScore"], 100.0 / 3.0),
        "(2 fives - 1 two) / 3: {s}"
    );
    assert_eq!(s["byChannel"]["sms"]["responsesReceived"], 2, "{s}");
    assert!(close(&s["byChannel"]["sms"]["npsScore"], 0.0), "{s}");
    assert_eq!(
        r["sections"]["channelBreakdown"],
        json!({"sms": 2, "whatsapp": 1})
    );
}
