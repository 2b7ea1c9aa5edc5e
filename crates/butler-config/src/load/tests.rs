use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn error(yaml: &str, vars: &[(&str, &str)]) -> String {
    load_from_str("test.yaml", yaml, env(vars))
        .unwrap_err()
        .to_string()
}

#[test]
fn no_file_gives_the_contract_defaults() {
    let c = load(None, env(&[])).unwrap();
    assert_eq!(c.nats.url.expose(), "nats://127.0.0.1:4222");
    assert_eq!(c.nats.subject_prefix, "butler.events");
    assert_eq!(c.nats.stream, "BUTLER_EVENTS");
    assert_eq!(c.nats.consumer, "analytics-pipeline");
    assert!(c.nats.create_stream);
    assert_eq!(c.storage.path.to_str(), Some("./data/analytics.db"));
    assert_eq!(c.ingest.batch_size, 1000);
    assert_eq!(c.ingest.flush_interval_ms, 1000);
    assert_eq!(c.ingest.channels, ["whatsapp", "sms", "email", "webchat"]);
    assert_eq!(c.ingest.max_future_skew_s, 86_400);
    assert_eq!(c.aggregation.timezone, "UTC");
    assert_eq!(c.retention.raw_events, 90);
    assert_eq!(c.retention.hourly_aggregations, 30);
    assert_eq!(c.retention.daily_aggregations, 365);
    assert_eq!(c.retention.weekly_aggregations, 730);
    assert_eq!(c.retention.monthly_aggregations, 1095);
    assert_eq!(c.retention.live_state, 7);
    assert_eq!(c.cache.ttl_ms, 60_000);
    assert_eq!(c.reports.storage.to_str(), Some("./data/reports"));
    assert_eq!(c.metrics.listen.to_string(), "127.0.0.1:9464");
    assert!(c.service.consumer && c.service.aggregator && c.service.query);
}

#[test]
fn the_contract_example_file_loads() {
    let yaml = r#"
nats:
  url: nats://127.0.0.1:4222
  subject_prefix: butler.events
  stream: BUTLER_EVENTS
  consumer: analytics-pipeline
  create_stream: true
storage:
  path: ./data/analytics.db
ingest:
  enabled: true
  batch_size: 1000
  flush_interval_ms: 1000
  channels: [whatsapp, sms, email, webchat]
  max_future_skew_s: 86400
aggregation:
  enabled: true
  timezone: UTC
  property_timezones: {prop_lisbon_01: Europe/Lisbon}
retention:
  raw_events: 90
  hourly_aggregations: 30
  daily_aggregations: 365
  weekly_aggregations: 730
  monthly_aggregations: 1095
cache:
  enabled: true
  ttl_ms: 60000
reports:
  enabled: true
  formats: [json, csv]
  storage: ./data/reports
  schedule: [{type: daily, cron: "0 6 * * *"}]
metrics:
  listen: 127.0.0.1:9464
service:
  consumer: true
  aggregator: true
  query: true
"#;
    let c = load_from_str("example.yaml", yaml, env(&[])).unwrap();
    assert_eq!(c.zones().of("prop_lisbon_01"), chrono_tz::Europe::Lisbon);
    assert_eq!(c.zones().of("elsewhere"), chrono_tz::UTC);
    assert_eq!(c.reports.schedule.len(), 1);
}

#[test]
fn unknown_keys_are_refused_by_name() {
    let e = error("nats:\n  urll: nats://x\n", &[]);
    assert!(e.contains("nats.urll"), "{e}");
    let e = error("ingestion:\n  enabled: true\n", &[]);
    assert!(e.contains("ingestion"), "{e}");
}

