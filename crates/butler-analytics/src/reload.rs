//! Reloading the configuration without a restart: on SIGHUP, or when the file changes
//! with `run --watch-config`. The new file is loaded and checked as at start; a bad one
//! is refused and the running configuration kept. Of a good one, the keys the running
//! parts can take over — the aggregation schedules, retention, the dashboard cache,
//! the live dashboards' intervals, the log level, business hours and SLA targets —
//! take effect at once, without dropping a batch or
//! interrupting a running job; the others (NATS, storage, ingest, …) are named in a
//! warning and keep their running values until a restart.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use butler_aggregator::SharedRules;
use butler_aggregator::schedule::SchedulePlan;
use butler_config::Config;
use butler_query::dashboard::DashboardCache;
use butler_query::live::LiveIntervals;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often `--watch-config` looks at the file's modification time.
const WATCH_EVERY: Duration = Duration::from_secs(2);

/// The keys a reload applies to the running process (a key, or a section ending in
/// `.`); every other key needs a restart.
pub const RELOADABLE: [&str; 8] = [
    "aggregation.schedules.",
    "retention.",
    "cache.",
    "dashboard.push_interval_ms",
    "dashboard.refresh_s",
    "log.level",
    "business_hours.",
    "sla.",
];

/// Where a reload reads the configuration from.
#[derive(Debug, Clone, Default)]
pub struct ReloadSource {
    /// The file given with `--config`; without one, a reload reads the environment
    /// over the defaults again.
    pub path: Option<PathBuf>,
    /// Whether to reload when the file's modification time changes.
    pub watch: bool,
}

/// The dashboard cache's TTL, `None` when it is off.
pub fn cache_ttl(config: &Config) -> Option<Duration> {
    config
        .cache
        .enabled
        .then(|| Duration::from_millis(config.cache.ttl_ms))
}

/// The live dashboards' intervals.
pub fn live_intervals(config: &Config) -> LiveIntervals {
    LiveIntervals {
        push: Duration::from_millis(config.dashboard.push_interval_ms),
        refresh: Duration::from_secs(config.dashboard.refresh_s),
    }
}

/// Reloads applied and refused.
#[derive(Clone)]
pub struct ReloadMetrics {
    applied: IntCounter,
    refused: IntCounter,
}

impl ReloadMetrics {
    /// Creates `butler_analytics_config_reloads_total{outcome}` in `registry`.
    ///
    /// # Errors
    /// When a metric of the same name is already registered.
    pub fn register(registry: &Registry) -> prometheus::Result<ReloadMetrics> {
        let reloads = butler_events::registry::register(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "butler_analytics_config_reloads_total",
                    "Configuration reloads (SIGHUP or --watch-config): applied, or refused for a bad file (the running configuration kept).",
                ),
                &["outcome"],
            )?,
        )?;
        Ok(ReloadMetrics {
            applied: reloads.with_label_values(&["applied"]),
            refused: reloads.with_label_values(&["refused"]),
        })
    }
}

/// The running configuration and the handles a reload changes it through.
pub struct Reloader {
    /// The configuration in effect (restart-only keys as at start).
    pub running: Config,
    /// Where to read it again.
    pub source: ReloadSource,
    /// The aggregation loop's schedules and retention.
    pub plans: watch::Sender<SchedulePlan>,
    /// The dashboard reply cache.
    pub dashboard_cache: DashboardCache,
    /// The live dashboards' intervals.
    pub live_intervals: watch::Sender<LiveIntervals>,
    /// The business hours and SLA targets the jobs apply.
    pub rules: SharedRules,
    /// Reloads applied and refused.
    pub metrics: ReloadMetrics,
}

