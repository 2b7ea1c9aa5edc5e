//! A bad configuration stops start-up with a message naming the key.

use std::process::Command;

use crate::helpers::pipeline_bin;

fn run_with(yaml: &str, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let mut cmd = Command::new(pipeline_bin());
    cmd.arg("--config")
        .arg(&path)
        .args(args)
        .env("BUTLER_ANALYTICS__STORAGE__PATH", dir.path().join("a.db"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_unknown_key_stops_start_up_naming_it() {
    for command in [&["run"][..], &["check-config"], &["migrate"]] {
        let (code, _, err) = run_with("ingest:\n  batchsize: 100\n", command, &[]);
        assert_eq!(code, Some(2), "{command:?}: {err}");
        assert!(err.contains("ingest.batchsize"), "{command:?}: {err}");
    }
}

#[test]
fn a_bad_value_stops_start_up_naming_it() {
    for (yaml, key) in [
        ("ingest:\n  batch_size: -3\n", "ingest.batch_size"),
        (
            "aggregation:\n  timezone: Moon/Base\n",
            "aggregation.timezone",
        ),
        ("metrics:\n  listen: everywhere\n", "metrics.listen"),
        ("nats: [1, 2]\n", "nats"),
        ("storage:\n  url: mysql://db/analytics\n", "storage.url"),
        (
            "aggregation:\n  schedules: {hourly_message_counts: \"every hour\"}\n",
            "aggregation.schedules.hourly_message_counts",
        ),
        (
            "reports:\n  schedule: [{type: daily, cron: \"61 * * * *\"}]\n",
            "reports.schedule",
        ),
    ] {
        for command in [&["run"][..], &["check-config"]] {
            let (code, _, err) = run_with(yaml, command, &[]);
            assert_eq!(code, Some(2), "{yaml} {command:?}: {err}");
            assert!(err.contains(key), "{yaml} {command:?}: {err}");
        }
    }
}

#[test]
fn a_bad_environment_override_stops_start_up_naming_it() {
    let (code, _, err) = run_with(
        "",
        &["run"],
        &[("BUTLER_ANALYTICS__INGEST__FLUSH_INTERVAL_MS", "soon")],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("ingest.flush_interval_ms"), "{err}");
}

#[test]
fn check_config_prints_the_effective_config_without_secrets() {
    let yaml = "nats:\n  user: analytics\n  password: s3cret-pw\ningest:\n  batch_size: 250\n";
    let (code, out, err) = run_with(
        yaml,
        &["check-config"],
        &[("BUTLER_ANALYTICS__NATS__STREAM", "EVENTS_2")],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("config ok"));
    assert!(
        out.contains("batch_size: 250") && out.contains("EVENTS_2"),
        "{out}"
    );
    assert!(!out.contains("s3cret-pw") && !err.contains("s3cret-pw"));

    let (code, out, err) = run_with(yaml, &["check-config", "--json"], &[]);
    assert_eq!(code, Some(0), "{err}");
    let config: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(config["ingest"]["batch_size"], 250);
    assert_eq!(config["nats"]["user"], "analytics");
    assert!(!out.contains("s3cret-pw"), "{out}");
}

#[test]
fn a_database_password_reaches_no_output() {
    let url = "postgres://butler:s3cret-db-pw@127.0.0.1:1/analytics";
    let (code, out, err) = run_with(
        "",
        &["check-config"],
        &[("BUTLER_ANALYTICS__STORAGE__URL", url)],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("postgres://butler:***@127.0.0.1:1/analytics"),
        "{out}"
    );
    // Nothing answers on port 1: the error names the key and the database, without
    // the password.
    let (code, out, err) = run_with("", &["migrate"], &[("BUTLER_ANALYTICS__STORAGE__URL", url)]);
    assert_ne!(code, Some(0));
    assert!(
        err.contains("storage.url") && err.contains("butler:***@127.0.0.1:1"),
        "{err}"
    );
    assert!(
        !out.contains("s3cret-db-pw") && !err.contains("s3cret-db-pw"),
        "{err}"
    );
}

/// Passwords planted in every URL-bearing key — a NATS URL's user info and token, a
/// database URL's `password` query parameter — reach no output of any command.
#[test]
fn no_password_in_a_url_reaches_any_output() {
    let nats = "nats://analytics:s3cret-nats-pw@127.0.0.1:1,nats://s3cret-nats-token@127.0.0.1:2";
    let database = "postgres://127.0.0.1:1/analytics?user=butler&password=s3cret-db-pw";
    let env = [
        ("BUTLER_ANALYTICS__NATS__URL", nats),
        ("BUTLER_ANALYTICS__STORAGE__URL", database),
    ];
    let (code, out, err) = run_with("", &["check-config"], &env);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("nats://analytics:***@127.0.0.1:1,nats://***@127.0.0.1:2")
            && out.contains("postgres://127.0.0.1:1/analytics?user=butler&password=***"),
        "{out}"
    );
    let event = r#"{"id":"e1","eventType":"message.received","timestamp":"2026-12-07T10:00:00Z","propertyId":"p","channel":"sms"}"#;
    for args in [
        &["check-config"][..],
        &["check-config", "--json"],
        &["migrate"],
        &["publish", "message.received", event],
        &["status"],
        &["query", "dashboard", "--property", "p"],
    ] {
        let (_, out, err) = run_with("", args, &env);
        assert!(
            !(err.contains("Usage:") || out.is_empty() && err.is_empty()),
            "{args:?} did not run:\n{out}\n{err}"
        );
        for secret in ["s3cret-nats-pw", "s3cret-nats-token", "s3cret-db-pw"] {
            assert!(
                !out.contains(secret) && !err.contains(secret),
                "{args:?} printed {secret}:\n{out}\n{err}"
            );
        }
    }
}

#[test]
fn the_config_option_is_also_accepted_after_the_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, "ingest:\n  batch_size: 321\n").unwrap();
    let out = Command::new(pipeline_bin())
        .arg("check-config")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("batch_size: 321"));
}

/// Found only at start, a setting that cannot work is a bad configuration too: exit
/// code 2, naming the key.
#[test]
fn an_address_in_use_or_an_unusable_database_path_exits_2_naming_the_key() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let (code, _, err) = run_with(
        &format!("nats:\n  url: nats://127.0.0.1:1\nmetrics:\n  listen: {addr}\n"),
        &["run"],
        &[],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("metrics.listen"), "{err}");
    let file = tempfile::NamedTempFile::new().unwrap();
    let under_a_file = file.path().join("a.db");
    let (code, _, err) = run_with(
        "",
        &["migrate"],
        &[(
            "BUTLER_ANALYTICS__STORAGE__PATH",
            &under_a_file.to_string_lossy(),
        )],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("storage.path"), "{err}");
}
