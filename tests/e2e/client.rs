//! The command-line client and scheduled reports, against a running pipeline.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::helpers::{App, NatsServer, cli, publish_all, wait_until};

const WAIT: Duration = Duration::from_secs(60);

fn stdout(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_client_prints_tables_and_json() {
    let nats = NatsServer::start();
    let app = App::start(&nats.url(), "retention:\n  raw_events: 36500\n");
    let js = nats.jetstream().await;
    let events: Vec<(String, Vec<u8>)> = (0..6)
        .map(|i| {
            let t = if i % 2 == 0 {
                "message.received"
            } else {
                "message.sent"
            };
            let body = json!({"id": format!("c{i}"), "propertyId": "p_cli", "channel": "sms",
                              "timestamp": format!("2026-11-24T1{i}:15:00Z")});
            (
                format!("butler.events.{t}"),
                serde_json::to_vec(&body).unwrap(),
            )
        })
        .collect();
    publish_all(&js, events).await;
    wait_until(WAIT, "stored", || async { app.event_count().await == 6 }).await;
    let config = app.config_path();
    stdout(&cli(
        &config,
        &[
            "aggregate",
            "--job",
            "all",
            "--from",
            "2026-11-24",
            "--to",
            "2026-11-25",
        ],
        &[],
    ));

    let out = stdout(&cli(
        &config,
        &[
            "query",
            "dashboard",
            "--property",
            "p_cli",
            "--as-of",
            "2026-11-24T23:00:00Z",
        ],
        &[],
    ));
    assert!(
        out.contains("messages received") && out.contains("active conversations"),
        "{out}"
    );
    let json_out = stdout(&cli(
        &config,
        &[
            "query",
            "dashboard",
            "--property",
            "p_cli",
            "--as-of",
            "2026-11-24T23:00:00Z",
            "--json",
        ],
        &[],
    ));
    let d: Value = serde_json::from_str(&json_out).unwrap();
    assert_eq!(d["today"]["messagesReceived"], 3);
    assert_eq!(d["today"]["messagesSent"], 3);

    let out = stdout(&cli(
        &config,
        &[
            "query",
            "timeseries",
            "--metric",
            "message_counts.count",
            "--granularity",
            "hour",
            "--from",
            "2026-11-24",
            "--to",
            "2026-11-25",
            "--property",
            "p_cli",
            "--dimension",
            "direction",
        ],
        &[],
    ));
    assert!(
        out.contains("2026-11-24T10:00:00Z") && out.contains("inbound") && out.contains("6 rows"),
        "{out}"
    );

    let out = stdout(&cli(
        &config,
        &[
            "report",
            "--property",
            "p_cli",
            "--from",
            "2026-11-24",
            "--to",
            "2026-11-25",
        ],
        &[],
    ));
    let total = out
        .lines()
        .find(|l| l.contains("totalMessages"))
        .unwrap_or_default();
    assert!(total.trim_end().ends_with(" 6"), "{out}");
    let csv_out = stdout(&cli(
        &config,
        &[
            "report",
            "--property",
            "p_cli",
            "--from",
            "2026-11-24",
            "--to",
            "2026-11-25",
            "--format",
            "csv",
        ],
        &[],
    ));
    assert!(
        csv_out.starts_with("section,item,metric,value")
            && csv_out.contains("summary,,totalMessages,6"),
        "{csv_out}"
    );

    let out = cli(
        &config,
        &[
            "query",
            "timeseries",
            "--metric",
            "response_times.p95_ms",
            "--granularity",
            "hour",
            "--from",
            "2026-11-24",
            "--to",
            "2026-11-25",
            "--property",
            "p_cli",
        ],
        &[],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("400") && err.contains("channel"), "{err}");
    assert!(!err.contains("INFO"), "one-shot commands stay quiet: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_reports_are_written_and_announced() {
    let nats = NatsServer::start();
    let reports = tempfile::tempdir().unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut announcements = client
        .subscribe("analytics.reports.generated")
        .await
        .unwrap();
    let app = App::start(
        &nats.url(),
        &format!(
            "reports:\n  storage: {}\n  schedule: [{{type: daily, cron: '*/2 * * * * *'}}]\n",
            reports.path().display()
        ),
    );
    let js = nats.jetstream().await;
    let yesterday = chrono::Utc::now().date_naive() - chrono::Days::new(1);
    let body =
        json!({"id": "y1", "propertyId": "p_sched", "timestamp": format!("{yesterday}T12:00:00Z")});
    publish_all(
        &js,
        vec![(
            "butler.events.conversation.started".into(),
            serde_json::to_vec(&body).unwrap(),
        )],
    )
    .await;
    wait_until(WAIT, "stored", || async { app.event_count().await == 1 }).await;

    let note = tokio::time::timeout(WAIT, async {
        loop {
            let msg = announcements.next().await.unwrap();
            let note: Value = serde_json::from_slice(&msg.payload).unwrap();
            if note["propertyId"] == "p_sched" {
                return note;
            }
        }
    })
    .await
    .expect("an announcement");
    assert_eq!(note["type"], "daily");
    assert_eq!(note["period"]["start"], yesterday.to_string());
    let files: Vec<&str> = note["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(files.len(), 2, "json and csv");
    for f in files {
        assert!(std::path::Path::new(f).is_file(), "{f}");
        assert!(f.starts_with(reports.path().to_str().unwrap()));
    }
    let json_file = reports.path().join("p_sched").join(format!(
        "daily_{yesterday}_{}.json",
        yesterday + chrono::Days::new(1)
    ));
    let report: Value = serde_json::from_slice(&std::fs::read(json_file).unwrap()).unwrap();
    assert_eq!(report["sections"]["summary"]["totalConversations"], 1);
}
