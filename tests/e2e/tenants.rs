//! Tenants and live figures (CONTRACT §7): property-scoped subjects, the live
//! dashboard in its key-value bucket, real-time time series.

use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::helpers::{App, NatsServer, error_code, midday_zone, publish_all, request, wait_until};
use crate::query::ev_of;

const WAIT: Duration = Duration::from_secs(60);

/// Both hotels in a zone where it is about noon, so "today" holds what is published
/// now, whenever the test runs.
pub(crate) fn zones() -> String {
    let zone = midday_zone();
    format!("aggregation:\n  property_timezones: {{hotel_a: {zone}, hotel_b: {zone}}}\n")
}

/// Today's and tomorrow's local dates in the hotels' zone.
pub(crate) fn today_and_tomorrow() -> (String, String) {
    let tz: chrono_tz::Tz = midday_zone().parse().unwrap();
    let today = chrono::Utc::now().with_timezone(&tz).date_naive();
    (
        today.to_string(),
        (today + chrono::Days::new(1)).to_string(),
    )
}

/// `n` received messages of `property`, timestamped a second ago, ids `<prefix>-<i>`.
pub(crate) fn received(property: &str, prefix: &str, n: usize) -> Vec<(String, Vec<u8>)> {
    let at = (chrono::Utc::now() - chrono::Duration::seconds(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    (0..n)
        .map(|i| {
            ev_of(
                property,
                "message.received",
                &format!("{prefix}-{i}"),
                &at,
                json!({"channel": "sms", "conversationId": format!("{prefix}-c{}", i % 40)}),
            )
        })
        .collect()
}

async fn ask(client: &async_nats::Client, subject: &str, body: Value) -> (Option<String>, Value) {
    let reply = request(client, subject, body.to_string()).await;
    let code = error_code(&reply).map(str::to_owned);
    (code, serde_json::from_slice(&reply.payload).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_subjects_answer_for_the_property_they_name() {
    let nats = NatsServer::start();
    let app = App::start(&nats.url(), &zones());
    let js = nats.jetstream().await;
    let mut events = received("hotel_a", "a", 3);
    events.extend(received("hotel_b", "b", 5));
    publish_all(&js, events).await;
    wait_until(WAIT, "stored", || async { app.event_count().await == 8 }).await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    // Live pages are off unless asked for.
    assert_eq!(app.get("/live/hotel_a").unwrap().0, 404);

    for (property, expected) in [("hotel_a", 3), ("hotel_b", 5)] {
        let subject = format!("analytics.query.dashboard.{property}");
        for body in [json!({}), json!({"propertyId": property})] {
            let (code, reply) = ask(&client, &subject, body).await;
            assert_eq!(code, None, "{reply}");
            assert_eq!(reply["today"]["messagesReceived"], expected, "{reply}");
        }
    }
    let (code, reply) = ask(
        &client,
        "analytics.query.dashboard.hotel_a",
        json!({"propertyId": "hotel_b"}),
    )
    .await;
    assert_eq!(code.as_deref(), Some("400"));
    assert_eq!(reply["error"]["code"], "bad_request");
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("hotel_a") && message.contains("hotel_b"),
        "{message}"
    );

    let (today, tomorrow) = today_and_tomorrow();
    let (code, series) = ask(
        &client,
        "analytics.query.timeseries.hotel_b",
        json!({"metric": "message_counts.count", "granularity": "hour",
               "startDate": today, "endDate": tomorrow}),
    )
    .await;
    assert_eq!(code, None, "{series}");
    assert_eq!(series["query"]["propertyId"], "hotel_b");
    let (code, report) = ask(
        &client,
        "analytics.query.report.hotel_a",
        json!({"type": "daily", "dateRange": {"start": today, "end": tomorrow}}),
    )
    .await;
    assert_eq!(code, None, "{report}");
    assert_eq!(report["propertyId"], "hotel_a");
    let (code, _) = ask(
        &client,
        "analytics.query.report.hotel_a",
        json!({"type": "daily", "propertyId": "hotel_b", "dateRange": {"start": today, "end": tomorrow}}),
    )
    .await;
    assert_eq!(code.as_deref(), Some("400"));

    // The scoped subjects are endpoints of the service, as discovery shows them.
    let info = request(&client, "$SRV.INFO.butler-analytics", "").await;
    let info: Value = serde_json::from_slice(&info.payload).unwrap();
    let subjects: Vec<&str> = info["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["subject"].as_str())
        .collect();
    for scoped in [
        "analytics.query.dashboard.*",
        "analytics.query.timeseries.*",
        "analytics.query.report.*",
    ] {
        assert!(subjects.contains(&scoped), "{subjects:?}");
    }
}

/// The live dashboard bucket, once the pipeline has created it.
pub(crate) async fn dashboard_bucket(nats: &NatsServer) -> kv::Store {
    dashboard_bucket_of(&nats.jetstream().await).await
}

/// The live dashboard bucket as `js`'s user sees it, once the pipeline has created it.
pub(crate) async fn dashboard_bucket_of(js: &async_nats::jetstream::Context) -> kv::Store {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(store) = js.get_key_value("butler_dashboard").await {
            return store;
        }
        assert!(Instant::now() < deadline, "no bucket butler_dashboard");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The next value a watcher sees, within `within`.
async fn next_value(watch: &mut kv::Watch, within: Duration) -> Option<Value> {
    let entry = tokio::time::timeout(within, watch.next())
        .await
        .ok()??
        .unwrap();
    Some(serde_json::from_slice(&entry.value).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_sees_each_commit_of_its_property_and_bursts_coalesce() {
    let nats = NatsServer::start();
    let app = App::start(
        &nats.url(),
        &format!(
            "ingest:\n  flush_interval_ms: 200\ndashboard:\n  push_interval_ms: 500\n{}",
            zones()
        ),
    );
    let js = nats.jetstream().await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let bucket = dashboard_bucket(&nats).await;
    let mut watch = bucket.watch("hotel_a").await.unwrap();

    let published = Instant::now();
    publish_all(&js, received("hotel_a", "one", 1)).await;
    let value = next_value(&mut watch, Duration::from_secs(2))
        .await
        .expect("a new value within 2 s of publishing");
    let seen_after = published.elapsed();
    assert_eq!(value["today"]["messagesReceived"], 1, "{value}");
    // The same figures as the request/reply dashboard at that asOf.
    let (code, asked) = ask(
        &client,
        "analytics.query.dashboard.hotel_a",
        json!({"asOf": value["asOf"]}),
    )
    .await;
    assert_eq!(code, None, "{asked}");
    assert_eq!(asked, value);
    println!("event published → value seen by the watcher: {seen_after:?}");

    // A burst: far fewer writes than events, the last one holding them all.
    let writes_before = app.metric("butler_analytics_live_dashboard_writes_total");
    const BURST: usize = 10_000;
    publish_all(&js, received("hotel_a", "burst", BURST)).await;
    let mut values = 0;
    let last = loop {
        let value = next_value(&mut watch, WAIT)
            .await
            .expect("the burst's values");
        values += 1;
        if value["today"]["messagesReceived"] == BURST + 1 {
            break value;
        }
    };
    let writes = app.metric("butler_analytics_live_dashboard_writes_total") - writes_before;
    println!("{BURST} events → {values} values seen, {writes} writes");
    assert!(
        values <= 30 && writes <= 30.0,
        "{values} values, {writes} writes"
    );
    let (_, asked) = ask(
        &client,
        "analytics.query.dashboard",
        json!({"propertyId": "hotel_a", "asOf": last["asOf"]}),
    )
    .await;
    assert_eq!(asked, last);
    // Hotel B has no events, hence no key.
    assert!(bucket.entry("hotel_b").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_instances_a_watcher_never_sees_as_of_go_back() {
    let nats = NatsServer::start();
    let extra = format!(
        "ingest:\n  flush_interval_ms: 50\n  batch_size: 20\ndashboard:\n  push_interval_ms: 20\n  refresh_s: 1\n{}",
        zones()
    );
    let one = App::start(&nats.url(), &extra);
    let two = App::start(&nats.url(), &format!("{}{extra}", one.shared_storage()));
    let js = nats.jetstream().await;
    let bucket = dashboard_bucket(&nats).await;
    let mut watch = bucket.watch("hotel_a").await.unwrap();
    const ROUNDS: usize = 20;
    const PER_ROUND: usize = 100;
    for round in 0..ROUNDS {
        publish_all(&js, received("hotel_a", &format!("r{round}"), PER_ROUND)).await;
    }
    let mut seen: Vec<(String, u64)> = Vec::new();
    while seen.last().map(|s| s.1) != Some((ROUNDS * PER_ROUND) as u64) {
        let value = next_value(&mut watch, WAIT)
            .await
            .expect("values until all are in");
        seen.push((
            value["asOf"].as_str().unwrap().to_owned(),
            value["today"]["messagesReceived"].as_u64().unwrap(),
        ));
    }
    let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).unwrap();
    for pair in seen.windows(2) {
        assert!(
            parse(&pair[0].0) < parse(&pair[1].0),
            "asOf went back: {seen:?}"
        );
        assert!(pair[0].1 <= pair[1].1, "the count went back: {seen:?}");
    }
    let writers =
        [&one, &two].map(|app| app.metric("butler_analytics_live_dashboard_writes_total"));
    println!("{} values seen; writes by instance {writers:?}", seen.len());
    assert!(
        writers.iter().all(|w| *w > 0.0),
        "both instances wrote: {writers:?}"
    );
}

/// The points of a time series, by (period, partial, value).
async fn series(client: &async_nats::Client, body: Value) -> Vec<(String, bool, f64)> {
    let (code, reply) = ask(client, "analytics.query.timeseries.hotel_a", body).await;
    assert_eq!(code, None, "{reply}");
    reply["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["period"].as_str().unwrap().to_owned(),
                p["partial"] == true,
                p["value"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_series_holds_what_is_not_materialized_yet_as_partial_points() {
    let nats = NatsServer::start();
    // The hourly job runs only at start-up here, so nothing materializes the hours
    // but the restart below.
    let mut app = App::start(
        &nats.url(),
        &format!(
            "{}  schedules: {{hourly_message_counts: '0 0 1 1 *', daily_conversation_metrics: '0 0 1 1 *'}}\n",
            zones()
        ),
    );
    let js = nats.jetstream().await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let now = chrono::Utc::now();
    let stamp =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let hour = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:00:00Z").to_string();
    let (open_at, closed_at) = (now, now - chrono::Duration::hours(1));
    let mut events = Vec::new();
    for (i, at) in [
        open_at, open_at, open_at, closed_at, closed_at, closed_at, closed_at,
    ]
    .into_iter()
    .enumerate()
    {
        events.push(ev_of(
            "hotel_a",
            "message.received",
            &format!("rt-{i}"),
            &stamp(at),
            json!({"channel": "sms", "conversationId": "rt-c"}),
        ));
    }
    for i in 0..2 {
        events.push(ev_of(
            "hotel_a",
            "conversation.started",
            &format!("rt-s{i}"),
            &stamp(closed_at),
            json!({"channel": "sms", "conversationId": format!("rt-c{i}")}),
        ));
    }
    publish_all(&js, events).await;
    wait_until(WAIT, "stored", || async { app.event_count().await == 9 }).await;

    let (today, tomorrow) = today_and_tomorrow();
    let hourly = |materialized_only: bool| {
        json!({"metric": "message_counts.count", "granularity": "hour",
               "startDate": today, "endDate": tomorrow, "materializedOnly": materialized_only})
    };
    let daily = json!({"metric": "conversation_metrics.conversations_started", "granularity": "day",
                       "startDate": today, "endDate": tomorrow});
    // Right after the commit: the open hour and the closed one, both from raw events.
    let points = series(&client, hourly(false)).await;
    assert_eq!(
        points,
        vec![(hour(closed_at), true, 4.0), (hour(open_at), true, 3.0)]
    );
    assert_eq!(series(&client, hourly(true)).await, vec![]);
    assert_eq!(
        series(&client, daily.clone()).await,
        vec![(today.clone(), true, 2.0)]
    );

    // The start-up run materializes the closed hour: the same value, from the table.
    app.terminate();
    app.restart();
    wait_until(WAIT, "the closed hour materialized", || async {
        series(&client, hourly(true)).await == vec![(hour(closed_at), false, 4.0)]
    })
    .await;
    assert_eq!(
        series(&client, hourly(false)).await,
        vec![(hour(closed_at), false, 4.0), (hour(open_at), true, 3.0)]
    );
    // Today is still open: still partial, though its row is stored now.
    assert_eq!(series(&client, daily).await, vec![(today, true, 2.0)]);
}

/// The live page under the shipped `deploy/nats/permissions.conf`, the pipeline
/// connecting as its `analytics` user: it follows the figures without a reload, shows
/// them as a manager reads them, and tells an unknown property as such.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_page_follows_the_dashboard_without_a_reload() {
    let mut nats = crate::hotel_clients::shipped_server();
    let mut app = crate::hotel_clients::pipeline(&nats, "http:\n  live_pages: true\n");
    let producer = crate::hotel_clients::producer(&nats).await;
    let at = (chrono::Utc::now() - chrono::Duration::seconds(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let conversation = |t: &str, id: &str, extra: Value| {
        let mut data = json!({"channel": "sms", "conversationId": "page-c1"});
        data.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        ev_of("hotel_a", t, id, &at, data)
    };
    let mut events = received("hotel_a", "page", 2);
    events.push(conversation("conversation.started", "page-s", json!({})));
    events.push(conversation(
        "response.time_recorded",
        "page-r",
        json!({"durationMs": 34467}),
    ));
    publish_all(&producer, events).await;

    // One self-contained page: nothing to fetch from elsewhere.
    let (status, page) = app.get("/live/hotel_a").unwrap();
    assert_eq!(status, 200);
    assert!(
        !page.contains(" src=") && !page.contains(" href="),
        "{page}"
    );
    assert_eq!(app.get("/live/a.b").unwrap().0, 400);
    // The start-up line says the pages are on, in plain text (the log is a file).
    assert!(app.log().contains(" live_pages=true"), "{}", app.log());
    assert!(!app.log().contains('\u{1b}'), "colour codes in a log file");

    let url = format!(
        "http://127.0.0.1:{}/live/hotel_a",
        app.metrics_port().unwrap()
    );
    let mut browser = crate::helpers::Browser::open(&url);
    let text = |id: &str| format!("document.getElementById('{id}').textContent");
    browser.wait_for(&text("messagesReceived"), &json!("2"));
    // Durations in seconds and minutes; a change only where yesterday had figures;
    // the satisfaction score beside its change; labels that say what they count.
    browser.wait_for(&text("avgResponseTime"), &json!("34 s"));
    browser.wait_for(&text("conversationsStarted"), &json!("1"));
    browser.wait_for(&text("conversationsChange"), &json!("no data yesterday"));
    browser.wait_for(&text("responseTimeChange"), &json!("no data yesterday"));
    browser.wait_for(&text("satisfaction"), &json!("no ratings"));
    browser.wait_for(&text("activeConversations"), &json!("1"));
    browser.eval("window.samePage = 'yes'");
    let painted_before = (
        browser.shot_of("messagesReceived"),
        browser.shot_of("satisfaction"),
    );
    let mut more = received("hotel_a", "page-more", 3);
    more.push(conversation(
        "satisfaction.rating_received",
        "page-rating",
        json!({"value": 4}),
    ));
    publish_all(&producer, more).await;
    browser.wait_for(&text("messagesReceived"), &json!("5"));
    browser.wait_for(&text("satisfaction"), &json!("4 / 5"));
    // The new figures are painted, not only in the page's text.
    assert_ne!(
        browser.shot_of("messagesReceived"),
        painted_before.0,
        "messages received painted as before"
    );
    assert_ne!(
        browser.shot_of("satisfaction"),
        painted_before.1,
        "satisfaction painted as before"
    );
    assert_eq!(
        browser.eval("window.samePage"),
        json!("yes"),
        "the page was reloaded"
    );
    // Yesterday's figures arrive: a conversation started a day and a minute ago gives
    // the change its comparison; a second response of 85.533 s brings today's mean
    // to one minute, shown in minutes.
    let yesterday = (chrono::Utc::now() - chrono::Duration::minutes(24 * 60 + 1))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    publish_all(
        &producer,
        vec![
            ev_of(
                "hotel_a",
                "conversation.started",
                "page-y",
                &yesterday,
                json!({"channel": "sms", "conversationId": "page-c0"}),
            ),
            ev_of(
                "hotel_a",
                "response.time_recorded",
                "page-r2",
                &at,
                json!({"channel": "sms", "conversationId": "page-c2", "durationMs": 85533}),
            ),
        ],
    )
    .await;
    browser.wait_for(&text("avgResponseTime"), &json!("1 min"));
    browser.wait_for(&text("conversationsChange"), &json!("0 % vs yesterday (1)"));
    browser.wait_for(&text("responseTimeChange"), &json!("no data yesterday"));
    // The chart holds today's five messages in its hours.
    browser.wait_for(
        "[...document.querySelectorAll('#chart rect[data-series=today]')].reduce((n, r) => n + Number(r.dataset.count), 0)",
        &json!(5),
    );
    // The server's heartbeat keeps the status line current while the figures stand
    // still.
    browser.wait_for(
        &format!(
            "{}.startsWith('live · figures current, last changed ')",
            text("status")
        ),
        &json!(true),
    );
    // Longer than the page waits before it calls the connection lost (three
    // heartbeats) with no figure changing: the heartbeats alone keep it live.
    browser.eval("window.beatsBefore = state.beats; window.stillSince = Date.now()");
    browser.wait_for(
        "state.beats >= window.beatsBefore + 4 && Date.now() - window.stillSince > 3 * HEARTBEAT_MS",
        &json!(true),
    );
    let status = browser.eval(&text("status"));
    let status = status.as_str().unwrap();
    assert!(
        status.starts_with("live · figures current, last changed ")
            && status.contains(" · heard from the server "),
        "{status}"
    );
    assert_eq!(browser.eval(&text("messagesReceived")), json!("5"));
    // Nothing was fetched from elsewhere.
    assert_eq!(
        browser.eval(
            "performance.getEntriesByType('resource').every(e => e.name.startsWith(location.origin + '/'))"
        ),
        json!(true)
    );
    let shot = browser.screenshot("live-page.png");
    println!("screenshot: {}", shot.display());
    assert!(std::fs::metadata(&shot).unwrap().len() > 1000);

    // With NATS gone, a page opened now is refused (503): it says so, and keeps
    // trying until NATS is back.
    nats.kill();
    browser.eval("location.reload()");
    browser.wait_for(
        &format!("{}.startsWith('connection lost')", text("status")),
        &json!(true),
    );
    nats.restart();
    browser.wait_for(&text("messagesReceived"), &json!("5"));
    browser.wait_for(
        &format!("{}.startsWith('live · ')", text("status")),
        &json!(true),
    );

    // A property without figures is told as such after a short wait.
    browser.eval("location.assign('/live/no_such_hotel')");
    browser.wait_for(
        &format!(
            "{}.startsWith('no figures for “no_such_hotel”')",
            text("status")
        ),
        &json!(true),
    );
    // An open page does not hold the shutdown up; the page then says the connection
    // is lost.
    browser.eval("location.assign('/live/hotel_a')");
    browser.wait_for(&text("messagesReceived"), &json!("5"));
    assert!(app.terminate().success());
    browser.wait_for(
        &format!("{}.startsWith('connection lost')", text("status")),
        &json!(true),
    );
}
