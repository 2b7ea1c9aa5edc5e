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