impl Reloader {
    /// Reloads on each SIGHUP (and on each change of the file with `--watch-config`)
    /// until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(hangups) => hangups,
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGHUP; the configuration is not reloadable");
                return;
            }
        };
        let mut poll = tokio::time::interval(WATCH_EVERY);
        let mut seen = self.modified();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = hangups.recv() => self.reload("SIGHUP"),
                _ = poll.tick(), if self.source.watch => {
                    let now = self.modified();
                    if now != seen {
                        seen = now;
                        self.reload("the file changed");
                    }
                }
            }
        }
    }

    fn modified(&self) -> Option<SystemTime> {
        let path = self.source.path.as_ref()?;
        std::fs::metadata(path).and_then(|m| m.modified()).ok()
    }

    /// Loads the configuration again and applies what can be applied.
    fn reload(&mut self, why: &str) {
        let loaded = butler_config::load(self.source.path.as_deref(), std::env::vars())
            .map_err(anyhow::Error::from)
            .and_then(|config| crate::aggregation::check_schedules(&config).map(|()| config));
        let new = match loaded {
            Ok(new) => new,
            Err(err) => {
                self.metrics.refused.inc();
                tracing::error!(trigger = why, error = %format!("{err:#}"), "configuration reload refused; the running configuration is kept");
                return;
            }
        };
        let changed = changed_keys(&self.running, &new);
        let (applied, needs_restart): (Vec<&String>, Vec<&String>) =
            changed.iter().partition(|key| reloadable(key));
        if !needs_restart.is_empty() {
            tracing::warn!(
                keys = %join(&needs_restart),
                "configuration reload: these keys take effect only after a restart; they keep their running values"
            );
        }
        let merged = with_reloadable_keys(&self.running, &new);
        if let Ok(plan) = crate::aggregation::schedule_plan(&merged)
            && (merged.aggregation.schedules != self.running.aggregation.schedules
                || crate::aggregation::retention_days(&merged)
                    != crate::aggregation::retention_days(&self.running))
        {
            self.plans.send_replace(plan);
        }
        if cache_ttl(&merged) != cache_ttl(&self.running) {
            self.dashboard_cache.set_ttl(cache_ttl(&merged));
        }
        self.live_intervals.send_if_modified(|intervals| {
            let new = live_intervals(&merged);
            let modified = *intervals != new;
            *intervals = new;
            modified
        });
        if merged.business_hours != self.running.business_hours || merged.sla != self.running.sla {
            self.rules.set(merged.business_rules());
        }
        if merged.log != self.running.log
            && let Err(err) = crate::telemetry::set_level("info", merged.log.level.as_deref())
        {
            tracing::warn!(error = %err, "log.level not applied");
        }
        self.running = merged;
        self.metrics.applied.inc();
        tracing::info!(trigger = why, applied = %join(&applied), "configuration reloaded");
    }
}

