//! Reloading the configuration of a running pipeline: SIGHUP, and `run
//! --watch-config`. What can change at once does, what needs a restart is named, a bad
//! file is refused, and no event is lost across reloads.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{App, NatsServer, message_events, publish_all, request, wait_until};

const WAIT: Duration = Duration::from_secs(60);

/// Seldom: the hourly job runs once at start, then not within any test.
const YEARLY: &str = "0 0 1 1 *";
/// Every second (croner's optional seconds field).
const EVERY_SECOND: &str = "* * * * * *";

fn runs(app: &App) -> f64 {
    app.metric(
        r#"butler_analytics_aggregation_runs_total{aggregation_job="hourly_message_counts"}"#,
    )
}

fn reloads(app: &App, outcome: &str) -> f64 {
    app.metric(&format!(
        r#"butler_analytics_config_reloads_total{{outcome="{outcome}"}}"#
    ))
}

/// The config file with `body` for the keys a test changes, after the lines the
/// helper wrote (NATS, storage, reports, metrics), which stay as they are.
fn rewrite(app: &App, body: &str) {
    let path = app.config_path();
    let written = std::fs::read_to_string(&path).unwrap();
    let base = written
        .split("# -- reloaded below --\n")
        .next()
        .unwrap()
        .to_owned();
    std::fs::write(&path, format!("{base}# -- reloaded below --\n{body}")).unwrap();
}

fn hourly_schedule(expression: &str) -> String {
    format!("aggregation:\n  schedules:\n    hourly_message_counts: '{expression}'\n")
}

