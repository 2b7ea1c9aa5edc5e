//! The deploy kit, checked with the real tools: promtool on the Prometheus config,
//! alert rules and live `/metrics`, and a real Prometheus scraping a running pipeline.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{App, NatsServer, free_port, message_event, publish_all, wait_until};

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
            app.metrics_port
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
    assert_eq!(loaded, 7, "the deploy alert rules are loaded");
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
    let mut exprs = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let reply = query(expr).unwrap_or_default();
            assert_eq!(reply["status"], "success", "{expr}: {reply}");
            exprs += 1;
        }
    }
    assert!(exprs >= 10);
}
