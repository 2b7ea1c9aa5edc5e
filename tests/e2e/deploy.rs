//! The deploy kit, checked with the real tools: promtool on the Prometheus config,
//! alert rules and live `/metrics`, and a real Prometheus scraping a running pipeline.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{App, NatsServer, TestDb, free_port, message_event, publish_all, wait_until};

fn deploy(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(path)
}

/// A Prometheus tool: `PROMTOOL_BIN`/`PROMETHEUS_BIN`, else Debian's.
fn tool(name: &str) -> PathBuf {
    let var = format!("{}_BIN", name.to_uppercase());
    let path =
        std::env::var(&var).map_or_else(|_| PathBuf::from("/usr/bin").join(name), PathBuf::from);
    assert!(
        path.is_file(),
        "{} is missing: install Debian's prometheus package (make test does) or set {var}",
        path.display()
    );
    path
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn promtool_accepts_the_deploy_config_and_alert_rules() {
    for (what, file) in [
        ("config", "prometheus/prometheus.yml"),
        ("rules", "prometheus/alerts.yml"),
    ] {
        let out = Command::new(tool("promtool"))
            .args(["check", what])
            .arg(deploy(file))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{file}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Every alert rule has a unit test (`alerts.test.yml`, and `alerts.long.test.yml` for
/// those that wait days) that fires it on its situation and keeps it silent otherwise,
/// on series labelled as a scrape stores them.
#[test]
fn every_alert_fires_on_its_situation_and_only_then() {
    let rules = std::fs::read_to_string(deploy("prometheus/alerts.yml")).unwrap();
    let files = [
        "prometheus/alerts.test.yml",
        "prometheus/alerts.long.test.yml",
    ];
    let tests: String = files
        .iter()
        .map(|f| std::fs::read_to_string(deploy(f)).unwrap())
        .collect();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert_eq!(alerts.len(), 13, "{alerts:?}");
    for alert in &alerts {
        let fires = tests
            .matches(&format!(
                "alertname: {alert}\n        exp_alerts:\n          - exp_labels"
            ))
            .count();
        let silent = tests
            .matches(&format!("alertname: {alert}\n        exp_alerts: []"))
            .count();
        assert!(
            fires >= 1 && silent >= 1,
            "{alert}: {fires} firing and {silent} silent cases"
        );
    }
    let out = Command::new(tool("promtool"))
        .args(["test", "rules"])
        .args(files.map(deploy))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_pipeline_and_every_dashboard_query_is_valid() {
    let nats = NatsServer::start();
    let app = App::start(&nats.url(), "");
    let js = nats.jetstream().await;
    publish_all(
        &js,
        vec![(
            "butler.events.message.received".into(),
            message_event("prom-1"),
        )],
    )
    .await;
    wait_until(Duration::from_secs(30), "stored", || async {
        app.event_count().await == 1
    })
    .await;

    // promtool lints the exposition format.
    let (_, metrics) = app.get("/metrics").unwrap();
    let mut check = Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A real Prometheus with the deploy alert rules, scraping this pipeline every second.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: butler-analytics\n    static_configs:\n      - targets: [\"127.0.0.1:{}\"]\n",
            deploy("prometheus/alerts.yml").display(),
            app.metrics_port().unwrap()
        ),
    )
    .unwrap();
    let port = free_port();
    let _prometheus = Prometheus(
        Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let query = |expr: &str| {
        http_get(port, &format!("/api/v1/query?query={}", url_encode(expr)))
            .and_then(|b| serde_json::from_str::<Value>(&b).ok())
    };
    wait_until(Duration::from_secs(60), "the target to be up", || async {
        http_get(port, "/api/v1/targets")
            .and_then(|b| serde_json::from_str::<Value>(&b).ok())
            .is_some_and(|t| t["data"]["activeTargets"][0]["health"] == "up")
    })
    .await;
    wait_until(
        Duration::from_secs(60),
        "the pipeline's metrics in Prometheus",
        || async {
            query(r#"butler_analytics_events_inserted_total{event_type="message.received"}"#)
                .is_some_and(|r| r["data"]["result"][0]["value"][1] == "1")
        },
    )
    .await;
    let rules: Value = serde_json::from_str(&http_get(port, "/api/v1/rules").unwrap()).unwrap();
    let loaded = rules["data"]["groups"][0]["rules"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(loaded, 13, "the deploy alert rules are loaded");
    let firing: Vec<Value> = rules["data"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["health"] != "ok" && r["health"] != "unknown")
        .cloned()
        .collect();
    assert!(firing.is_empty(), "every rule evaluates: {firing:?}");

    // Every query of the Grafana dashboard is valid PromQL that Prometheus accepts.
    let dashboard: Value =
        serde_json::from_slice(&std::fs::read(deploy("grafana/butler-analytics.json")).unwrap())
            .unwrap();
    let (mut exprs, mut answered) = (0, 0);
    // The data source is a variable, so the dashboard imports into any Grafana.
    assert_eq!(dashboard["templating"]["list"][0]["type"], "datasource");
    // So is the instance: its values are the scraped pipelines' `instance` labels, and
    // every query keeps to the chosen ones (here, the one scraped).
    let instance = &dashboard["templating"]["list"][1];
    assert_eq!(instance["name"], "instance");
    assert_eq!(
        instance["definition"],
        "label_values(butler_analytics_build_info, instance)"
    );
    let build = query("butler_analytics_build_info").unwrap_or_default();
    let scraped = build["data"]["result"][0]["metric"]["instance"]
        .as_str()
        .unwrap_or_else(|| panic!("no instance label: {build}"))
        .to_owned();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{}",
            panel["title"]
        );
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            assert!(expr.contains(r#"instance=~"$instance""#), "{expr}");
            let expr = expr.replace("$instance", &scraped);
            let reply = query(&expr).unwrap_or_default();
            assert_eq!(reply["status"], "success", "{expr}: {reply}");
            exprs += 1;
            if reply["data"]["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
            {
                answered += 1;
            }
        }
    }
    assert!(exprs >= 10);
    // The instance filter keeps the scraped pipeline's series.
    assert!(
        answered >= 5,
        "{answered} of {exprs} queries returned series"
    );
}

/// The business dashboard over the aggregate tables on PostgreSQL: its property list
/// and every panel's SQL return rows for real data, and its escalation rate and NPS
/// are the formulas the pipeline itself computes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_business_dashboard_query_returns_rows_on_postgres() {
    let pg = butler_storage::testing::TempPostgres::create().await;
    let nats = NatsServer::start();
    let mut app = App::start(
        &nats.url(),
        &format!(
            "storage:\n  url: {}\n{}",
            pg.url(),
            crate::aggregation::config()
        ),
    );
    let js = nats.jetstream().await;
    crate::aggregation::publish_dataset(&js, &crate::aggregation::dataset(1500)).await;
    let db = TestDb::postgres(pg.url()).await;
    wait_until(Duration::from_secs(60), "every event stored", || async {
        db.count("SELECT count(*) FROM analytics_events").await == 1500
    })
    .await;
    assert!(app.terminate().success());
    crate::aggregation::backfill_week(&app.config_path());

    let dashboard: Value =
        serde_json::from_slice(&std::fs::read(deploy("grafana/butler-business.json")).unwrap())
            .unwrap();
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    let property = variables.iter().find(|v| v["name"] == "property").unwrap();
    let properties = db.strings(property["query"].as_str().unwrap()).await;
    assert_eq!(properties, ["p_kol", "p_ny", "p_utc"]);
    // Grafana's macros and variables, as Grafana expands them.
    let expand = |sql: &str| {
        let mut sql = sql.replace("$property", "p_utc");
        while let Some(at) = sql.find("$__timeFilter(") {
            let rest = &sql[at + "$__timeFilter(".len()..];
            let mut depth = 1;
            let end = rest
                .char_indices()
                .find(|(_, c)| {
                    depth += match c {
                        '(' => 1,
                        ')' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .map(|(i, _)| i)
                .unwrap();
            let column = &rest[..end];
            let filter =
                format!("{column} BETWEEN '2026-10-01T00:00:00Z' AND '2026-12-01T00:00:00Z'");
            sql = format!("{}{filter}{}", &sql[..at], &rest[end + 1..]);
        }
        sql
    };
    let mut panels = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{}",
            panel["title"]
        );
        for target in panel["targets"].as_array().unwrap() {
            let sql = expand(target["rawSql"].as_str().unwrap());
            let rows = db.json_rows(&sql).await;
            assert!(!rows.is_empty(), "{}: no rows from {sql}", panel["title"]);
            panels += 1;
            if panel["title"].as_str().unwrap().starts_with("NPS") {
                let counts = db
                    .rows(
                        "SELECT CAST(sum(rating_1) AS BIGINT), CAST(sum(rating_2) AS BIGINT), \
                         CAST(sum(rating_3) AS BIGINT), CAST(sum(rating_4) AS BIGINT), \
                         CAST(sum(rating_5) AS BIGINT) FROM agg_satisfaction_weekly \
                         WHERE property_id = 'p_utc' GROUP BY period_start ORDER BY period_start",
                    )
                    .await;
                assert_eq!(rows.len(), counts.len());
                for (row, c) in rows.iter().zip(&counts) {
                    let r: Vec<i64> = c.iter().map(|v| v.as_i64().unwrap()).collect();
                    let want =
                        butler_events::formulas::Ratings([r[0], r[1], r[2], r[3], r[4]]).nps();
                    assert_eq!(row["nps"].as_f64(), want, "NPS of {row:?}");
                }
            }
            if panel["title"].as_str().unwrap().starts_with("Delivery") {
                // Each day's and channel's rates divide its summed counts.
                let counts = db
                    .rows(
                        "SELECT channel, CAST(sum(sent) AS BIGINT), CAST(sum(delivered) AS BIGINT), \
                         CAST(sum(failed) AS BIGINT) FROM agg_channel_delivery_daily \
                         WHERE property_id = 'p_utc' GROUP BY period_date, channel \
                         ORDER BY period_date, channel",
                    )
                    .await;
                let rate = |n: &Value, d: &Value| {
                    let d = d.as_i64().unwrap();
                    (d > 0).then(|| n.as_i64().unwrap() as f64 / d as f64)
                };
                let mut want: Vec<String> = Vec::new();
                for c in &counts {
                    for (what, numerator) in [("delivered", &c[2]), ("failed", &c[3])] {
                        let metric = format!("{} {what}", c[0].as_str().unwrap());
                        want.push(format!("{metric} {:?}", rate(numerator, &c[1])));
                    }
                }
                let mut shown: Vec<String> = rows
                    .iter()
                    .map(|r| {
                        format!(
                            "{} {:?}",
                            r["metric"].as_str().unwrap(),
                            r["value"].as_f64()
                        )
                    })
                    .collect();
                want.sort();
                shown.sort();
                assert_eq!(shown, want);
                assert!(want.iter().any(|w| w.contains("Some(")), "{want:?}");
            }
            let title = panel["title"].as_str().unwrap();
            // JSON text read back may differ from a division in its last digit.
            let close = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) => (a - b).abs() <= 1e-12,
                (a, b) => a == b,
            };
            if title.starts_with("Knowledge gaps") {
                // Summed over the whole range per intent, not averaged over days.
                let want = db
                    .rows(
                        "SELECT intent, CAST(sum(low_confidence_count) AS BIGINT), \
                         CAST(sum(count) AS BIGINT) FROM agg_intent_distribution_daily \
                         WHERE property_id = 'p_utc' GROUP BY intent \
                         HAVING sum(low_confidence_count) > 0 \
                         ORDER BY 2 DESC, 1",
                    )
                    .await;
                assert_eq!(rows.len(), want.len(), "{rows:?}");
                for (row, w) in rows.iter().zip(&want) {
                    assert_eq!(row["intent"], w[0], "{row:?}");
                    assert_eq!(row["low_confidence"].as_i64(), w[1].as_i64(), "{row:?}");
                    assert_eq!(row["classified"].as_i64(), w[2].as_i64(), "{row:?}");
                    let (low, classified) = (w[1].as_i64().unwrap(), w[2].as_i64().unwrap());
                    let rate = (classified > 0).then(|| low as f64 / classified as f64);
                    assert!(close(row["low_confidence_rate"].as_f64(), rate), "{row:?}");
                }
            }
            if title.starts_with("AI involvement") {
                let counts = db
                    .rows(
                        "SELECT CAST(sum(ai_handled_count) AS BIGINT), \
                         CAST(sum(ai_resolved_count) AS BIGINT), \
                         CAST(sum(conversations_active) AS BIGINT) FROM agg_conversation_metrics_daily \
                         WHERE property_id = 'p_utc' GROUP BY period_date ORDER BY period_date",
                    )
                    .await;
                assert_eq!(rows.len(), counts.len());
                for (row, c) in rows.iter().zip(&counts) {
                    let c: Vec<i64> = c.iter().map(|v| v.as_i64().unwrap()).collect();
                    let rate = |n: i64| (c[2] > 0).then(|| n as f64 / c[2] as f64);
                    assert!(
                        close(row["ai_involvement_rate"].as_f64(), rate(c[0])),
                        "{row:?}"
                    );
                    assert!(
                        close(row["automation_rate"].as_f64(), rate(c[1])),
                        "{row:?}"
                    );
                }
            }
            if title.starts_with("Staff on duty") {
                let minutes = db
                    .count(
                        "SELECT CAST(coalesce(sum(online_minutes), 0) AS BIGINT) \
                         FROM agg_staff_presence_daily WHERE property_id = 'p_utc'",
                    )
                    .await;
                let shown: i64 = rows.iter().map(|r| r["value"].as_i64().unwrap()).sum();
                assert!(minutes > 0);
                assert_eq!(shown, minutes);
            }
            if panel["title"]
                .as_str()
                .unwrap()
                .starts_with("First responses within")
            {
                // Each day's rate divides the day's summed counts, every channel
                // together.
                let counts = db
                    .rows(
                        "SELECT CAST(sum(first_response_sla_met) AS BIGINT), \
                         CAST(sum(first_responses) AS BIGINT) FROM agg_conversation_metrics_daily \
                         WHERE property_id = 'p_utc' GROUP BY period_date ORDER BY period_date",
                    )
                    .await;
                assert_eq!(rows.len(), counts.len());
                let mut defined = 0;
                for (row, c) in rows.iter().zip(&counts) {
                    let (met, firsts) = (c[0].as_i64().unwrap(), c[1].as_i64().unwrap());
                    let want = (firsts > 0).then(|| met as f64 / firsts as f64);
                    assert_eq!(row["first_response_sla_rate"].as_f64(), want, "{row:?}");
                    defined += usize::from(want.is_some_and(|w| w > 0.0 && w < 1.0));
                }
                assert!(defined > 0, "{counts:?}");
            }
            if panel["title"].as_str().unwrap().starts_with("Escalation") {
                let counts = db
                    .rows(
                        "SELECT CAST(sum(conversations_escalated) AS BIGINT), \
                         CAST(sum(conversations_started) AS BIGINT) FROM agg_conversation_metrics_daily \
                         WHERE property_id = 'p_utc' GROUP BY period_date ORDER BY period_date",
                    )
                    .await;
                for (row, c) in rows.iter().zip(&counts) {
                    let (escalated, started) = (c[0].as_i64().unwrap(), c[1].as_i64().unwrap());
                    if started > 0 {
                        let want = butler_events::formulas::escalation_rate(escalated, started);
                        assert_eq!(row["escalation_rate"].as_f64(), Some(want), "{row:?}");
                    }
                }
            }
        }
    }
    assert_eq!(panels, 10);
    db.close().await;
}

/// The compose file, checked by docker-compose itself (no engine needed): it parses,
/// PostgreSQL is a service of the `postgres` profile only, and the pipeline takes its
/// database URL from the environment.
#[test]
fn docker_compose_accepts_the_compose_file() {
    let compose = deploy("../docker-compose.yml");
    let out = Command::new("docker-compose")
        .arg("-f")
        .arg(&compose)
        .arg("config")
        .env(
            "BUTLER_STORAGE_URL",
            "postgres://butler:pw@postgres:5432/analytics",
        )
        .output()
        .expect("docker-compose is missing: make test installs Debian's docker-compose");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered = String::from_utf8_lossy(&out.stdout).into_owned();
    let service = |name: &str| -> String {
        let start = rendered
            .find(&format!("\n  {name}:\n"))
            .unwrap_or_else(|| panic!("no service {name}: {rendered}"));
        let rest = &rendered[start + name.len() + 5..];
        let end = rest
            .find("\n  ")
            .and_then(|_| {
                rest.match_indices('\n')
                    .find(|(i, _)| {
                        let line = &rest[i + 1..];
                        line.starts_with("  ") && !line.starts_with("   ")
                    })
                    .map(|(i, _)| i)
            })
            .unwrap_or(rest.len());
        rest[..end].to_owned()
    };
    assert!(
        service("postgres").contains("profiles:\n    - postgres"),
        "{}",
        service("postgres")
    );
    let pipeline = service("butler-analytics");
    assert!(!pipeline.contains("profiles:"), "{pipeline}");
    assert!(
        pipeline.contains(
            "BUTLER_ANALYTICS__STORAGE__URL: postgres://butler:pw@postgres:5432/analytics"
        ),
        "{pipeline}"
    );

    // The cluster profile: the servers and keys the scale-out tests run.
    let out = Command::new("docker-compose")
        .arg("-f")
        .arg(&compose)
        .args(["--profile", "cluster", "config"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cluster = String::from_utf8_lossy(&out.stdout);
    for i in 1..=3 {
        assert!(
            cluster.contains(&format!("- --server_name\n    - nats-{i}\n"))
                && cluster.contains("- nats://nats-1:6222,nats://nats-2:6222,nats://nats-3:6222"),
            "nats-{i}: {cluster}"
        );
    }
    for name in ["pipeline-1", "pipeline-2"] {
        let block = &cluster[cluster.find(&format!("\n  {name}:\n")).unwrap()..];
        let block = &block[..block[3..].find("\n  p").map_or(block.len(), |i| i + 3)];
        for key in [
            "BUTLER_ANALYTICS__NATS__URL: nats://nats-1:4222,nats://nats-2:4222,nats://nats-3:4222",
            "BUTLER_ANALYTICS__NATS__STREAM_REPLICAS: '3'",
            "BUTLER_ANALYTICS__STORAGE__URL: postgres://butler@postgres:5432/analytics",
        ] {
            assert!(block.contains(key), "{name} lacks {key}: {block}");
        }
        assert!(block.contains(&format!("BUTLER_ANALYTICS__SERVICE__INSTANCE: {name}")));
    }
}

/// The services of the compose file, as `docker-compose config` renders it, that run
/// with `profiles` on (docker-compose 1.29 renders them all, with their profiles).
fn compose_services(profiles: &[&str]) -> serde_json::Map<String, Value> {
    compose_services_with(profiles, &[])
}

/// [`compose_services`] with `env` set for the interpolation (and every other
/// `BUTLER_` variable of the caller's environment unset).
fn compose_services_with(
    profiles: &[&str],
    env: &[(&str, &str)],
) -> serde_json::Map<String, Value> {
    let mut command = Command::new("docker-compose");
    command.arg("-f").arg(deploy("../docker-compose.yml"));
    for (key, _) in std::env::vars() {
        if key.starts_with("BUTLER_") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().copied());
    for profile in profiles {
        command.args(["--profile", profile]);
    }
    let out = command
        .arg("config")
        .output()
        .expect("docker-compose is missing: make test installs Debian's docker-compose");
    assert!(
        out.status.success(),
        "{profiles:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config: Value = serde_saphyr::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    config["services"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, service)| {
            service["profiles"].as_array().is_none_or(|theirs| {
                theirs
                    .iter()
                    .any(|p| profiles.contains(&p.as_str().unwrap_or_default()))
            })
        })
        .map(|(name, service)| (name.clone(), service.clone()))
        .collect()
}

/// The database password has no default in any profile: without
/// `BUTLER_POSTGRES_PASSWORD` PostgreSQL gets none (and its image refuses to create
/// the database); with it, the password reaches PostgreSQL, Grafana's datasource and
/// each pipeline as `PGPASSWORD`, and no URL carries it.
#[test]
fn the_database_password_has_no_default_and_stays_out_of_urls() {
    for profiles in [&["postgres"][..], &["cluster"], &["postgres", "dev"]] {
        for password in [None, Some("Xy7-compose")] {
            let env: Vec<(&str, &str)> = password
                .map(|p| ("BUTLER_POSTGRES_PASSWORD", p))
                .into_iter()
                .collect();
            let services = compose_services_with(profiles, &env);
            let expected = password.unwrap_or("");
            let environment = |name: &str| services[name]["environment"].clone();
            assert_eq!(
                environment("postgres")["POSTGRES_PASSWORD"],
                expected,
                "{profiles:?}"
            );
            assert_eq!(
                environment("grafana")["BUTLER_POSTGRES_PASSWORD"],
                expected,
                "{profiles:?}"
            );
            let pipelines: Vec<&String> = services
                .keys()
                .filter(|name| name.starts_with("pipeline") || *name == "butler-analytics")
                .collect();
            assert!(!pipelines.is_empty(), "{profiles:?}");
            for name in pipelines {
                let environment = environment(name);
                assert_eq!(environment["PGPASSWORD"], expected, "{profiles:?} {name}");
                let url = environment["BUTLER_ANALYTICS__STORAGE__URL"]
                    .as_str()
                    .unwrap();
                assert!(!url.contains(":butler@"), "{profiles:?} {name}: {url}");
            }
            let rendered = Value::Object(services).to_string();
            if let Some(password) = password {
                assert_eq!(
                    rendered.matches(password).count(),
                    if profiles.contains(&"cluster") { 5 } else { 3 },
                    "{profiles:?}: {rendered}"
                );
            }
        }
    }
}

/// Each profile of the compose file: every service has a healthcheck (the pipeline's
/// is the image's HEALTHCHECK), everything waits for its dependencies to be healthy,
/// PostgreSQL publishes no port outside the `dev` profile, and the cluster's services
/// named on the command line (with Prometheus and Grafana) pull in no single-node one.
#[test]
fn every_compose_service_is_checked_for_health_and_each_profile_keeps_to_itself() {
    let dockerfile = std::fs::read_to_string(deploy("Dockerfile")).unwrap();
    assert!(dockerfile.contains("\nHEALTHCHECK "));
    for profiles in [&[][..], &["postgres"], &["cluster"], &["postgres", "dev"]] {
        let services = compose_services(profiles);
        for (name, service) in &services {
            let built_here = service["build"]["dockerfile"] == "deploy/Dockerfile";
            assert!(
                built_here || service["healthcheck"]["test"].is_array(),
                "{profiles:?}: {name} has no healthcheck"
            );
            if let Some(dependencies) = service["depends_on"].as_object() {
                for (dependency, how) in dependencies {
                    assert_eq!(
                        how["condition"], "service_healthy",
                        "{profiles:?}: {name} on {dependency}"
                    );
                }
            }
        }
        if let Some(postgres) = services.get("postgres") {
            assert!(postgres["ports"].is_null(), "{profiles:?}: {postgres}");
        }
        assert_eq!(
            services.contains_key("postgres-port"),
            profiles.contains(&"dev"),
            "{profiles:?}"
        );
    }
    let services = compose_services(&["cluster"]);
    let mut started: Vec<String> = [
        "nats-1",
        "nats-2",
        "nats-3",
        "postgres",
        "pipeline-1",
        "pipeline-2",
        "prometheus",
        "grafana",
    ]
    .map(String::from)
    .to_vec();
    let mut i = 0;
    while i < started.len() {
        if let Some(dependencies) = services[&started[i]]["depends_on"].as_object() {
            for dependency in dependencies.keys() {
                if !started.contains(dependency) {
                    started.push(dependency.clone());
                }
            }
        }
        i += 1;
    }
    assert_eq!(
        started.len(),
        8,
        "the cluster also starts {:?}",
        &started[8..]
    );
}

/// The image's HEALTHCHECK, run as Docker would (on the pipeline's metrics port):
/// healthy while `/readyz` is 200, unhealthy once NATS is gone, healthy once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_healthcheck_follows_readyz() {
    let dockerfile = std::fs::read_to_string(deploy("Dockerfile")).unwrap();
    let line = dockerfile
        .lines()
        .find(|l| l.starts_with("HEALTHCHECK"))
        .expect("a HEALTHCHECK");
    let command: Vec<String> =
        serde_json::from_str(&line[line.find("CMD").unwrap() + 3..]).unwrap();
    let mut nats = NatsServer::start();
    let app = App::start(&nats.url(), "");
    let check = || {
        let port = app.metrics_port().unwrap().to_string();
        let args: Vec<String> = command[1..]
            .iter()
            .map(|a| a.replace("9464", &port))
            .collect();
        Command::new(&command[0])
            .args(&args)
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    assert!(check(), "healthy while ready");
    nats.kill();
    wait_until(Duration::from_secs(30), "the check to fail", || async {
        !check()
    })
    .await;
    assert_eq!(app.get("/readyz").map(|(code, _)| code), Some(503));
    // NATS back: ready and healthy again, without a restart of the pipeline.
    nats.restart();
    wait_until(
        Duration::from_secs(60),
        "the check to pass again",
        || async { check() },
    )
    .await;
    assert_eq!(app.get("/readyz").map(|(code, _)| code), Some(200));
}

/// `/metrics` says which build runs and how the process fares, as exporters do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_say_which_build_runs_and_what_the_process_uses() {
    let nats = NatsServer::start();
    let app = App::start(&nats.url(), "");
    let (_, body) = app.get("/metrics").unwrap();
    let build = body
        .lines()
        .find(|l| l.starts_with("butler_analytics_build_info{"))
        .unwrap_or_else(|| panic!("no build_info: {body}"));
    let version = format!("version=\"{}\"", env!("CARGO_PKG_VERSION"));
    assert!(
        build.contains("git_sha=\"") && build.contains(&version) && build.ends_with(" 1"),
        "{build}"
    );
    assert!(!build.contains("git_sha=\"\""), "{build}");
    // `--version` names the same commit, and the build date.
    let sha = build
        .split("git_sha=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap();
    let out = std::process::Command::new(crate::helpers::pipeline_bin())
        .arg("--version")
        .output()
        .unwrap();
    let version = String::from_utf8(out.stdout).unwrap();
    let prefix = format!(
        "butler-analytics {} ({sha}, built ",
        env!("CARGO_PKG_VERSION")
    );
    let date = version
        .trim()
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{version}"));
    assert!(
        chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok(),
        "{version}"
    );
    assert!(body.contains("\nprocess_cpu_seconds_total{"), "{body}");
    for metric in [
        "process_start_time_seconds",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        assert!(app.metric(metric) > 0.0, "{metric}");
    }
}
