//! The pipeline as a child process, with its own config, database and metrics port.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use butler_storage::testing::TempPostgres;

use super::db::{Backend, TestDb, backend};

/// The binary under test: `BUTLER_ANALYTICS_BIN`, else the one built beside this test.
pub fn pipeline_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("BUTLER_ANALYTICS_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("butler-analytics");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build -p butler-analytics` first (make test does)",
        bin.display()
    );
    bin
}

/// Runs a one-shot subcommand with `config` and returns its output.
pub fn cli(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(pipeline_bin());
    cmd.arg("--config").arg(config).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// A pipeline process. Its directory (config, database, log) outlives the process, so
/// it can be killed and started again on the same data.
pub struct App {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// The test's own PostgreSQL database, on that backend.
    postgres: Option<TempPostgres>,
    /// Environment variables the process starts with, besides `RUST_LOG`.
    env: Vec<(String, String)>,
    /// Flags after `run`, e.g. `--watch-config`.
    run_flags: Vec<String>,
}

impl App {
    /// Writes a config for `nats_url` plus `extra` YAML sections, and starts the
    /// pipeline, waiting until `/readyz` says ready.
    pub fn start(nats_url: &str, extra: &str) -> App {
        App::start_on(nats_url, extra, None)
    }

    /// [`App::start`] on a copy of an existing database file.
    pub fn start_on(nats_url: &str, extra: &str, database: Option<&Path>) -> App {
        let mut app = App::prepare(nats_url, extra, database);
        app.restart();
        app
    }

    /// Writes the config (and copies `database`) without starting the process.
    pub fn prepare(nats_url: &str, extra: &str, database: Option<&Path>) -> App {
        let dir = tempfile::tempdir().unwrap();
        let postgres = (backend() == Backend::Postgres).then(TempPostgres::create_blocking);
        let mut storage_extra = section_body(extra, "storage");
        if let Some(db) = &postgres
            && !storage_extra.contains("  url:")
        {
            storage_extra.insert_str(0, &format!("  url: {}\n", db.url()));
        }
        // Reports go to the test's own folder unless the test says where.
        let mut reports_extra = section_body(extra, "reports");
        if !reports_extra.contains("  storage:") {
            reports_extra.insert_str(
                0,
                &format!("  storage: {}\n", dir.path().join("reports").display()),
            );
        }
        let config = format!(
            "nats:\n  url: {nats_url}\n{nats_extra}storage:\n  path: {db}\n{storage_extra}reports:\n{reports_extra}metrics:\n  listen: 127.0.0.1:0\n{rest}",
            nats_extra = section_body(extra, "nats"),
            db = dir.path().join("analytics.db").display(),
            rest = without_sections(extra, &["nats", "storage", "reports"]),
        );
        std::fs::write(dir.path().join("config.yaml"), config).unwrap();
        if let Some(source) = database {
            std::fs::copy(source, dir.path().join("analytics.db")).unwrap();
        }
        App {
            child: None,
            dir,
            postgres,
            env: Vec::new(),
            run_flags: Vec::new(),
        }
    }

    /// Starts the process (again) and waits until it is ready.
    pub fn restart(&mut self) {
        self.spawn();
        self.wait_ready();
    }

    /// Adds a flag of `run` for the next starts, e.g. `--watch-config`.
    pub fn add_run_flag(&mut self, flag: &str) {
        self.run_flags.push(flag.to_owned());
    }

    /// Sets an environment variable for the next starts, e.g. `LOG_FORMAT=json`.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// Starts the process without waiting for it to be ready.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("pipeline.log"))
            .unwrap();
        let child = Command::new(pipeline_bin())
            .arg("--config")
            .arg(self.config_path())
            .arg("run")
            .args(&self.run_flags)
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// The `storage` section that points another instance at this one's database.
    pub fn shared_storage(&self) -> String {
        match self.postgres_url() {
            Some(url) => format!("storage:\n  url: {url}\n"),
            None => format!("storage:\n  url: sqlite:{}\n", self.db_path().display()),
        }
    }

    /// Waits until `/readyz` answers 200.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some((200, _)) = self.get("/readyz") {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "pipeline exited with {status} during start:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "pipeline not ready:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The config file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    /// The database file.
    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("analytics.db")
    }

    /// Everything the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pipeline.log")).unwrap_or_default()
    }

    /// SIGKILL: no chance to commit, ack or clean up.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.stop_with(libc::SIGTERM)
    }

    /// Sends `signal` (SIGTERM, SIGINT) and waits for the exit.
    pub fn stop_with(&mut self, signal: libc::c_int) -> ExitStatus {
        self.signal(signal);
        self.wait_exit(signal)
    }

    /// Sends `signal` without waiting.
    pub fn signal(&mut self, signal: libc::c_int) {
        let child = self.child.as_ref().expect("running");
        let pid = libc::pid_t::try_from(child.id()).unwrap();
        // SAFETY: sending a signal to our own child process.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(pid, signal);
        }
    }

    /// Waits up to a minute for the exit that `signal` asked for.
    pub fn wait_exit(&mut self, signal: libc::c_int) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "no exit 60 s after signal {signal}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resident memory of the process, in KiB (Linux).
    pub fn rss_kib(&self) -> u64 {
        let pid = self.child.as_ref().expect("running").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// The metrics endpoint's port, as the process logged it at its last start: the
    /// config asks for port 0, so the system picks a free one, with no race between
    /// finding a port and binding it.
    pub fn metrics_port(&self) -> Option<u16> {
        let log = self.log();
        let line = log[log.rfind("butler-analytics running")?..]
            .lines()
            .next()?;
        let after = &line[line.find("metrics")?..];
        let digits = &after[after.find("127.0.0.1:")? + "127.0.0.1:".len()..];
        digits
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .ok()
    }

    /// GET on the metrics endpoint: status and body.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.metrics_port()?)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let status = response.split(' ').nth(1)?.parse().ok()?;
        let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
        Some((status, body))
    }

    /// The value of one sample of `/metrics`, e.g.
    /// `butler_analytics_events_rejected_total{reason="expired"}`; 0 when absent.
    /// The `pipeline_instance` label every sample carries is left out of the match.
    pub fn metric(&self, sample: &str) -> f64 {
        let (_, body) = self.get("/metrics").expect("metrics endpoint");
        body.lines()
            .filter_map(|line| line.rsplit_once(' '))
            .find(|(name, _)| without_instance(name) == sample)
            .map_or(0.0, |(_, v)| v.parse().unwrap())
    }

    /// A pool on the pipeline's database, as a dashboard would open it.
    pub async fn db(&self) -> TestDb {
        match &self.postgres {
            Some(db) => TestDb::postgres(db.url()).await,
            None => TestDb::sqlite(&self.db_path()).await,
        }
    }

    /// Whether the pipeline runs on PostgreSQL.
    pub fn on_postgres(&self) -> bool {
        self.postgres.is_some()
    }

    /// The URL of the test's PostgreSQL database, on that backend.
    pub fn postgres_url(&self) -> Option<&str> {
        self.postgres.as_ref().map(TempPostgres::url)
    }

    /// Rows in `analytics_events`.
    pub async fn event_count(&self) -> i64 {
        let db = self.db().await;
        let n = db.count("SELECT count(*) FROM analytics_events").await;
        db.close().await;
        n
    }

    /// Holds back every commit that stores new events, as another process's write
    /// would (SQLite: the write lock; PostgreSQL: the change counter's row), until
    /// [`CommitBlocker::release`].
    pub async fn hold_commits(&self) -> CommitBlocker {
        match &self.postgres {
            Some(db) => CommitBlocker::on_postgres(db.url()).await,
            None => {
                let options = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(self.db_path())
                    .busy_timeout(Duration::from_secs(30));
                let mut conn = sqlx::ConnectOptions::connect(&options).await.unwrap();
                sqlx::query("BEGIN IMMEDIATE")
                    .execute(&mut conn)
                    .await
                    .unwrap();
                CommitBlocker::Sqlite(conn)
            }
        }
    }
}

