//! `validate`: the deployment checked as the pipeline will meet it — NATS with the
//! configured credentials, the stream and consumer, the subjects the pipeline
//! subscribes to, the buckets, the database, the report folder and the metrics
//! address — without creating, migrating or writing anything. `check-config` reads
//! the file alone; this asks the world around it.

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::context::{ConsumerInfoErrorKind, GetStreamErrorKind};
use async_nats::jetstream::{self, ErrorCode};
use async_nats::{ConnectOptions, Event};
use butler_config::Config;
use butler_storage::probe::DatabaseProbe;
use serde::Serialize;

use crate::output::{Output, json_line};

/// How long one request to NATS may take before the check fails: a request the
/// server's permissions refuse is dropped, and only the wait ends it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// `validate` found something that stops the pipeline; exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("validation failed: {0} of the checks above")]
pub struct ValidationFailed(pub usize);

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// As the pipeline needs it.
    Ok,
    /// Works, but not as configured or expected; the detail says what applies.
    Warn,
    /// The pipeline would fail here.
    Fail,
    /// Not checked: what it depends on failed.
    Skipped,
}

/// One line of the result.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked: `nats`, `stream`, `database`, …
    pub check: &'static str,
    /// How it came out.
    pub outcome: Outcome,
    /// What was found, or what stands in the way.
    pub detail: String,
}

/// Every check, in the order the pipeline meets them at start-up.
#[derive(Debug, Clone, Serialize)]
pub struct Validation {
    /// The checks.
    pub checks: Vec<Check>,
}

impl Validation {
    fn push(&mut self, check: &'static str, outcome: Outcome, detail: impl Into<String>) {
        self.checks.push(Check {
            check,
            outcome,
            detail: detail.into(),
        });
    }

    /// The checks that failed.
    pub fn failures(&self) -> usize {
        self.checks
            .iter()
            .filter(|c| c.outcome == Outcome::Fail)
            .count()
    }
}

impl Output for Validation {
    fn json(&self, out: &mut dyn Write) -> anyhow::Result<()> {
        json_line(out, &serde_json::to_value(self)?)
    }

    fn text(&self, out: &mut dyn Write) -> anyhow::Result<()> {
        for c in &self.checks {
            let outcome = match c.outcome {
                Outcome::Ok => "ok",
                Outcome::Warn => "WARN",
                Outcome::Fail => "FAIL",
                Outcome::Skipped => "skipped",
            };
            writeln!(out, "{:<13} {outcome:<8} {}", c.check, c.detail)?;
        }
        Ok(())
    }
}

/// Runs every check.
pub async fn validate(config: &Config) -> Validation {
    let mut v = Validation { checks: Vec::new() };
    v.push(
        "config",
        Outcome::Ok,
        "every key valid, credential and certificate files present",
    );
    check_nats(config, &mut v).await;
    check_database(config, &mut v).await;
    check_reports_folder(config, &mut v);
    check_metrics_address(config, &mut v);
    v
}

/// What the server said to this connection (permission violations above all), so a
/// refused request names its cause instead of timing out silently.
#[derive(Clone, Default)]
struct ServerComplaints(Arc<Mutex<Vec<String>>>);

impl ServerComplaints {
    /// The complaints since the last call.
    fn take(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|mut all| std::mem::take(&mut *all))
            .unwrap_or_default()
    }

    /// `detail`, followed by what the server said since the last call.
    fn explain(&self, detail: String) -> String {
        let said = self.take();
        if said.is_empty() {
            detail
        } else {
            format!("{detail}; the server said: {}", said.join("; "))
        }
    }
}

