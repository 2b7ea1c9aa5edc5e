//! The operators' tools against a real deployment under the shipped permissions:
//! `validate` says what the pipeline will meet (and fails on what would stop it),
//! `tap` shows the events as the pipeline judges them without taking them from its
//! durable consumer.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{
    App, NatsServer, cli, consumer_info, message_event, pipeline_bin, publish_all, wait_until,
};
use crate::security::permissions_conf;

const WAIT: Duration = Duration::from_secs(60);

/// `validate --json` with extra environment: its exit code and each check's
/// `(outcome, detail)` by name.
fn validate(app: &App, env: &[(&str, &str)]) -> (i32, serde_json::Map<String, Value>) {
    let out = cli(&app.config_path(), &["validate", "--json"], env);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let parsed: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    let checks = parsed["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["check"].as_str().unwrap().to_owned(),
                serde_json::json!([c["outcome"], c["detail"]]),
            )
        })
        .collect();
    (out.status.code().unwrap_or(-1), checks)
}

fn outcome<'a>(checks: &'a serde_json::Map<String, Value>, name: &str) -> (&'a str, &'a str) {
    let check = checks
        .get(name)
        .unwrap_or_else(|| panic!("no check {name}: {checks:?}"));
    (check[0].as_str().unwrap(), check[1].as_str().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_reports_each_check_and_fails_on_what_would_stop_the_pipeline() {
    let nats = NatsServer::start_with(Some(&permissions_conf("pw-validate")));
    let mut app = App::prepare(
        &nats.url(),
        "nats:\n  user: analytics\n  password: pw-validate\n",
        None,
    );
    // Before the first start: nothing exists yet, and all of it may be created.
    let (code, checks) = validate(&app, &[]);
    assert_eq!(code, 0, "{checks:?}");
    for name in [
        "config",
        "nats",
        "jetstream",
        "stream",
        "consumer",
        "subscriptions",
        "buckets",
        "database",
        "reports",
        "metrics",
    ] {
        assert_eq!(outcome(&checks, name).0, "ok", "{name}: {checks:?}");
    }
    assert!(
        outcome(&checks, "stream").1.contains("absent"),
        "{checks:?}"
    );
    assert!(
        outcome(&checks, "nats").1.contains("authenticated"),
        "{checks:?}"
    );
    if !app.on_postgres() {
        assert!(
            outcome(&checks, "database").1.contains("absent"),
            "{checks:?}"
        );
        assert!(!app.db_path().exists(), "validate created the database");
    }

    // Running: the stream, the consumer and the schema are there, all as configured.
    app.restart();
    let (code, checks) = validate(&app, &[]);
    assert_eq!(code, 0, "{checks:?}");
    for (name, check) in &checks {
        assert_eq!(check[0], "ok", "{name}: {checks:?}");
    }
    assert!(
        outcome(&checks, "stream")
            .1
            .contains("BUTLER_EVENTS: 0 messages"),
        "{checks:?}"
    );
    assert!(
        outcome(&checks, "consumer").1.contains("0 pending"),
        "{checks:?}"
    );
    assert!(
        outcome(&checks, "database").1.contains("schema up to date"),
        "{checks:?}"
    );

    // The metrics address held by the running pipeline is fine; held by another
    // program, the start would fail.
    let held = format!("127.0.0.1:{}", app.metrics_port().unwrap());
    let (_, checks) = validate(&app, &[("BUTLER_ANALYTICS__METRICS__LISTEN", &held)]);
    let (metrics, why) = outcome(&checks, "metrics");
    assert!(
        metrics == "ok" && why.contains("held by the pipeline"),
        "{checks:?}"
    );
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other_addr = other.local_addr().unwrap().to_string();
    let (code, checks) = validate(&app, &[("BUTLER_ANALYTICS__METRICS__LISTEN", &other_addr)]);
    assert_eq!(code, 2, "{checks:?}");
    assert_eq!(outcome(&checks, "metrics").0, "fail", "{checks:?}");
    drop(other);

    // A wrong password: NATS fails, and what needs it is not checked.
    let (code, checks) = validate(&app, &[("BUTLER_ANALYTICS__NATS__PASSWORD", "wrong")]);
    assert_eq!(code, 2, "{checks:?}");
    let (nats_check, why) = outcome(&checks, "nats");
    assert!(
        nats_check == "fail" && why.contains("refused the credentials"),
        "{checks:?}"
    );
    assert_eq!(outcome(&checks, "stream").0, "skipped", "{checks:?}");
    assert_eq!(outcome(&checks, "database").0, "ok", "{checks:?}");

    // A user without the pipeline's grants: the stream and the subscriptions fail,
    // each naming what the server refused.
    let reader = [
        ("BUTLER_ANALYTICS__NATS__USER", "reader"),
        ("BUTLER_ANALYTICS__NATS__PASSWORD", "reader-pw"),
    ];
    let (code, checks) = validate(&app, &reader);
    assert_eq!(code, 2, "{checks:?}");
    let (stream, why) = outcome(&checks, "stream");
    assert!(
        stream == "fail" && why.contains("Permissions Violation"),
        "{checks:?}"
    );
    let (subscriptions, why) = outcome(&checks, "subscriptions");
    assert!(
        subscriptions == "fail" && why.contains("analytics.query."),
        "{checks:?}"
    );

    // A schema written by a newer version: refused before the pipeline would be.
    let db = app.db().await;
    db.execute(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99990101000000, 'a newer version', TRUE, x'00', 0)"
            .replace(
                "x'00'",
                if app.on_postgres() {
                    "'\\x00'::bytea"
                } else {
                    "x'00'"
                },
            )
            .as_str(),
    )
    .await;
    db.close().await;
    let (code, checks) = validate(&app, &[]);
    assert_eq!(code, 2, "{checks:?}");
    let (database, why) = outcome(&checks, "database");
    assert!(
        database == "fail" && why.contains("newer version"),
        "{checks:?}"
    );

    // The text form: one line per check.
    let out = cli(&app.config_path(), &["validate"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 10, "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("database") && l.contains("FAIL")),
        "{text}"
    );
    assert!(!text.contains("pw-validate"), "{text}");
}

/// A `tap` process whose stdout and stderr lines arrive on channels; killed if the
/// test ends first.
struct Tap {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    said: std::sync::mpsc::Receiver<String>,
}

/// Each line `from` gives, sent on a channel by a thread of its own.
fn lines_of(from: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Drop for Tap {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Tap {
    fn start(app: &App, args: &[&str], env: &[(&str, &str)]) -> Tap {
        let mut child = Command::new(pipeline_bin())
            .arg("--config")
            .arg(app.config_path())
            .arg("tap")
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = lines_of(child.stdout.take().unwrap());
        let said = lines_of(child.stderr.take().unwrap());
        Tap { child, lines, said }
    }

    /// Waits for tap to say it follows the stream (its consumer exists), and returns
    /// what it said (log lines before it, as `RUST_LOG` may ask for, are passed over).
    fn wait_following(&mut self) -> String {
        loop {
            let said = self.said.recv_timeout(WAIT).expect("tap said nothing");
            if said.starts_with("following ") {
                return said;
            }
        }
    }

    /// Every line until the process exits (it must, within `WAIT`), and its status.
    fn finish(&mut self) -> (Vec<Value>, bool) {
        let deadline = std::time::Instant::now() + WAIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(std::time::Instant::now() < deadline, "tap did not stop");
            std::thread::sleep(Duration::from_millis(50));
        };
        let lines = self
            .lines
            .iter()
            .map(|l| serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        (lines, status.success())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tap_shows_events_as_judged_without_taking_them_from_the_pipeline() {
    let nats = NatsServer::start_with(Some(&permissions_conf("pw-tap")));
    let app = App::start(
        &nats.url(),
        "nats:\n  user: analytics\n  password: pw-tap\n",
    );
    let operator = [
        ("BUTLER_ANALYTICS__NATS__USER", "operator"),
        ("BUTLER_ANALYTICS__NATS__PASSWORD", "operator-pw"),
    ];
    let as_user = |user: &str, password: &str| {
        async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
    };
    let producer = nats.jetstream_as(as_user("producer", "producer-pw")).await;
    let js = nats.jetstream_as(as_user("analytics", "pw-tap")).await;
    let other = serde_json::to_vec(&serde_json::json!({
        "id": "tap-other", "propertyId": "prop_other", "channel": "sms"
    }))
    .unwrap();
    publish_all(
        &producer,
        vec![
            (
                "butler.events.message.received".into(),
                message_event("tap-1"),
            ),
            ("butler.events.message.received".into(), other),
            (
                "butler.events.message.sent".into(),
                br#"{"propertyId":"prop_test","channel":"pigeon"}"#.to_vec(),
            ),
            ("butler.events.message.sent".into(), message_event("tap-2")),
        ],
    )
    .await;
    wait_until(WAIT, "the pipeline has taken all four", || async {
        let info = consumer_info(&js).await;
        info.num_pending == 0 && info.num_ack_pending == 0
    })
    .await;

    // Three messages back through the stream (not the first, tap-1), one property:
    // the rejected message that names it, with its dead-letter reason, and tap-2.
    let mut tap = Tap::start(
        &app,
        &[
            "--last",
            "3",
            "--property",
            "prop_test",
            "--limit",
            "2",
            "--json",
        ],
        &operator,
    );
    assert_eq!(
        tap.wait_following(),
        "following butler.events.> on stream BUTLER_EVENTS from sequence 2; Ctrl-C stops"
    );
    let (lines, ok) = tap.finish();
    assert!(ok, "{lines:?}");
    let seen: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| {
            (
                l["outcome"].as_str().unwrap(),
                l["id"].as_str().or(l["reason"].as_str()).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [("rejected", "invalid_channel"), ("valid", "tap-2")],
        "{lines:?}"
    );

    // Following: only what arrives after it starts, of the type asked for.
    let mut tap = Tap::start(
        &app,
        &["--type", "message.sent", "--limit", "1", "--json"],
        &operator,
    );
    assert_eq!(
        tap.wait_following(),
        "following butler.events.message.sent on stream BUTLER_EVENTS from the next message; Ctrl-C stops"
    );
    publish_all(
        &producer,
        vec![
            (
                "butler.events.message.received".into(),
                message_event("tap-3"),
            ),
            ("butler.events.message.sent".into(), message_event("tap-4")),
        ],
    )
    .await;
    let (lines, ok) = tap.finish();
    assert!(ok, "{lines:?}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["id"], "tap-4", "{lines:?}");
    assert_eq!(lines[0]["eventType"], "message.sent", "{lines:?}");

    // The pipeline stored every event once and holds nothing unacked: tap took none.
    wait_until(WAIT, "all five events stored by the pipeline", || async {
        app.event_count().await == 5
    })
    .await;
    wait_until(WAIT, "every message acked by the pipeline", || async {
        let info = consumer_info(&js).await;
        (
            info.num_pending,
            info.num_ack_pending,
            info.delivered.stream_sequence,
        ) == (0, 0, 6)
    })
    .await;
}