/// A transaction that holds the pipeline's commits back.
pub enum CommitBlocker {
    /// `BEGIN IMMEDIATE` on the file.
    Sqlite(sqlx::SqliteConnection),
    /// The change counter's row, locked.
    Postgres(sqlx::PgConnection),
}

impl CommitBlocker {
    /// Holds back the commits of a pipeline on the PostgreSQL database at `url`.
    pub async fn on_postgres(url: &str) -> CommitBlocker {
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url)
            .await
            .unwrap();
        sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
        sqlx::query("SELECT last_seq FROM ingest_change_counter WHERE id = 1 FOR UPDATE")
            .execute(&mut conn)
            .await
            .unwrap();
        CommitBlocker::Postgres(conn)
    }

    /// Ends the transaction: held commits go ahead.
    pub async fn release(&mut self) {
        match self {
            CommitBlocker::Sqlite(conn) => {
                sqlx::query("COMMIT").execute(conn).await.unwrap();
            }
            CommitBlocker::Postgres(conn) => {
                sqlx::query("COMMIT").execute(conn).await.unwrap();
            }
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A sample's name and labels without its `pipeline_instance` label.
fn without_instance(sample: &str) -> String {
    let Some(at) = sample.find("pipeline_instance=\"") else {
        return sample.to_owned();
    };
    let value_end = sample[at + 19..]
        .find('"')
        .map_or(sample.len(), |i| at + 19 + i + 1);
    let (mut before, mut after) = (sample[..at].to_owned(), sample[value_end..].to_owned());
    if after.starts_with(',') {
        after.remove(0);
    } else if before.ends_with(',') {
        before.pop();
    }
    let joined = before + &after;
    joined.replace("{}", "")
}

/// The indented body of `section:` in a small YAML snippet (tests only use two-level
/// snippets), so the harness can merge keys into its own `nats:` section.
fn section_body(yaml: &str, section: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in yaml.lines() {
        if !line.starts_with(' ') {
            inside = line.trim_end() == format!("{section}:");
            continue;
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn without_sections(yaml: &str, sections: &[&str]) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in yaml.lines() {
        if !line.starts_with(' ') {
            inside = sections.iter().any(|s| line.trim_end() == format!("{s}:"));
        }
        if !inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}
