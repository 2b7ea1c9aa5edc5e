//! The processes a benchmark drives: its own nats-server and the pipeline binary,
//! each on a free port with files under the run's directory.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A free TCP port on loopback.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn wait_for_port(port: u16, what: &str, child: &mut Child) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.try_wait()? {
            bail!("{what} exited with {status} during start");
        }
        if Instant::now() > deadline {
            bail!("{what} did not open port {port}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The nats-server to run: `NATS_SERVER_BIN`, else `nats-server` on `PATH`, else
/// Debian's.
pub fn nats_server_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("NATS_SERVER_BIN") {
        return bin.into();
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| "/usr/sbin/nats-server".into())
}

/// A nats-server with JetStream, killed on drop.
pub struct NatsServer {
    child: Child,
    /// Its client URL.
    pub url: String,
    /// `nats-server --version`.
    pub version: String,
}

impl NatsServer {
    /// Starts a server storing under `dir`.
    pub fn start(dir: &Path) -> Result<NatsServer> {
        let bin = nats_server_bin();
        let version = Command::new(&bin)
            .arg("--version")
            .output()
            .with_context(|| format!("cannot run {}", bin.display()))?;
        let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
        let port = free_port()?;
        let store = dir.join("nats");
        std::fs::create_dir_all(&store)?;
        let log = std::fs::File::create(dir.join("nats-server.log"))?;
        let mut child = Command::new(&bin)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&store)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        wait_for_port(port, "nats-server", &mut child)?;
        Ok(NatsServer {
            child,
            url: format!("nats://127.0.0.1:{port}"),
            version,
        })
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `butler-analytics` binary: `BUTLER_ANALYTICS_BIN`, else the one built beside
/// this benchmark.
pub fn pipeline_bin() -> Result<PathBuf> {
    if let Ok(bin) = std::env::var("BUTLER_ANALYTICS_BIN") {
        return Ok(bin.into());
    }
    let me = std::env::current_exe()?;
    let bin = me.with_file_name("butler-analytics");
    if !bin.is_file() {
        bail!(
            "{} is missing: build it first (make bench does) or set BUTLER_ANALYTICS_BIN",
            bin.display()
        );
    }
    Ok(bin)
}

/// Pipeline settings a benchmark varies.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// NATS URL.
    pub nats_url: String,
    /// Stream name.
    pub stream: String,
    /// Subject prefix.
    pub prefix: String,
    /// Database file.
    pub db: PathBuf,
    /// Whether the aggregation schedules run (off while ingest is timed).
    pub aggregation: bool,
    /// `ingest.batch_size`, when not the default.
    pub batch_size: Option<u32>,
    /// PostgreSQL instead of the file at `db`, when set.
    pub postgres_url: Option<String>,
    /// `aggregation.schedules`, as a YAML flow mapping, when not the defaults.
    pub schedules: Option<String>,
}

impl PipelineConfig {
    /// The YAML file this config is written as; the figures quote it.
    pub fn yaml(&self, metrics_port: u16) -> String {
        let ingest = self
            .batch_size
            .map(|n| format!("ingest:\n  batch_size: {n}\n"))
            .unwrap_or_default();
        ingest
            + &format!(
                "nats:\n  url: {}\n  stream: {}\n  subject_prefix: {}\nstorage:\n  path: {}\n{}\
             aggregation:\n  enabled: {}\n{}retention:\n  raw_events: 400\n\
             metrics:\n  listen: 127.0.0.1:{metrics_port}\n\
             reports:\n  storage: {}\n",
                self.nats_url,
                self.stream,
                self.prefix,
                self.db.display(),
                self.postgres_url
                    .as_ref()
                    .map(|url| format!("  url: {url}\n"))
                    .unwrap_or_default(),
                self.aggregation,
                self.schedules
                    .as_ref()
                    .map(|s| format!("  schedules: {s}\n"))
                    .unwrap_or_default(),
                self.db.with_extension("reports").display(),
            )
    }

    /// Writes the config next to the database and returns its path.
    pub fn write(&self, metrics_port: u16) -> Result<PathBuf> {
        let path = self.db.with_extension("yaml");
        std::fs::write(&path, self.yaml(metrics_port))?;
        Ok(path)
    }
}

/// A running pipeline, stopped with SIGTERM on drop.
pub struct Pipeline {
    child: Child,
    /// Its config file.
    pub config: PathBuf,
    metrics_port: u16,
}

impl Pipeline {
    /// Starts `butler-analytics run` and waits for `/readyz`.
    pub fn start(config: &PipelineConfig) -> Result<Pipeline> {
        let metrics_port = free_port()?;
        let path = config.write(metrics_port)?;
        let log = std::fs::File::create(config.db.with_extension("log"))?;
        let mut child = Command::new(pipeline_bin()?)
            .arg("-c")
            .arg(&path)
            .arg("run")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        wait_for_port(metrics_port, "butler-analytics", &mut child)?;
        let mut pipeline = Pipeline {
            child,
            config: path,
            metrics_port,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !pipeline.ready() {
            if let Some(status) = pipeline.child.try_wait()? {
                bail!("butler-analytics exited with {status} during start");
            }
            if Instant::now() > deadline {
                bail!("butler-analytics not ready after 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(pipeline)
    }

    /// The response to `GET path` on its metrics address, headers included.
    fn get(&self, path: &str) -> Option<String> {
        use std::io::{Read, Write};
        let mut s = TcpStream::connect(("127.0.0.1", self.metrics_port)).ok()?;
        let req = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
        let mut out = String::new();
        s.write_all(req.as_bytes()).ok()?;
        s.read_to_string(&mut out).ok()?;
        Some(out)
    }

    fn ready(&self) -> bool {
        self.get("/readyz")
            .is_some_and(|out| out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200"))
    }

    /// The sample of a metric whose labels include `label="value"`; 0 when absent.
    pub fn metric_labelled(&self, name: &str, (label, value): (&str, &str)) -> f64 {
        let body = self.get("/metrics").unwrap_or_default();
        let wanted = format!("{label}=\"{value}\"");
        body.lines()
            .filter_map(|line| line.rsplit_once(' '))
            .find(|(sample, _)| sample.split('{').next() == Some(name) && sample.contains(&wanted))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0.0)
    }

    /// The sum of every sample of a metric of its `/metrics`, whatever its labels.
    pub fn metric_sum(&self, name: &str) -> f64 {
        let body = self.get("/metrics").unwrap_or_default();
        body.lines()
            .filter_map(|line| line.rsplit_once(' '))
            .filter(|(sample, _)| sample.split('{').next() == Some(name))
            .filter_map(|(_, value)| value.parse::<f64>().ok())
            .fold(0.0, |sum, v| sum + v)
    }

    /// The value of an unlabelled metric (besides `pipeline_instance`) of its
    /// `/metrics`, e.g. `butler_analytics_live_dashboard_writes_total`; 0 when absent.
    pub fn metric(&self, name: &str) -> f64 {
        let body = self.get("/metrics").unwrap_or_default();
        body.lines()
            .filter_map(|line| line.rsplit_once(' '))
            .find(|(sample, _)| {
                sample.split('{').next() == Some(name)
                    && !sample.trim_start_matches(name).contains(",")
            })
            .and_then(|(_, value)| value.parse().ok())
            .unwrap_or(0.0)
    }

    /// Peak resident memory so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        status_field(self.child.id(), "VmHWM:")
    }

    /// Stops it (SIGTERM) and waits for its exit.
    pub fn stop(mut self) -> Result<()> {
        self.terminate()
    }

    fn terminate(&mut self) -> Result<()> {
        if self.child.try_wait()?.is_none() {
            let pid = self.child.id();
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            self.child.wait()?;
        }
        Ok(())
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        if self.terminate().is_err() {
            let _ = self.child.kill();
        }
    }
}

/// CPU seconds (user and system) spent so far by the living processes whose name
/// (`/proc/<pid>/comm`, at most 15 characters) is `name`.
pub fn cpu_seconds(name: &str) -> f64 {
    let ticks_per_s = 100.0;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    let mut ticks = 0u64;
    for entry in dir.flatten() {
        let path = entry.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
        // The fields after the parenthesized name: utime and stime are the 12th and
        // 13th of them.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
        for i in [11, 12] {
            ticks += fields
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    ticks as f64 / ticks_per_s
}

/// A numeric field of `/proc/<pid>/status`, in KiB.
pub fn status_field(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// One aggregation run as the CLI reports it.
#[derive(Debug, Clone)]
pub struct JobRun {
    /// Wall time of the whole command, process start included.
    pub wall: Duration,
    /// The job's own time, as it reports it.
    pub job_ms: f64,
    /// Buckets it recomputed.
    pub periods: u64,
    /// The CLI's line.
    pub line: String,
}

/// Runs `butler-analytics aggregate …` and reads back what the run did.
pub fn aggregate(config: &Path, args: &[&str]) -> Result<JobRun> {
    let (wall, out) = command_output(config, args)?;
    let line = out.lines().next().unwrap_or_default().trim().to_owned();
    let words: Vec<&str> = line.split_whitespace().collect();
    let number_before = |word: &str| {
        words
            .iter()
            .position(|w| *w == word)
            .and_then(|i| i.checked_sub(1))
            .and_then(|i| words[i].parse::<f64>().ok())
    };
    let periods = number_before("periods").unwrap_or(0.0) as u64;
    let job_ms = words
        .iter()
        .rposition(|w| *w == "ms")
        .and_then(|i| i.checked_sub(1))
        .and_then(|i| words[i].parse::<f64>().ok())
        .unwrap_or(wall.as_secs_f64() * 1000.0);
    let total_ms: f64 = out
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.iter()
                .rposition(|x| *x == "ms")
                .and_then(|i| i.checked_sub(1))
                .and_then(|i| w[i].parse::<f64>().ok())
        })
        .sum();
    Ok(JobRun {
        wall,
        job_ms: if out.lines().count() > 1 {
            total_ms
        } else {
            job_ms
        },
        periods,
        line,
    })
}

/// Runs a `butler-analytics` command with `config` and returns its wall time.
pub fn timed_command(config: &Path, args: &[&str]) -> Result<Duration> {
    Ok(command_output(config, args)?.0)
}

/// Runs a `butler-analytics` command with `config`: its wall time and standard output.
pub fn command_output(config: &Path, args: &[&str]) -> Result<(Duration, String)> {
    let started = Instant::now();
    let out = Command::new(pipeline_bin()?)
        .arg("-c")
        .arg(config)
        .args(args)
        .output()?;
    let took = started.elapsed();
    if !out.status.success() {
        bail!(
            "butler-analytics {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok((took, String::from_utf8_lossy(&out.stdout).into_owned()))
}