/// The schedule the running process reports for the hourly job.
async fn running_schedule(client: &async_nats::Client) -> String {
    let reply = request(client, "analytics.admin.status", "{}").await;
    let status: Value = serde_json::from_slice(&reply.payload).unwrap();
    status["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job"] == "hourly_message_counts")
        .map(|j| j["schedule"].as_str().unwrap().to_owned())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_what_it_can_names_the_rest_and_refuses_a_bad_file() {
    let nats = NatsServer::start();
    let mut app = App::prepare(&nats.url(), "", None);
    rewrite(&app, &hourly_schedule(YEARLY));
    app.restart();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = nats.jetstream().await;
    let events = message_events("reload", 300);
    publish_all(&js, events[..100].to_vec()).await;
    wait_until(WAIT, "the start-up run", || async { runs(&app) >= 1.0 }).await;
    assert_eq!(running_schedule(&client).await, YEARLY);

    // A schedule every second, and a key that needs a restart.
    rewrite(
        &app,
        &format!(
            "{}ingest:\n  batch_size: 7\n",
            hourly_schedule(EVERY_SECOND)
        ),
    );
    app.signal(libc::SIGHUP);
    wait_until(WAIT, "the reload applied", || async {
        reloads(&app, "applied") == 1.0
    })
    .await;
    let before = runs(&app);
    wait_until(WAIT, "the job running every second", || async {
        runs(&app) >= before + 2.0
    })
    .await;
    assert_eq!(running_schedule(&client).await, EVERY_SECOND);
    let log = app.log();
    assert!(
        log.contains("configuration reloaded")
            && log.contains("aggregation.schedules.hourly_message_counts"),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("only after a restart") && l.contains("ingest.batch_size")),
        "{log}"
    );
    publish_all(&js, events[100..200].to_vec()).await;

    // A bad file: refused, the running configuration kept (still every second).
    rewrite(
        &app,
        "aggregation:\n  shedules:\n    hourly_message_counts: '0 * * * *'\n",
    );
    app.signal(libc::SIGHUP);
    wait_until(WAIT, "the reload refused", || async {
        reloads(&app, "refused") == 1.0
    })
    .await;
    assert!(
        app.log()
            .lines()
            .any(|l| l.contains("reload refused") && l.contains("shedules")),
        "{}",
        app.log()
    );
    let before = runs(&app);
    wait_until(WAIT, "the job still running every second", || async {
        runs(&app) >= before + 2.0
    })
    .await;
    assert_eq!(running_schedule(&client).await, EVERY_SECOND);

    // Quieter logs: `log.level: warn` silences the INFO line of each run.
    rewrite(
        &app,
        &format!("{}log:\n  level: warn\n", hourly_schedule(EVERY_SECOND)),
    );
    app.signal(libc::SIGHUP);
    wait_until(WAIT, "the log level reloaded", || async {
        reloads(&app, "applied") == 2.0
    })
    .await;
    let logged = app.log().matches("aggregation run").count();
    let before = runs(&app);
    wait_until(WAIT, "two more runs", || async {
        runs(&app) >= before + 2.0
    })
    .await;
    assert_eq!(
        app.log().matches("aggregation run").count(),
        logged,
        "INFO lines written after log.level: warn"
    );

    // Back to yearly: the every-second loop stops, and every event was stored once.
    rewrite(&app, &hourly_schedule(YEARLY));
    app.signal(libc::SIGHUP);
    wait_until(WAIT, "the last reload applied", || async {
        reloads(&app, "applied") == 3.0
    })
    .await;
    assert_eq!(running_schedule(&client).await, YEARLY);
    publish_all(&js, events[200..].to_vec()).await;
    wait_until(WAIT, "every event stored", || async {
        app.event_count().await == 300
    })
    .await;
    assert!(app.is_running());
    assert!(app.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_watch_config_a_changed_file_is_reloaded() {
    let nats = NatsServer::start();
    let mut app = App::prepare(&nats.url(), "", None);
    rewrite(&app, &hourly_schedule(YEARLY));
    app.add_run_flag("--watch-config");
    app.restart();
    let client = async_nats::connect(nats.url()).await.unwrap();
    assert_eq!(running_schedule(&client).await, YEARLY);
    rewrite(&app, &hourly_schedule(EVERY_SECOND));
    wait_until(WAIT, "the changed file reloaded", || async {
        reloads(&app, "applied") == 1.0
    })
    .await;
    assert_eq!(running_schedule(&client).await, EVERY_SECOND);
    assert!(app.log().contains("the file changed"), "{}", app.log());
}

/// The daily conversation job run now over `day` by the running process, and its
/// row of `p_sla`: first responses, those within the target, their mean business ms.
async fn sla_figures(client: &async_nats::Client, app: &App, day: chrono::NaiveDate) -> Vec<i64> {
    let body = serde_json::json!({
        "job": "daily_conversation_metrics",
        "from": day.to_string(),
        "to": (day + chrono::Duration::days(1)).to_string(),
    });
    let reply = request(client, "analytics.admin.aggregate", body.to_string()).await;
    let reply: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(reply["runs"][0]["rowsWritten"], 1, "{reply}");
    let db = app.db().await;
    let row = db
        .rows(
            "SELECT CAST(first_responses AS BIGINT), CAST(first_response_sla_met AS BIGINT), \
             CAST(avg_first_response_business_ms AS BIGINT) \
             FROM agg_conversation_metrics_daily WHERE property_id = 'p_sla'",
        )
        .await;
    db.close().await;
    row[0].iter().map(|v| v.as_i64().unwrap()).collect()
}

/// §8's business hours and SLA targets reload into the next run of a running
/// process: the same first responses meet a target once it is raised, and count no
/// business time once the property is closed all week; a schedule with overlapping
/// intervals is refused naming its key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn business_hours_and_sla_reload_into_the_next_run() {
    let nats = NatsServer::start();
    let mut app = App::prepare(&nats.url(), "", None);
    rewrite(&app, "sla:\n  first_response_ms: 1000\n");
    app.restart();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = nats.jetstream().await;
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1)).date_naive();
    let responses: Vec<(String, Vec<u8>)> = (1..=3)
        .map(|i| {
            let event = serde_json::json!({
                "id": format!("sla-{i}"),
                "propertyId": "p_sla",
                "channel": "whatsapp",
                "conversationId": format!("c{i}"),
                "timestamp": format!("{yesterday}T12:0{i}:00Z"),
                "durationMs": 5000,
            });
            (
                "butler.events.response.time_recorded".to_owned(),
                event.to_string().into_bytes(),
            )
        })
        .collect();
    publish_all(&js, responses).await;
    wait_until(WAIT, "stored", || async { app.event_count().await == 3 }).await;
    // Open around the clock, a 1 s target: 5 s responses miss it.
    assert_eq!(sla_figures(&client, &app, yesterday).await, [3, 0, 5000]);

    rewrite(&app, "sla:\n  first_response_ms: 10000\n");
    app.signal(libc::SIGHUP);
    wait_until(WAIT, "the SLA reloaded", || async {
        reloads(&app, "applied") == 1.0
    })
    .await;
    assert_eq!(sla_figures(&client, &app, yesterday).await, [3, 3, 5000]);

    // Closed all week (a weekday named, with no interval): no business time, so even
    // a 1 s target is met.
    rewrite(
        &app,
        "sla:\n  first_response_ms: 1000\nbusiness_hours:\n  default:\n    mon: []\n",
    );
    app.signal(libc::SIGHUP);
    wait_until(WAIT, "the business hours reloaded", || async {
        reloads(&app, "applied") == 2.0
    })
    .await;
    assert!(
        app.log()
            .lines()
            .any(|l| l.contains("configuration reloaded")
                && l.contains("business_hours.default.mon")
                && l.contains("sla.first_response_ms")),
        "{}",
        app.log()
    );
    assert_eq!(sla_figures(&client, &app, yesterday).await, [3, 3, 0]);

    rewrite(
        &app,
        "business_hours:\n  default:\n    tue: ['08:00-12:00', '11:00-13:00']\n",
    );
    app.signal(libc::SIGHUP);
    wait_until(WAIT, "the reload refused", || async {
        reloads(&app, "refused") == 1.0
    })
    .await;
    assert!(
        app.log()
            .lines()
            .any(|l| l.contains("reload refused") && l.contains("business_hours.default.tue")),
        "{}",
        app.log()
    );
    assert_eq!(sla_figures(&client, &app, yesterday).await, [3, 3, 0]);
}