/// Connects once, without the pipeline's retries, and runs the checks that need NATS.
async fn check_nats(config: &Config, v: &mut Validation) {
    const NEEDS_NATS: [&str; 5] = [
        "jetstream",
        "stream",
        "consumer",
        "subscriptions",
        "buckets",
    ];
    let complaints = ServerComplaints::default();
    let client = match connect(config, &complaints).await {
        Ok(client) => client,
        Err(err) => {
            v.push(
                "nats",
                Outcome::Fail,
                complaints.explain(format!("{err:#}")),
            );
            for check in NEEDS_NATS {
                v.push(check, Outcome::Skipped, "NATS not reached");
            }
            return;
        }
    };
    let info = client.server_info();
    v.push(
        "nats",
        Outcome::Ok,
        format!(
            "connected to {}:{} (nats-server {}{})",
            info.host,
            info.port,
            info.version,
            if info.auth_required {
                ", authenticated"
            } else {
                ""
            }
        ),
    );
    let mut js = jetstream::new(client.clone());
    js.set_timeout(REQUEST_TIMEOUT);
    let account = account_info(&client).await;
    match account {
        Ok(streams) => v.push(
            "jetstream",
            Outcome::Ok,
            format!("enabled; the account holds {streams} streams"),
        ),
        Err(err) => {
            v.push("jetstream", Outcome::Fail, complaints.explain(err));
            for check in &NEEDS_NATS[1..] {
                v.push(check, Outcome::Skipped, "JetStream not available");
            }
            return;
        }
    }
    check_stream_and_consumer(config, &js, &complaints, v).await;
    check_subscriptions(config, &client, &complaints, v).await;
    check_buckets(config, &js, &complaints, v).await;
    let _ = client.drain().await;
}

/// The account's stream count from `$JS.API.INFO`, read as JSON rather than through
/// the client's type, which fails on nats-server 2.9's reply.
async fn account_info(client: &async_nats::Client) -> Result<u64, String> {
    let reply = tokio::time::timeout(REQUEST_TIMEOUT, client.request("$JS.API.INFO", "".into()))
        .await
        .map_err(|_| {
            format!(
                "no answer from $JS.API.INFO within {} s",
                REQUEST_TIMEOUT.as_secs()
            )
        })?
        .map_err(|e| match e.kind() {
            async_nats::RequestErrorKind::NoResponders => {
                "JetStream is not enabled on the server (no responders on $JS.API.INFO)".to_owned()
            }
            _ => format!("$JS.API.INFO: {e}"),
        })?;
    let info: serde_json::Value = serde_json::from_slice(&reply.payload)
        .map_err(|e| format!("$JS.API.INFO answered something that is not JSON: {e}"))?;
    if let Some(error) = info.get("error") {
        return Err(format!(
            "not available to this user: {}",
            error["description"].as_str().unwrap_or("an error")
        ));
    }
    Ok(info["streams"].as_u64().unwrap_or(0))
}

/// The configured credentials, and every server complaint recorded.
async fn connect(
    config: &Config,
    complaints: &ServerComplaints,
) -> anyhow::Result<async_nats::Client> {
    let recorded = complaints.clone();
    let options: ConnectOptions = crate::nats::options(&config.nats)
        .await?
        .name("butler-analytics validate")
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(Some(0))
        .event_callback(move |event| {
            let recorded = recorded.clone();
            async move {
                if let Event::ServerError(err) = event
                    && let Ok(mut all) = recorded.0.lock()
                {
                    all.push(err.to_string());
                }
            }
        });
    let servers = crate::nats::servers(&config.nats)?;
    let tried = config
        .nats
        .servers()
        .iter()
        .map(|s| s.split('@').next_back().unwrap_or(s).to_owned())
        .collect::<Vec<_>>()
        .join(", ");
    options.connect(servers).await.map_err(|e| {
        if e.kind() == async_nats::ConnectErrorKind::AuthorizationViolation {
            anyhow::anyhow!(
                "{tried} refused the credentials (nats.user and nats.password, nats.token, nats.nkey_seed or nats.creds_file): {e}"
            )
        } else {
            anyhow::anyhow!("config key `nats.url`: cannot connect to {tried}: {e}")
        }
    })
}

