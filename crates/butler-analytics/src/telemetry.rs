//! Logging: human-readable by default (coloured on a terminal only), JSON lines with `LOG_FORMAT=json`, filtered by
//! `RUST_LOG` (default `info` for `run`, `warn` for the one-shot commands, whose output
//! is their answer). Every line names this process's instance, so the logs of several
//! instances can be told apart once collected together.

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Changes the filter of the installed subscriber; set once by [`init`].
type SetFilter = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

/// How a reload reaches the subscriber's filter.
static SET_FILTER: std::sync::OnceLock<SetFilter> = std::sync::OnceLock::new();

/// Installs the global subscriber; logs go to stderr so that command output on stdout
/// stays clean for scripts. The filter is `log.level` when set, else `RUST_LOG`, else
/// `default_level`.
pub fn init(default_level: &str, configured: Option<&str>, instance: &str) {
    let filter = match configured {
        Some(level) => EnvFilter::new(level),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)),
    };
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    // Colours only on a terminal: a journal or a log file gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(InstanceLines::new(instance, json));
    // A second init (tests) keeps the first subscriber.
    let installed = if json {
        let builder = builder.json().with_filter_reloading();
        let handle = builder.reload_handle();
        builder.try_init().map(|()| reloader(handle))
    } else {
        let builder = builder.with_filter_reloading();
        let handle = builder.reload_handle();
        builder.try_init().map(|()| reloader(handle))
    };
    if let Ok(set) = installed {
        let _ = SET_FILTER.set(set);
    }
}

fn reloader<S: 'static>(handle: tracing_subscriber::reload::Handle<EnvFilter, S>) -> SetFilter {
    Box::new(move |filter| handle.reload(filter).map_err(|e| e.to_string()))
}

/// Applies a reloaded `log.level`: absent, `RUST_LOG` or `default_level` as at start.
///
/// # Errors
/// When the subscriber is gone or was not installed by [`init`].
pub fn set_level(default_level: &str, configured: Option<&str>) -> Result<(), String> {
    let filter = match configured {
        Some(level) => EnvFilter::new(level),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)),
    };
    match SET_FILTER.get() {
        Some(set) => set(filter),
        None => Err("no reloadable log subscriber".into()),
    }
}

/// Stderr, with the instance written into each log line: a leading
/// `"pipeline_instance"` field in a JSON line, a `[name]` prefix in text.
#[derive(Debug, Clone)]
struct InstanceLines {
    prefix: Arc<[u8]>,
    json: bool,
}

impl InstanceLines {
    fn new(instance: &str, json: bool) -> InstanceLines {
        let prefix = if json {
            let name = serde_json::to_string(instance).unwrap_or_else(|_| "\"\"".into());
            format!("{{\"pipeline_instance\":{name},")
        } else {
            format!("[{instance}] ")
        };
        InstanceLines {
            prefix: prefix.into_bytes().into(),
            json,
        }
    }

    /// `line` as written: the prefix in front (for JSON, in place of its `{`).
    fn tag(&self, line: &[u8]) -> Vec<u8> {
        let body = match (self.json, line.first()) {
            (true, Some(b'{')) => &line[1..],
            (true, _) => return line.to_vec(),
            (false, _) => line,
        };
        let mut out = Vec::with_capacity(self.prefix.len() + body.len());
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(body);
        out
    }
}

/// One log event's writer: the formatter writes the whole line at once.
#[derive(Debug)]
struct TaggedStderr(InstanceLines);

impl Write for TaggedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stderr().lock().write_all(&self.0.tag(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for InstanceLines {
    type Writer = TaggedStderr;

    fn make_writer(&'a self) -> TaggedStderr {
        TaggedStderr(self.clone())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_line_names_the_instance() {
        let text = InstanceLines::new("east-1", false);
        assert_eq!(text.tag(b"INFO running\n"), b"[east-1] INFO running\n");
        let json = InstanceLines::new("east \"1\"", true);
        let line = json.tag(b"{\"level\":\"INFO\"}\n");
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["pipeline_instance"], "east \"1\"");
        assert_eq!(v["level"], "INFO");
    }
}
