//! Logging: human-readable by default, JSON lines with `LOG_FORMAT=json`, filtered by
//! `RUST_LOG` (default `info` for `run`, `warn` for the one-shot commands, whose output
//! is their answer).

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; logs go to stderr so that command output on stdout
/// stays clean for scripts.
pub fn init(default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    // A second init (tests) keeps the first subscriber.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Registers what every Prometheus exporter is expected to have: which build runs
/// (`butler_analytics_build_info{version,git_sha}`, always 1) and the process's own
/// CPU, memory and file descriptors (`process_*`).
///
/// # Errors
/// When a metric of the same name is already registered.
pub fn register_process_metrics(registry: &prometheus::Registry) -> prometheus::Result<()> {
    let build = prometheus::IntGaugeVec::new(
        prometheus::Opts::new(
            "butler_analytics_build_info",
            "The running build: version and commit, always 1.",
        ),
        &["version", "git_sha"],
    )?;
    build
        .with_label_values(&[env!("CARGO_PKG_VERSION"), env!("BUTLER_GIT_SHA")])
        .set(1);
    registry.register(Box::new(build))?;
    registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))?;
    Ok(())
}