/// The stream as `nats.stream` names it, holding the event subjects, and the durable
/// consumer; either absent is fine when the pipeline creates it.
async fn check_stream_and_consumer(
    config: &Config,
    js: &jetstream::Context,
    complaints: &ServerComplaints,
    v: &mut Validation,
) {
    let n = &config.nats;
    let subjects = format!("{}.>", n.subject_prefix);
    let stream = match js.get_stream(&n.stream).await {
        Ok(stream) => stream,
        Err(err) if stream_not_found(&err.kind()) => {
            if n.create_stream {
                v.push(
                    "stream",
                    Outcome::Ok,
                    format!(
                        "{} absent; the pipeline creates it for {subjects} (nats.create_stream)",
                        n.stream
                    ),
                );
                v.push(
                    "consumer",
                    Outcome::Ok,
                    format!(
                        "{} absent; the pipeline creates it with the stream",
                        n.consumer
                    ),
                );
            } else {
                v.push(
                    "stream",
                    Outcome::Fail,
                    complaints.explain(format!(
                        "{} not found, and nats.create_stream is false: {err}",
                        n.stream
                    )),
                );
                v.push("consumer", Outcome::Skipped, "no stream");
            }
            return;
        }
        Err(err) => {
            v.push(
                "stream",
                Outcome::Fail,
                complaints.explain(format!("{}: cannot read its info: {err}", n.stream)),
            );
            v.push("consumer", Outcome::Skipped, "no stream");
            return;
        }
    };
    let info = stream.cached_info();
    let holds_events = info
        .config
        .subjects
        .iter()
        .any(|s| s == &subjects || s == ">" || s == &format!("{}.*", n.subject_prefix));
    let detail = format!(
        "{}: {} messages, subjects {}",
        n.stream,
        info.state.messages,
        info.config.subjects.join(", ")
    );
    if holds_events {
        v.push("stream", Outcome::Ok, detail);
    } else {
        v.push(
            "stream",
            Outcome::Warn,
            format!("{detail}; events are published on {subjects}, which it may not hold"),
        );
    }
    match stream.consumer_info(&n.consumer).await {
        Ok(consumer) => {
            let mut detail = format!(
                "{}: {} pending, {} unacked",
                n.consumer, consumer.num_pending, consumer.num_ack_pending
            );
            let ack_wait_ms = consumer.config.ack_wait.as_millis();
            let mut differs = Vec::new();
            if ack_wait_ms != u128::from(n.ack_wait_ms) {
                differs.push(format!(
                    "ack wait {ack_wait_ms} ms (nats.ack_wait_ms {})",
                    n.ack_wait_ms
                ));
            }
            if consumer.config.max_ack_pending != n.max_ack_pending {
                differs.push(format!(
                    "max ack pending {} (nats.max_ack_pending {})",
                    consumer.config.max_ack_pending, n.max_ack_pending
                ));
            }
            if differs.is_empty() {
                v.push("consumer", Outcome::Ok, detail);
            } else {
                detail.push_str(&format!(
                    "; the existing consumer's own settings apply: {}",
                    differs.join(", ")
                ));
                v.push("consumer", Outcome::Warn, detail);
            }
        }
        Err(err) if err.kind() == ConsumerInfoErrorKind::NotFound => v.push(
            "consumer",
            Outcome::Ok,
            format!("{} absent; the pipeline creates it", n.consumer),
        ),
        Err(err) => v.push(
            "consumer",
            Outcome::Fail,
            complaints.explain(format!("{}: cannot read its info: {err}", n.consumer)),
        ),
    }
}

