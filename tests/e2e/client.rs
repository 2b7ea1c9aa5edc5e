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
    let out = stdout(&cli(
        &config,
        &[
            "aggregate",
            "--job",
            "all",
            "--from",
            "2026-11-24",
            "--to",
            "2026-11-25",
            "--json",
        ],
        &[],
    ));
    // The same shape as analytics.admin.aggregate's reply.
    let runs: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(runs["runs"].as_array().unwrap().len(), 10, "{runs}");
    assert!(
        runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["job"].is_string()
                && r["periodsRecomputed"].is_u64()
                && r["rowsWritten"].is_u64()
                && r["ms"].is_u64())
    );
    let cleanup: Value =
        serde_json::from_str(&stdout(&cli(&config, &["cleanup", "--json"], &[]))).unwrap();
    assert!(cleanup["deleted"].is_object(), "{cleanup}");
    assert_eq!(cleanup["deleted"]["analytics_events"], 0, "{cleanup}");
    if !app.on_postgres() {
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("copy.db");
        let out = stdout(&cli(
            &config,
            &["backup", copy.to_str().unwrap(), "--json"],
            &[],
        ));
        let backup: Value = serde_json::from_str(&out).unwrap();
        assert!(backup["bytes"].as_u64().unwrap() > 0, "{backup}");
    }

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

    // The catalogue, as a table and as JSON.
    let out = stdout(&cli(&config, &["query", "metrics"], &[]));
    assert!(
        out.contains("message_counts.count") && out.contains("direction") && out.contains("hour"),
        "{out}"
    );
    let out = stdout(&cli(&config, &["query", "metrics", "--json"], &[]));
    let catalogue: Value = serde_json::from_str(&out).unwrap();
    assert!(
        catalogue["day"]["metrics"]
            .as_array()
            .is_some_and(|m| !m.is_empty())
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
    // Schedules run in a zone where it is about noon: "yesterday" stays the same day
    // for the whole test.
    let zone = crate::helpers::midday_zone();
    let app = App::start(
        &nats.url(),
        &format!(
            "aggregation:\n  timezone: {zone}\nreports:\n  storage: {}\n  schedule: [{{type: daily, cron: '*/2 * * * * *'}}]\n",
            reports.path().display()
        ),
    );
    let js = nats.jetstream().await;
    let tz: chrono_tz::Tz = zone.parse().unwrap();
    let yesterday = chrono::Utc::now().with_timezone(&tz).date_naive() - chrono::Days::new(1);
    let noon = yesterday
        .and_hms_opt(12, 0, 0)
        .unwrap()
        .and_local_timezone(tz)
        .unwrap()
        .to_rfc3339();
    let body = json!({"id": "y1", "propertyId": "p_sched", "timestamp": noon});
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

/// The command line without a config or a server: `args` run from a scratch folder.
fn offline(args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    std::process::Command::new(crate::helpers::pipeline_bin())
        .args(args)
        .current_dir(dir.path())
        .output()
        .unwrap()
}

/// Closed sets are listed in `--help` and refused before anything is sent.
#[test]
fn closed_sets_are_listed_and_checked_by_the_command_line() {
    let help = stdout(&offline(&["aggregate", "--help"]));
    for job in ["hourly_message_counts", "monthly_summary", "all"] {
        assert!(help.contains(job), "{help}");
    }
    let help = stdout(&offline(&["report", "--help"]));
    assert!(
        help.contains("daily") && help.contains("weekly") && help.contains("csv"),
        "{help}"
    );
    assert!(help.contains("satisfaction"), "{help}");
    let help = stdout(&offline(&["dead-letters", "list", "--help"]));
    assert!(help.contains("invalid_channel"), "{help}");
    // No NATS answers here: the refusal comes from the command line itself.
    let out = offline(&[
        "report",
        "--type",
        "yearly",
        "--property",
        "p",
        "--from",
        "2026-11-01",
        "--to",
        "2026-11-02",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("yearly") && err.contains("monthly"), "{err}");
    let out = offline(&[
        "query",
        "timeseries",
        "--granularity",
        "fortnight",
        "--metric",
        "m",
        "--from",
        "2026-11-01",
        "--to",
        "2026-11-02",
        "--property",
        "p",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let out = offline(&[
        "query",
        "timeseries",
        "--granularity",
        "hour",
        "--metric",
        "message_counts.count",
        "--from",
        "2026-11-01",
        "--to",
        "2026-11-02",
        "--property",
        "p",
        "--dimension",
        "chanel",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("chanel") && err.contains("channel, direction, staff_id, intent"),
        "{err}"
    );
}

/// The lines `shell args…` prints; it must succeed.
fn shell_lines(shell: &str, args: &[&str]) -> Vec<String> {
    let out = std::process::Command::new(shell)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{shell} is needed (make test installs it): {e}"));
    assert!(
        out.status.success(),
        "{shell}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `completions` prints scripts the shells accept.
#[test]
fn completions_are_scripts_the_shells_accept() {
    let bash = stdout(&offline(&["completions", "bash"]));
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("butler-analytics.bash");
    std::fs::write(&script, bash).unwrap();
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && complete -p butler-analytics",
            script.display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("butler-analytics"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Past the first word: bash's completion function, called as bash calls it
    // (command, word being completed, previous word), offers what clap knows.
    let complete = |words: &[&str]| -> Vec<String> {
        let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
        shell_lines(
            "bash",
            &[
                "-c",
                &format!(
                    "source {script} && COMP_WORDS=({words}) && COMP_CWORD={cword} && \
                 _butler__analytics butler-analytics '{cur}' '{prev}' && printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                    script = script.display(),
                    words = quoted.join(" "),
                    cword = words.len() - 1,
                    cur = words[words.len() - 1],
                    prev = words[words.len() - 2],
                ),
            ],
        )
    };
    assert_eq!(complete(&["butler-analytics", "dead-l"]), ["dead-letters"]);
    assert_eq!(
        complete(&["butler-analytics", "query", "dash"]),
        ["dashboard"]
    );
    let jobs = complete(&["butler-analytics", "aggregate", "--job", ""]);
    assert!(
        jobs.contains(&"weekly_satisfaction_trends".to_owned()) && jobs.contains(&"all".to_owned()),
        "{jobs:?}"
    );
    let options = complete(&["butler-analytics", "aggregate", "--"]);
    assert!(options.contains(&"--from".to_owned()), "{options:?}");
    for (shell, check) in [("zsh", "-n"), ("fish", "--no-execute")] {
        let text = stdout(&offline(&["completions", shell]));
        assert!(text.contains("butler-analytics"), "{shell}");
        let path = dir.path().join(format!("completion.{shell}"));
        std::fs::write(&path, text).unwrap();
        // Checked by the shell itself (make test installs both).
        shell_lines(shell, &[check, &path.to_string_lossy()]);
    }
    // fish, asked as it asks when TAB is pressed: the candidates past the first word.
    let fish_complete = |line: &str| -> Vec<String> {
        let script = dir.path().join("completion.fish");
        let command = format!("source {}; complete -C '{line}'", script.display());
        shell_lines("fish", &["--no-config", "-c", &command])
            .into_iter()
            .map(|l| l.split('\t').next().unwrap_or(&l).to_owned())
            .collect()
    };
    let jobs = fish_complete("butler-analytics aggregate --job ");
    assert!(
        jobs.contains(&"weekly_satisfaction_trends".to_owned()) && jobs.contains(&"all".to_owned()),
        "{jobs:?}"
    );
    assert!(
        fish_complete("butler-analytics dead-l").contains(&"dead-letters".to_owned()),
        "{:?}",
        fish_complete("butler-analytics dead-l")
    );
    // zsh, the same way: its completion function run by compinit in a terminal.
    let zsh_complete = |line: &str| -> Vec<String> {
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shells/zsh-complete.zsh");
        let functions = dir.path().join("zsh-functions");
        std::fs::create_dir_all(&functions).unwrap();
        std::fs::copy(
            dir.path().join("completion.zsh"),
            functions.join("_butler-analytics"),
        )
        .unwrap();
        let mut lines = shell_lines(
            "zsh",
            &[
                "-f",
                &script.to_string_lossy(),
                &functions.to_string_lossy(),
                line,
            ],
        );
        lines.sort();
        lines.dedup();
        lines
    };
    let jobs = zsh_complete("butler-analytics aggregate --job ");
    assert!(
        jobs.contains(&"weekly_satisfaction_trends".to_owned()) && jobs.contains(&"all".to_owned()),
        "{jobs:?}"
    );
    assert_eq!(zsh_complete("butler-analytics dead-l"), ["dead-letters"]);
    assert_eq!(zsh_complete("butler-analytics query dash"), ["dashboard"]);
    let types = zsh_complete("butler-analytics tap --type message.");
    assert!(types.contains(&"message.received".to_owned()), "{types:?}");
    let types = fish_complete("butler-analytics tap --type message.");
    assert!(types.contains(&"message.received".to_owned()), "{types:?}");
}

/// Reports whose fire times passed while no pipeline ran are made up at the next
/// start, each period once and announced once; a restart with nothing missed makes
/// none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_reports_missed_while_down_are_made_up_once() {
    use chrono::{Days, Timelike, Utc};
    use futures_util::FutureExt;

    let nats = NatsServer::start();
    let reports = tempfile::tempdir().unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut announcements = client
        .subscribe("analytics.reports.generated")
        .await
        .unwrap();
    // Fire times half a day away from now: which of them have passed cannot change
    // while the test runs.
    let now = Utc::now();
    let hour = (now.hour() + 12) % 24;
    let mut app = App::start(
        &nats.url(),
        &format!(
            "retention:\n  raw_events: 36500\nreports:\n  storage: {}\n  schedule: [{{type: daily, cron: '0 {hour} * * *'}}]\n",
            reports.path().display()
        ),
    );
    let today = now.date_naive();
    let events: Vec<(String, Vec<u8>)> = (1..=6u64)
        .map(|k| {
            let day = today - Days::new(k);
            let body = json!({"id": format!("m{k}"), "propertyId": "p_missed",
                              "timestamp": format!("{day}T12:00:00Z")});
            (
                "butler.events.conversation.started".to_owned(),
                serde_json::to_vec(&body).unwrap(),
            )
        })
        .collect();
    publish_all(&nats.jetstream().await, events).await;
    wait_until(WAIT, "stored", || async { app.event_count().await == 6 }).await;
    let db = app.db().await;
    wait_until(WAIT, "the schedule's first start recorded", || async {
        db.count("SELECT count(*) FROM report_schedule_fires").await == 1
    })
    .await;
    assert!(app.terminate().success());

    // As if the pipeline had stopped four days ago, a minute before that day's fire.
    let day = today - Days::new(4);
    let last = day.and_hms_opt(hour, 0, 0).unwrap().and_utc() - chrono::Duration::minutes(1);
    db.execute(&format!(
        "UPDATE report_schedule_fires SET last_fire = '{}'",
        last.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    ))
    .await;
    let mut fires: Vec<_> = (1..=4u64).map(|k| today - Days::new(k)).collect();
    if now.hour() >= hour {
        fires.push(today);
    }
    let mut expected: Vec<String> = fires
        .iter()
        .map(|d| (*d - Days::new(1)).to_string())
        .collect();
    expected.sort();
    app.restart();
    let mut made_up = Vec::new();
    tokio::time::timeout(WAIT, async {
        while made_up.len() < expected.len() {
            let msg = announcements.next().await.unwrap();
            let note: Value = serde_json::from_slice(&msg.payload).unwrap();
            if note["propertyId"] == "p_missed" {
                assert_eq!(note["madeUp"], true, "{note}");
                assert_eq!(note["files"].as_array().map(Vec::len), Some(2), "{note}");
                made_up.push(note["period"]["start"].as_str().unwrap().to_owned());
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("made up {made_up:?} of {expected:?}:\n{}", app.log()));
    made_up.sort();
    assert_eq!(made_up, expected, "each missed period once");
    for start in &expected {
        let start: chrono::NaiveDate = start.parse().unwrap();
        let file = reports
            .path()
            .join("p_missed")
            .join(format!("daily_{start}_{}.json", start + Days::new(1)));
        let report: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(report["sections"]["summary"]["totalConversations"], 1);
    }

    // Nothing missed since: a restart makes up nothing.
    assert!(app.terminate().success());
    app.restart();
    let checked = tokio::time::timeout(WAIT, async {
        while !app.log().contains("no scheduled report missed") {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(checked.is_ok(), "{}", app.log());
    // Announcements sent before this reply arrive before it, on this connection.
    crate::helpers::request(&client, "analytics.admin.status", "{}").await;
    assert!(
        announcements.next().now_or_never().is_none(),
        "nothing announced again"
    );
    db.close().await;
}

/// `publish`: one event or a file of them, each stored once; `--json` tells each
/// stream sequence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_sends_events_by_hand_and_says_where_they_are() {
    let nats = NatsServer::start();
    let app = App::start(&nats.url(), "");
    let out = cli(
        &app.config_path(),
        &[
            "publish",
            "message.received",
            r#"{"id":"hand-1","propertyId":"p_hand","channel":"sms","timestamp":"2026-11-24T10:00:00Z"}"#,
            "--json",
        ],
        &[],
    );
    let said: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        said,
        json!({"published": [{"subject": "butler.events.message.received",
                              "stream": "BUTLER_EVENTS", "sequence": 1, "duplicate": false}]})
    );
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/sample-events.jsonl");
    let out = cli(&app.config_path(), &["publish", "--file", fixtures], &[]);
    let lines = stdout(&out);
    let sent = std::fs::read_to_string(fixtures).unwrap().lines().count();
    assert_eq!(lines.lines().count(), sent, "{lines}");
    assert!(
        lines
            .lines()
            .all(|l| l.contains("\tstream BUTLER_EVENTS seq ")),
        "{lines}"
    );
    // Each message is stored or kept as a dead letter, whatever the date.
    let db = app.db().await;
    wait_until(WAIT, "every message stored or kept", || async {
        app.event_count().await
            + db.count("SELECT count(*) FROM analytics_dead_letters")
                .await
            == sent as i64 + 1
    })
    .await;
    let db = app.db().await;
    assert_eq!(
        db.strings("SELECT channel FROM analytics_events WHERE id = 'hand-1'")
            .await,
        ["sms"]
    );
    db.close().await;
}