#[test]
fn bad_values_are_refused_by_key() {
    for (yaml, key) in [
        ("ingest:\n  batch_size: lots\n", "ingest.batch_size"),
        ("ingest:\n  batch_size: 0\n", "ingest.batch_size"),
        (
            "ingest:\n  batch_size: 2000\n  max_batch: 1000\n",
            "ingest.max_batch",
        ),
        ("ingest:\n  max_batch: 200000\n", "ingest.max_batch"),
        ("shutdown:\n  grace_s: 86400\n", "shutdown.grace_s"),
        (
            "ingest:\n  flush_interval_ms: -5\n",
            "ingest.flush_interval_ms",
        ),
        (
            "aggregation:\n  timezone: Mars/Olympus\n",
            "aggregation.timezone",
        ),
        (
            "aggregation:\n  property_timezones: {p1: Nowhere}\n",
            "aggregation.property_timezones.p1",
        ),
        ("metrics:\n  listen: not-an-address\n", "metrics.listen"),
        ("retention:\n  raw_events: 0\n", "retention.raw_events"),
        ("retention:\n  live_state: 0\n", "retention.live_state"),
        ("reports:\n  formats: [pdf]\n", "reports.formats"),
        (
            "reports:\n  object_store: 'my.reports'\n",
            "reports.object_store",
        ),
        (
            "nats:\n  subject_prefix: 'butler.>'\n",
            "nats.subject_prefix",
        ),
        ("nats:\n  stream: 'a.b'\n", "nats.stream"),
        ("dashboard:\n  kv_bucket: 'a.b'\n", "dashboard.kv_bucket"),
        (
            "dashboard:\n  push_interval_ms: 0\n",
            "dashboard.push_interval_ms",
        ),
        ("dashboard:\n  refresh_s: 0\n", "dashboard.refresh_s"),
        ("dashboard:\n  live: maybe\n", "dashboard.live"),
        ("http:\n  live_pages: 3\n", "http.live_pages"),
        ("nats:\n  ack_wait_ms: 1500\n", "nats.ack_wait_ms"),
        ("log:\n  level: loud\n", "log.level"),
        ("log:\n  level: 'info,=debug'\n", "log.level"),
        ("log:\n  level: 'info,sqlx=chatty'\n", "log.level"),
    ] {
        let e = error(yaml, &[]);
        assert!(e.contains(key), "{yaml}: {e}");
    }
}

#[test]
fn malformed_yaml_is_refused_with_the_file_name() {
    let e = error("nats: [unclosed\n", &[]);
    assert!(
        e.contains("test.yaml") && e.contains("not valid YAML"),
        "{e}"
    );
}

#[test]
fn environment_overrides_any_key() {
    let c = load_from_str(
        "test.yaml",
        "nats:\n  url: nats://file:4222\n",
        env(&[
            ("BUTLER_ANALYTICS__NATS__URL", "nats://env:4222"),
            ("BUTLER_ANALYTICS__STORAGE__PATH", "/tmp/x.db"),
            ("BUTLER_ANALYTICS__AGGREGATION__TIMEZONE", "Asia/Kolkata"),
            ("BUTLER_ANALYTICS__INGEST__BATCH_SIZE", "250"),
            ("BUTLER_ANALYTICS__INGEST__CHANNELS", "[sms, email]"),
            ("BUTLER_ANALYTICS__SERVICE__QUERY", "false"),
            ("BUTLER_ANALYTICS__NATS__STREAM", "12345"),
            ("UNRELATED", "x"),
        ]),
    )
    .unwrap();
    assert_eq!(c.nats.url.expose(), "nats://env:4222");
    assert_eq!(c.storage.path.to_str(), Some("/tmp/x.db"));
    assert_eq!(c.aggregation.timezone, "Asia/Kolkata");
    assert_eq!(c.ingest.batch_size, 250);
    assert_eq!(c.ingest.channels, ["sms", "email"]);
    assert!(!c.service.query);
    assert_eq!(c.nats.stream, "12345");
}

#[test]
fn bad_environment_overrides_are_refused_by_key() {
    let e = error("", &[("BUTLER_ANALYTICS__INGEST__BATCH_SIZE", "many")]);
    assert!(e.contains("ingest.batch_size"), "{e}");
    let e = error("", &[("BUTLER_ANALYTICS__NATS__NOPE", "1")]);
    assert!(e.contains("nats.nope"), "{e}");
}

#[test]
fn secrets_never_print() {
    let c = load_from_str(
        "test.yaml",
        "nats:\n  user: svc\n  password: hunter2\n",
        env(&[]),
    )
    .unwrap();
    assert_eq!(
        c.nats.password.as_ref().map(|p| p.expose()),
        Some("hunter2")
    );
    assert!(!format!("{c:?}").contains("hunter2"));
    assert!(!serde_json::to_string(&c).unwrap().contains("hunter2"));
}

#[test]
fn the_shipped_example_config_loads_with_the_defaults() {
    let example = include_str!("../../../../config.example.yaml");
    let c = load_from_str("config.example.yaml", example, env(&[])).unwrap();
    let defaults = load(None, env(&[])).unwrap();
    assert_eq!(
        format!("{c:?}"),
        format!("{defaults:?}"),
        "the example shows the defaults"
    );
}