/// Whether the server answered that the stream does not exist (rather than not
/// answering, or refusing).
fn stream_not_found(kind: &GetStreamErrorKind) -> bool {
    matches!(kind, GetStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

/// Subscribes to every subject the enabled parts will, and collects the server's
/// refusals: a subscription is refused after the fact, so the check waits for the
/// server's answer to a flush, then briefly for the refusals it sent before.
async fn check_subscriptions(
    config: &Config,
    client: &async_nats::Client,
    complaints: &ServerComplaints,
    v: &mut Validation,
) {
    let mut subjects = Vec::new();
    if config.service.query {
        subjects.extend(butler_query::service::subscribed_subjects());
    }
    if config.http.live_pages && config.dashboard.live {
        subjects.push(butler_query::scoped::live_subject("*"));
    }
    if subjects.is_empty() {
        v.push(
            "subscriptions",
            Outcome::Ok,
            "none needed (service.query off, no live pages)",
        );
        return;
    }
    complaints.take();
    let mut held = Vec::new();
    for subject in &subjects {
        match client.subscribe(subject.clone()).await {
            Ok(sub) => held.push(sub),
            Err(err) => {
                v.push("subscriptions", Outcome::Fail, format!("{subject}: {err}"));
                return;
            }
        }
    }
    let flushed = client.flush().await;
    let mut refused = Vec::new();
    for _ in 0..10 {
        refused.extend(complaints.take());
        if !refused.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for sub in &mut held {
        let _ = sub.unsubscribe().await;
    }
    match (flushed, refused.is_empty()) {
        (Ok(()), true) => v.push(
            "subscriptions",
            Outcome::Ok,
            format!("{} subjects allowed ({} …)", subjects.len(), subjects[0]),
        ),
        (Ok(()), false) => v.push("subscriptions", Outcome::Fail, refused.join("; ")),
        (Err(err), _) => v.push(
            "subscriptions",
            Outcome::Fail,
            format!("no answer to a flush: {err}"),
        ),
    }
}

/// The live dashboards' key-value bucket and the reports' object store, when they are
/// on: present, or absent and created at start.
async fn check_buckets(
    config: &Config,
    js: &jetstream::Context,
    complaints: &ServerComplaints,
    v: &mut Validation,
) {
    let mut wanted = Vec::new();
    if config.dashboard.live {
        wanted.push((
            format!("KV_{}", config.dashboard.kv_bucket),
            "dashboard.kv_bucket",
        ));
    }
    if config.reports.enabled
        && let Some(bucket) = &config.reports.object_store
    {
        wanted.push((format!("OBJ_{bucket}"), "reports.object_store"));
    }
    if wanted.is_empty() {
        v.push("buckets", Outcome::Ok, "none configured");
        return;
    }
    let mut found = Vec::new();
    for (stream, key) in wanted {
        match js.get_stream(&stream).await {
            Ok(_) => found.push(format!("{stream} present ({key})")),
            Err(err) if stream_not_found(&err.kind()) => {
                found.push(format!("{stream} absent, created at start ({key})"));
            }
            Err(err) => {
                v.push(
                    "buckets",
                    Outcome::Fail,
                    complaints.explain(format!("{stream} ({key}): cannot read its info: {err}")),
                );
                return;
            }
        }
    }
    v.push("buckets", Outcome::Ok, found.join("; "));
}

/// The database: reachable, its schema this binary's (or one it can migrate), and
/// writable.
async fn check_database(config: &Config, v: &mut Validation) {
    let options = match crate::app::storage_options(config) {
        Ok(options) => options,
        Err(err) => {
            v.push("database", Outcome::Fail, format!("{err:#}"));
            return;
        }
    };
    let database = &options.database;
    let key = database.key();
    match butler_storage::probe::probe(&options).await {
        Err(err) => v.push(
            "database",
            Outcome::Fail,
            format!("config key `{key}`: {err}"),
        ),
        Ok(probe) => {
            let (outcome, detail) = judge_database(&probe);
            v.push("database", outcome, format!("{database}: {detail}"));
        }
    }
}

/// What a probe means for the pipeline's start.
fn judge_database(p: &DatabaseProbe) -> (Outcome, String) {
    if let Some(why) = &p.not_writable {
        return (Outcome::Fail, why.clone());
    }
    if p.unknown > 0 {
        return (
            Outcome::Fail,
            format!(
                "holds {} migrations this version does not know (written by a newer version); \
                 it refuses to open it",
                p.unknown
            ),
        );
    }
    let detail = match (p.exists, p.pending) {
        (false, n) => format!("absent; created with its {n} migrations at start"),
        (true, 0) => format!("schema up to date ({} migrations), writable", p.applied),
        (true, n) => format!(
            "{n} of {} migrations to apply (at start, or by `migrate`), writable",
            p.applied + n
        ),
    };
    (Outcome::Ok, detail)
}

/// The folder reports are written to: present and writable, or creatable.
fn check_reports_folder(config: &Config, v: &mut Validation) {
    if !config.reports.enabled {
        v.push("reports", Outcome::Ok, "off (reports.enabled)");
        return;
    }
    let folder = &config.reports.storage;
    let mut existing: &Path = folder;
    while !existing.exists() {
        match existing.parent() {
            Some(up) if !up.as_os_str().is_empty() => existing = up,
            _ => existing = Path::new("."),
        }
    }
    let writable = rustix::fs::access(existing, rustix::fs::Access::WRITE_OK);
    match (existing.is_dir(), writable) {
        (true, Ok(())) if existing == folder => v.push(
            "reports",
            Outcome::Ok,
            format!("{} writable (reports.storage)", folder.display()),
        ),
        (true, Ok(())) => v.push(
            "reports",
            Outcome::Ok,
            format!(
                "{} absent; created at the first report (reports.storage)",
                folder.display()
            ),
        ),
        (false, _) => v.push(
            "reports",
            Outcome::Fail,
            format!(
                "config key `reports.storage`: {} is not a directory",
                existing.display()
            ),
        ),
        (true, Err(e)) => v.push(
            "reports",
            Outcome::Fail,
            format!(
                "config key `reports.storage`: {} is not writable: {e}",
                existing.display()
            ),
        ),
    }
}

/// The metrics address: free, or held by a pipeline already running here (it answers
/// `/healthz` as the pipeline does); held by anything else, `run` would fail.
fn check_metrics_address(config: &Config, v: &mut Validation) {
    let listen = config.metrics.listen;
    match TcpListener::bind(listen) {
        Ok(_) => v.push(
            "metrics",
            Outcome::Ok,
            format!("{listen} free (metrics.listen)"),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && is_pipeline(listen) => v.push(
            "metrics",
            Outcome::Ok,
            format!("{listen} held by the pipeline running here (metrics.listen)"),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => v.push(
            "metrics",
            Outcome::Fail,
            format!("config key `metrics.listen`: {listen} is held by another program"),
        ),
        Err(e) => v.push(
            "metrics",
            Outcome::Fail,
            format!("config key `metrics.listen`: cannot listen on {listen}: {e}"),
        ),
    }
}

/// Whether what listens on `listen` answers `GET /healthz` as this pipeline does
/// (`ok`, from a server that names itself butler-analytics in `/metrics`).
fn is_pipeline(listen: std::net::SocketAddr) -> bool {
    use std::io::Read;
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let get = |path: &str| -> Option<String> {
        let timeout = Duration::from_secs(2);
        let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout).ok()?;
        stream.set_read_timeout(Some(timeout)).ok()?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
            .ok()?;
        let mut reply = String::new();
        let _ = stream.take(1 << 20).read_to_string(&mut reply);
        reply.starts_with("HTTP/1.").then_some(reply)
    };
    get("/healthz").is_some_and(|r| r.contains(" 200 "))
        && get("/metrics").is_some_and(|r| r.contains("butler_analytics_build_info"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(exists: bool, applied: usize, pending: usize, unknown: usize) -> DatabaseProbe {
        DatabaseProbe {
            exists,
            applied,
            pending,
            unknown,
            not_writable: None,
        }
    }

    #[test]
    fn a_newer_schema_or_a_read_only_database_fails_and_pending_migrations_do_not() {
        assert_eq!(judge_database(&probe(true, 9, 0, 0)).0, Outcome::Ok);
        assert_eq!(judge_database(&probe(true, 7, 2, 0)).0, Outcome::Ok);
        assert_eq!(judge_database(&probe(false, 0, 9, 0)).0, Outcome::Ok);
        assert_eq!(judge_database(&probe(true, 9, 0, 1)).0, Outcome::Fail);
        let mut read_only = probe(true, 9, 0, 0);
        read_only.not_writable = Some("x is not writable".into());
        assert_eq!(judge_database(&read_only).0, Outcome::Fail);
    }
}
