//! The admin endpoints over NATS: same tables as the CLI, error replies as the
//! contract spells them, `$SRV` discovery.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};

use crate::aggregation::{aggregate_tables, config, dataset, publish_dataset};
use crate::helpers::{App, NatsServer, header, request, wait_until};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_and_admin_aggregate_give_the_same_tables() {
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    let events = dataset(1500);
    publish_dataset(&js, &events).await;
    // Two pipelines, each with its own database and durable consumer over one stream.
    let mut by_cli = App::start(
        &nats.url(),
        &format!("nats:\n  consumer: by-cli\n{}", config()),
    );
    let by_admin = App::start(
        &nats.url(),
        &format!("nats:\n  consumer: by-admin\n{}", config()),
    );
    wait_until(WAIT, "both stored everything", || async {
        by_cli.event_count().await == 1500 && by_admin.event_count().await == 1500
    })
    .await;
    assert!(by_cli.terminate().success());
    crate::aggregation::backfill_week(&by_cli.config_path());

    let client = async_nats::connect(nats.url()).await.unwrap();
    let reply = request(
        &client,
        "analytics.admin.aggregate",
        r#"{"from":"2026-10-29","to":"2026-11-05"}"#,
    )
    .await;
    assert_eq!(header(&reply, "Nats-Service-Error-Code"), None, "{reply:?}");
    let body: Value = serde_json::from_slice(&reply.payload).unwrap();
    let runs = body["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 10);
    assert!(runs.iter().all(|r| r["job"].is_string()
        && r["periodsRecomputed"].is_u64()
        && r["rowsWritten"].is_u64()
        && r["ms"].is_u64()));
    assert!(
        runs.iter()
            .map(|r| r["rowsWritten"].as_u64().unwrap())
            .sum::<u64>()
            > 0
    );

    let cli_tables = aggregate_tables(&by_cli).await;
    let admin_tables = aggregate_tables(&by_admin).await;
    assert!(
        cli_tables.iter().all(|(_, rows)| !rows.is_empty()),
        "every table has rows"
    );
    assert_eq!(cli_tables, admin_tables);

    // One job only, and the status that follows.
    let reply = request(
        &client,
        "analytics.admin.aggregate",
        r#"{"job":"monthly_summary","from":"2026-10-01","to":"2026-12-01"}"#,
    )
    .await;
    let body: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(body["runs"].as_array().unwrap().len(), 1);
    assert_eq!(body["runs"][0]["job"], "monthly_summary");
    let reply = request(&client, "analytics.admin.status", "{}").await;
    let status: Value = serde_json::from_slice(&reply.payload).unwrap();
    let jobs = status["jobs"].as_array().unwrap();
    let schedules: Vec<(&str, &str)> = jobs
        .iter()
        .map(|j| (j["job"].as_str().unwrap(), j["schedule"].as_str().unwrap()))
        .collect();
    assert_eq!(
        schedules,
        [
            ("hourly_message_counts", "0 * * * *"),
            ("hourly_response_times", "5 * * * *"),
            ("daily_conversation_metrics", "0 1 * * *"),
            ("daily_staff_performance", "0 1 * * *"),
            ("daily_intent_distribution", "0 1 * * *"),
            ("daily_channel_delivery", "0 1 * * *"),
            ("daily_task_performance", "0 1 * * *"),
            ("daily_staff_presence", "0 1 * * *"),
            ("weekly_satisfaction_trends", "0 2 * * 1"),
            ("monthly_summary", "0 3 1 * *"),
        ]
    );
    let monthly = jobs.iter().find(|j| j["job"] == "monthly_summary").unwrap();
    assert_eq!(monthly["schedule"], "0 3 1 * *");
    assert!(
        monthly["lastSuccessAt"].is_string() && monthly["lastRunAt"].is_string(),
        "{monthly}"
    );
    assert!(monthly["lastError"].is_null());
    // The watermark is the end of the latest closed bucket written: never in the future.
    let watermark = monthly["watermark"].as_str().unwrap();
    let now = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    assert!(
        watermark.len() == 24 && watermark <= now.as_str(),
        "{watermark}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_admin_requests_get_a_400_that_says_what_to_fix() {
    let nats = NatsServer::start();
    let _app = App::start(&nats.url(), "");
    let client = async_nats::connect(nats.url()).await.unwrap();
    for (body, needle) in [
        ("{not json", "invalid request"),
        (r#"["from"]"#, "invalid request"),
        (r#"{"to":"2026-11-02"}"#, "from"),
        (
            r#"{"job":"hourly_everything","from":"2026-11-01","to":"2026-11-02"}"#,
            "hourly_everything",
        ),
        (
            r#"{"from":"2026-11-02","to":"2026-11-01"}"#,
            "must be before",
        ),
        (
            r#"{"from":"2026-11-01","to":"2026-11-01"}"#,
            "must be before",
        ),
        (r#"{"from":"yesterday","to":"2026-11-01"}"#, "yesterday"),
        (
            r#"{"from":"2026-11-01","to":"2026-11-02","jobs":["x"]}"#,
            "jobs",
        ),
        (
            r#"{"from":"2026-11-01'; DROP TABLE analytics_events; --","to":"2026-11-02"}"#,
            "DROP TABLE",
        ),
    ] {
        let reply = request(&client, "analytics.admin.aggregate", body).await;
        assert_eq!(
            header(&reply, "Nats-Service-Error-Code"),
            Some("400"),
            "{body}"
        );
        let message = header(&reply, "Nats-Service-Error")
            .unwrap_or_default()
            .to_owned();
        let parsed: Value = serde_json::from_slice(&reply.payload).unwrap();
        assert_eq!(parsed["error"]["code"], "bad_request", "{body}");
        assert_eq!(parsed["error"]["message"], json!(message));
        assert!(message.contains(needle), "{body}: {message}");
    }
    let reply = request(&client, "analytics.admin.status", r#"{"verbose":true}"#).await;
    assert_eq!(header(&reply, "Nats-Service-Error-Code"), Some("400"));
    let db = _app.db().await;
    assert!(
        db.table_names()
            .await
            .iter()
            .any(|t| t == "analytics_events"),
        "no table dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_queue_group_and_ping_finds_both() {
    let nats = NatsServer::start();
    let a = App::start(&nats.url(), "service:\n  instance: analytics-a\n");
    let _b = App::start(&nats.url(), "service:\n  instance: analytics-b\n");
    let client = async_nats::connect(nats.url()).await.unwrap();
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await.unwrap();
    client
        .publish_with_reply("$SRV.PING.butler-analytics", inbox, Bytes::new())
        .await
        .unwrap();
    let mut ids = std::collections::BTreeSet::new();
    while let Ok(Some(msg)) = tokio::time::timeout(
        Duration::from_secs(2),
        futures_util::StreamExt::next(&mut replies),
    )
    .await
    {
        let ping: Value = serde_json::from_slice(&msg.payload).unwrap();
        assert_eq!(ping["name"], "butler-analytics");
        ids.insert(ping["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 2, "both instances answer $SRV.PING");

    let info = request(&client, "$SRV.INFO.butler-analytics", "").await;
    let info: Value = serde_json::from_slice(&info.payload).unwrap();
    let subjects: Vec<&str> = info["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["subject"].as_str().unwrap())
        .collect();
    assert!(
        subjects.contains(&"analytics.admin.aggregate")
            && subjects.contains(&"analytics.admin.status"),
        "{info}"
    );
    assert!(
        info["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["queue_group"] == "butler-analytics"),
        "{info}"
    );

    // A status request is answered once, by one of them.
    let mut replies = client.subscribe("test.status.reply").await.unwrap();
    for _ in 0..10 {
        client
            .publish_with_reply(
                "analytics.admin.status",
                "test.status.reply",
                Bytes::from_static(b"{}"),
            )
            .await
            .unwrap();
    }
    let mut answered = 0;
    let mut instances = std::collections::BTreeSet::new();
    while let Ok(Some(reply)) = tokio::time::timeout(
        Duration::from_secs(2),
        futures_util::StreamExt::next(&mut replies),
    )
    .await
    {
        answered += 1;
        let status: Value = serde_json::from_slice(&reply.payload).unwrap();
        instances.insert(status["instance"].as_str().unwrap().to_owned());
    }
    assert_eq!(answered, 10, "each request answered exactly once");
    assert!(
        instances
            .iter()
            .all(|i| i == "analytics-a" || i == "analytics-b"),
        "{instances:?}"
    );
    // Each instance's metrics carry its name (Prometheus keeps `instance` for itself).
    let (_, metrics) = a.get("/metrics").unwrap();
    assert!(
        metrics.contains(r#"butler_analytics_events_received_total{event_type="message.received",pipeline_instance="analytics-a"}"#)
            || metrics.contains(r#"pipeline_instance="analytics-a""#),
        "{metrics}"
    );
    assert!(
        a.log().contains("analytics-a"),
        "the log names the instance"
    );
}

/// `$SRV.STATS`: each endpoint's requests, and its error replies in its `data` (the
/// library's own `num_errors` counts only errors sent without a body).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_stats_counts_each_endpoints_requests_and_errors() {
    let nats = NatsServer::start();
    let _app = App::start(&nats.url(), "");
    let client = async_nats::connect(nats.url()).await.unwrap();
    for _ in 0..3 {
        request(
            &client,
            "analytics.query.dashboard",
            r#"{"propertyId":"p"}"#,
        )
        .await;
    }
    let bad = request(&client, "analytics.query.timeseries", "{not json").await;
    assert_eq!(header(&bad, "Nats-Service-Error-Code"), Some("400"));
    let stats = request(&client, "$SRV.STATS.butler-analytics", "").await;
    let stats: Value = serde_json::from_slice(&stats.payload).unwrap();
    assert_eq!(stats["name"], "butler-analytics", "{stats}");
    let endpoint = |name: &str| {
        stats["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name}: {stats}"))
    };
    assert_eq!(endpoint("dashboard")["num_requests"], 3, "{stats}");
    assert_eq!(endpoint("dashboard")["data"]["num_errors"], 0, "{stats}");
    assert_eq!(endpoint("timeseries")["num_requests"], 1, "{stats}");
    assert_eq!(endpoint("timeseries")["data"]["num_errors"], 1, "{stats}");
    assert!(
        endpoint("timeseries")["data"]["last_error"]
            .as_str()
            .is_some_and(|e| e.starts_with("400 invalid request")),
        "{stats}"
    );
    assert_eq!(endpoint("report")["num_requests"], 0, "{stats}");
}