#[test]
fn a_cluster_is_several_comma_separated_servers() {
    let c = load_from_str(
        "test.yaml",
        "nats:\n  url: nats://a:4222, nats://b:4222 ,tls://c:4222\n",
        env(&[]),
    )
    .unwrap();
    assert_eq!(
        c.nats.servers(),
        ["nats://a:4222", "nats://b:4222", "tls://c:4222"]
    );
    let e = error("nats:\n  url: nats://a:4222,http://user:secret@b:80\n", &[]);
    assert!(e.contains("nats.url") && e.contains("b:80"), "{e}");
    assert!(!e.contains("secret"), "{e}");
}

/// Every key of the config model appears in `config.example.yaml` (commented out when
/// it has no default), in its section.
#[test]
fn the_shipped_example_config_names_every_key() {
    let example = include_str!("../../../../config.example.yaml");
    let model = serde_json::to_value(crate::Config::default()).unwrap();
    let mut paths = Vec::new();
    leaf_paths(&model, &mut Vec::new(), &mut paths);
    assert!(paths.len() > 40, "{paths:?}");
    let missing: Vec<String> = paths
        .iter()
        .filter(|path| {
            !section_of(example, &path[0]).is_some_and(|block| names(&block, path.last().unwrap()))
        })
        .map(|path| path.join("."))
        .collect();
    assert!(missing.is_empty(), "config.example.yaml lacks {missing:?}");
}

/// The key paths of `value`'s leaves (an empty map is a leaf: its keys are the user's).
fn leaf_paths(value: &serde_json::Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match value.as_object() {
        Some(fields) if !fields.is_empty() => {
            for (key, field) in fields {
                path.push(key.clone());
                leaf_paths(field, path, out);
                path.pop();
            }
        }
        _ => out.push(path.clone()),
    }
}