fn join(keys: &[&String]) -> String {
    if keys.is_empty() {
        "none".to_owned()
    } else {
        keys.iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Whether a reload applies `key` to the running process.
pub fn reloadable(key: &str) -> bool {
    RELOADABLE
        .iter()
        .any(|r| key == r.trim_end_matches('.') || (r.ends_with('.') && key.starts_with(r)))
}

/// `running` with the reloadable keys of `new`.
fn with_reloadable_keys(running: &Config, new: &Config) -> Config {
    let mut merged = running.clone();
    merged.aggregation.schedules = new.aggregation.schedules.clone();
    merged.retention = new.retention.clone();
    merged.cache = new.cache.clone();
    merged.dashboard.push_interval_ms = new.dashboard.push_interval_ms;
    merged.dashboard.refresh_s = new.dashboard.refresh_s;
    merged.log = new.log.clone();
    merged.business_hours = new.business_hours.clone();
    merged.sla = new.sla.clone();
    merged
}

/// The dotted keys whose values differ between `a` and `b`; secrets are compared as
/// they are, though they print redacted.
pub fn changed_keys(a: &Config, b: &Config) -> Vec<String> {
    let (mut left, mut right) = (Vec::new(), Vec::new());
    leaves(&serde_json::to_value(a).unwrap_or_default(), "", &mut left);
    leaves(&serde_json::to_value(b).unwrap_or_default(), "", &mut right);
    let mut changed: Vec<String> = left
        .iter()
        .filter(|(key, value)| right.iter().find(|(k, _)| k == key).map(|(_, v)| v) != Some(value))
        .chain(
            right
                .iter()
                .filter(|(key, _)| !left.iter().any(|(k, _)| k == key)),
        )
        .map(|(key, _)| key.clone())
        .collect();
    let expose = |s: Option<&butler_config::Secret>| s.map(|s| s.expose().to_owned());
    for (key, differs) in [
        ("nats.url", a.nats.url.expose() != b.nats.url.expose()),
        (
            "storage.url",
            a.storage.url.as_ref().map(|u| u.expose())
                != b.storage.url.as_ref().map(|u| u.expose()),
        ),
        (
            "nats.token",
            expose(a.nats.token.as_ref()) != expose(b.nats.token.as_ref()),
        ),
        (
            "nats.password",
            expose(a.nats.password.as_ref()) != expose(b.nats.password.as_ref()),
        ),
        (
            "nats.nkey_seed",
            expose(a.nats.nkey_seed.as_ref()) != expose(b.nats.nkey_seed.as_ref()),
        ),
    ] {
        if differs && !changed.iter().any(|c| c == key) {
            changed.push(key.to_owned());
        }
    }
    changed.sort();
    changed.dedup();
    changed
}

/// Every leaf of `value` as `(dotted key, value)`; a list is one leaf.
fn leaves(value: &Value, prefix: &str, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(fields) => {
            for (name, field) in fields {
                let key = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}.{name}")
                };
                leaves(field, &key, out);
            }
        }
        other => out.push((prefix.to_owned(), other.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> Config {
        butler_config::load_from_str("t.yaml", yaml, Vec::new()).unwrap()
    }

    #[test]
    fn a_reload_names_each_changed_key_and_applies_only_the_reloadable_ones() {
        let running = config(
            "nats:\n  url: nats://u:old@h:4222\naggregation:\n  schedules:\n    hourly_message_counts: '5 * * * *'\n",
        );
        let new = config(
            "nats:\n  url: nats://u:new@h:4222\ningest:\n  batch_size: 500\naggregation:\n  schedules:\n    hourly_message_counts: '* * * * * *'\nretention:\n  raw_events: 30\ncache:\n  ttl_ms: 5000\ndashboard:\n  refresh_s: 5\nlog:\n  level: warn\nbusiness_hours:\n  properties:\n    p1: {mon: ['08:00-12:00']}\nsla:\n  first_response_ms: 60000\n",
        );
        let changed = changed_keys(&running, &new);
        assert_eq!(
            changed,
            [
                "aggregation.schedules.hourly_message_counts",
                "business_hours.properties.p1.holidays",
                "business_hours.properties.p1.mon",
                "cache.ttl_ms",
                "dashboard.refresh_s",
                "ingest.batch_size",
                "log.level",
                "nats.url",
                "retention.raw_events",
                "sla.first_response_ms",
            ]
        );
        let restart: Vec<_> = changed.iter().filter(|k| !reloadable(k)).collect();
        assert_eq!(restart, ["ingest.batch_size", "nats.url"]);
        let merged = with_reloadable_keys(&running, &new);
        assert_eq!(merged.nats.url.expose(), "nats://u:old@h:4222");
        assert_eq!(merged.ingest.batch_size, running.ingest.batch_size);
        assert_eq!(merged.retention.raw_events, 30);
        assert_eq!(merged.cache.ttl_ms, 5000);
        assert_eq!(merged.dashboard.refresh_s, 5);
        assert_eq!(merged.log.level.as_deref(), Some("warn"));
        assert_eq!(merged.business_hours, new.business_hours);
        assert_eq!(merged.sla.first_response_ms, 60_000);
        assert_eq!(
            merged.aggregation.schedules["hourly_message_counts"],
            "* * * * * *"
        );
        // What was applied is no longer a change; what was not stays one.
        let again: Vec<_> = changed_keys(&merged, &new);
        assert_eq!(again, ["ingest.batch_size", "nats.url"]);
        assert!(changed_keys(&running, &running).is_empty());
    }
}