/// The lines of a top-level section of a YAML text.
fn section_of(yaml: &str, section: &str) -> Option<String> {
    let mut lines = yaml.lines().skip_while(|line| {
        !line
            .strip_prefix(section)
            .is_some_and(|rest| rest.starts_with(':'))
    });
    let header = lines.next()?;
    let body = lines.take_while(|line| !line.starts_with(|c: char| c.is_ascii_alphabetic()));
    Some(
        std::iter::once(header)
            .chain(body)
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// Whether a section's text names `key`, set or commented out.
fn names(block: &str, key: &str) -> bool {
    block.lines().any(|line| {
        line.trim_start()
            .trim_start_matches('#')
            .trim_start()
            .starts_with(&format!("{key}:"))
    })
}

#[test]
fn the_listen_address_takes_localhost_and_says_what_it_wants() {
    let c = load_from_str("t.yaml", "metrics:\n  listen: localhost:9000\n", env(&[])).unwrap();
    assert_eq!(c.metrics.listen.to_string(), "127.0.0.1:9000");
    let c = load_from_str("t.yaml", "metrics:\n  listen: \"[::]:9464\"\n", env(&[])).unwrap();
    assert_eq!(c.metrics.listen.to_string(), "[::]:9464");
    let e = error("metrics:\n  listen: example.org:9464\n", &[]);
    assert!(
        e.contains("metrics.listen") && e.contains("e.g. 127.0.0.1:9464"),
        "{e}"
    );
    let e = error(
        "",
        &[("BUTLER_ANALYTICS__METRICS__LISTEN", "localhost:99999")],
    );
    assert!(
        e.contains("metrics.listen") && e.contains("e.g. 127.0.0.1:9464"),
        "{e}"
    );
}

#[test]
fn a_port_out_of_range_is_refused_and_a_missing_port_takes_the_default() {
    for url in [
        "nats://127.0.0.1:99999",
        "nats://h:0",
        "nats://user:secret@h:4x22",
        "nats://a:4222,tls://[::1]:70000",
    ] {
        let e = error(&format!("nats:\n  url: '{url}'\n"), &[]);
        assert!(
            e.contains("nats.url") && e.contains("the port must be a number from 1 to 65535"),
            "{url}: {e}"
        );
        assert!(!e.contains("secret"), "{e}");
    }
    for url in [
        "nats://h",
        "h:4222",
        "nats://user:p:w@h:4222/",
        "tls://[::1]:4222",
        "wss://[::1]",
        "nats://h:65535",
        "nats://h:1",
    ] {
        let loaded = load_from_str("t.yaml", &format!("nats:\n  url: '{url}'\n"), env(&[]));
        assert!(loaded.is_ok(), "{url}: {:?}", loaded.err());
    }
}

#[test]
fn credential_and_certificate_files_must_exist() {
    let dir = std::env::temp_dir().join(format!("butler-config-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let present = dir.join("present.pem");
    std::fs::write(&present, "x").unwrap();
    let missing = dir.join("missing.pem");
    let (p, m) = (present.display(), missing.display());
    for (yaml, key) in [
        (format!("nats:\n  creds_file: {m}\n"), "nats.creds_file"),
        (
            format!("nats:\n  tls:\n    ca_file: {m}\n"),
            "nats.tls.ca_file",
        ),
        (
            format!("nats:\n  tls:\n    cert_file: {m}\n    key_file: {p}\n"),
            "nats.tls.cert_file",
        ),
        (
            format!("nats:\n  tls:\n    cert_file: {p}\n    key_file: {m}\n"),
            "nats.tls.key_file",
        ),
        (
            format!("nats:\n  creds_file: {}\n", dir.display()),
            "nats.creds_file",
        ),
    ] {
        let e = error(&yaml, &[]);
        assert!(e.starts_with(&format!("config key `{key}`")), "{yaml}: {e}");
    }
    let all_present = format!(
        "nats:\n  creds_file: {p}\n  tls:\n    ca_file: {p}\n    cert_file: {p}\n    key_file: {p}\n"
    );
    assert!(load_from_str("t.yaml", &all_present, env(&[])).is_ok());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_log_level_takes_a_level_or_directives() {
    for level in [
        "debug",
        "WARN",
        "info,butler_analytics=debug",
        "warn, sqlx::query=info",
    ] {
        let loaded = load_from_str("t.yaml", &format!("log:\n  level: '{level}'\n"), env(&[]));
        assert!(loaded.is_ok(), "{level}: {:?}", loaded.err());
    }
}

/// §8's business hours and SLA: each fault refused naming the key, a good file read
/// into the schedules and targets the jobs apply.
#[test]
fn business_hours_and_sla_are_checked_by_key() {
    for (yaml, key, says) in [
        (
            "business_hours:\n  default:\n    mon: ['08:00-12:00', '11:00-14:00']\n",
            "business_hours.default.mon",
            "overlap",
        ),
        (
            "business_hours:\n  default:\n    tue: ['12:00-08:00']\n",
            "business_hours.default.tue",
            "after the start",
        ),
        (
            "business_hours:\n  properties:\n    p1:\n      wed: ['08:00-25:00']\n",
            "business_hours.properties.p1.wed",
            "not an interval",
        ),
        (
            "business_hours:\n  default:\n    thu: ['24:00-24:00']\n",
            "business_hours.default.thu",
            "only an end",
        ),
        (
            "business_hours:\n  default:\n    Mon: ['08:00-12:00']\n",
            "business_hours.default.Mon",
            "expected one of `mon`,",
        ),
        (
            "business_hours:\n  default:\n    monday: ['08:00-12:00']\n",
            "business_hours.default.monday",
            "unknown field",
        ),
        (
            "business_hours:\n  default:\n    holidays: ['25/12/2026']\n",
            "business_hours.default.holidays",
            "not a date",
        ),
        (
            "sla:\n  first_response_ms: -1\n",
            "sla.first_response_ms",
            "",
        ),
        (
            "sla:\n  properties:\n    p1: -300\n",
            "sla.properties.p1",
            "",
        ),
    ] {
        let err = error(yaml, &[]);
        assert!(
            err.starts_with(&format!("config key `{key}`")) && err.contains(says),
            "{yaml}: {err}"
        );
    }
    let config = load_from_str(
        "t.yaml",
        "business_hours:\n  default:\n    mon: ['08:00-12:00', '12:00-20:00']\n  properties:\n    p1: {}\nsla:\n  properties:\n    p1: 60000\n",
        env(&[]),
    )
    .unwrap();
    let rules = config.business_rules();
    // Monday 2026-11-23 00:00 UTC.
    let monday = 1_795_392_000_000;
    let day = 86_400_000;
    let utc = chrono_tz::UTC;
    assert_eq!(
        rules
            .hours
            .of("p0")
            .business_ms(utc, monday, monday + 7 * day),
        12 * 3_600_000
    );
    assert_eq!(
        rules
            .hours
            .of("p1")
            .business_ms(utc, monday, monday + 7 * day),
        7 * day
    );
    assert_eq!(rules.sla.first_response_ms("p0"), 300_000);
    assert_eq!(rules.sla.first_response_ms("p1"), 60_000);
}
