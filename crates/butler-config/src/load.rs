//! Reading, overriding and checking the configuration.

use std::path::Path;

use serde_json::{Map, Value};

use crate::{
    AggregationConfig, Config, DashboardConfig, IngestConfig, NatsConfig, ReportsConfig,
    RetentionConfig, StorageConfig,
};

/// Environment variables starting with this override config keys:
/// `BUTLER_ANALYTICS__NATS__URL` sets `nats.url`.
pub const ENV_PREFIX: &str = "BUTLER_ANALYTICS__";

/// Why the configuration was refused; every variant names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file given with `--config`.
        path: String,
        /// The IO error.
        source: std::io::Error,
    },
    /// The file is not YAML.
    #[error("config file {path} is not valid YAML: {message}")]
    Yaml {
        /// The file given with `--config`.
        path: String,
        /// The parser's words, with the line and column.
        message: String,
    },
    /// A key is unknown or its value is wrong.
    #[error("config key `{key}`: {message}")]
    Invalid {
        /// The dotted key, e.g. `ingest.batch_size`.
        key: String,
        /// What is wrong with it.
        message: String,
    },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// Loads the file (or the defaults when `path` is `None`), then applies the
/// environment overrides found in `env`, then checks every value.
///
/// # Errors
/// [`ConfigError`] naming the file, key or variable at fault.
pub fn load(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let text = match path {
        Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
            path: p.display().to_string(),
            source,
        })?,
        None => String::new(),
    };
    let name = path.map_or_else(|| "<defaults>".to_owned(), |p| p.display().to_string());
    load_from_str(&name, &text, env)
}

/// [`load`] from text already in memory; `name` is used in messages.
///
/// # Errors
/// As [`load`].
pub fn load_from_str(
    name: &str,
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let mut tree = if text.trim().is_empty() {
        Value::Object(Map::new())
    } else {
        serde_saphyr::from_str::<Value>(text).map_err(|e| ConfigError::Yaml {
            path: name.to_owned(),
            message: e.to_string(),
        })?
    };
    if tree.is_null() {
        tree = Value::Object(Map::new());
    }
    if !tree.is_object() {
        return Err(ConfigError::Yaml {
            path: name.to_owned(),
            message: "the top level must be a mapping of sections (nats, storage, …)".into(),
        });
    }

    let mut overrides = Vec::new();
    for (var, raw) in env {
        let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let key: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
        if key.iter().any(String::is_empty) {
            return Err(invalid(
                var,
                "is not of the form BUTLER_ANALYTICS__SECTION__KEY",
            ));
        }
        set_path(&mut tree, &key, scalar(&raw))
            .map_err(|()| invalid(key.join("."), format!("cannot be set by {var}")))?;
        overrides.push((key, raw));
    }

    let config = deserialize(tree, &overrides)?;
    check(&config)?;
    Ok(config)
}

/// An environment value read as YAML (`true`, `1000`, `[a, b]`), or as the plain
/// string when it is not valid YAML.
fn scalar(raw: &str) -> Value {
    serde_saphyr::from_str::<Value>(raw).unwrap_or_else(|_| Value::String(raw.to_owned()))
}

fn set_path(tree: &mut Value, key: &[String], value: Value) -> Result<(), ()> {
    let Some((last, parents)) = key.split_last() else {
        return Err(());
    };
    let mut node = tree;
    for part in parents {
        let map = node.as_object_mut().ok_or(())?;
        node = map
            .entry(part.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    node.as_object_mut().ok_or(())?.insert(last.clone(), value);
    Ok(())
}

/// Deserializes with the failing key's path in the message. An environment value that
/// looked like a number or boolean but belongs to a string key (a numeric password,
/// say) is retried as the string it was.
fn deserialize(
    mut tree: Value,
    overrides: &[(Vec<String>, String)],
) -> Result<Config, ConfigError> {
    let mut retried = vec![false; overrides.len()];
    loop {
        let err = match serde_path_to_error::deserialize::<_, Config>(tree.clone()) {
            Ok(config) => return Ok(config),
            Err(err) => err,
        };
        let key = err.path().to_string();
        let retry = overrides.iter().enumerate().find(|(i, (path, raw))| {
            !retried[*i] && path.join(".") == key && scalar(raw) != Value::String(raw.clone())
        });
        match retry {
            Some((i, (path, raw))) => {
                retried[i] = true;
                set_path(&mut tree, path, Value::String(raw.clone()))
                    .map_err(|()| invalid(&key, "cannot be set"))?;
            }
            None => return Err(invalid(key, err.inner().to_string())),
        }
    }
}

/// Checks what types alone cannot say, one section after another in the file's
/// order, so the first fault reported is the first in the file.
fn check(c: &Config) -> Result<(), ConfigError> {
    check_nats(&c.nats)?;
    check_storage(&c.storage)?;
    check_ingest(&c.ingest, &c.nats)?;
    check_aggregation(&c.aggregation)?;
    check_retention(&c.retention)?;
    check_reports(&c.reports)?;
    check_dashboard(&c.dashboard)?;
    if let Some(level) = &c.log.level {
        check_log_level(level)?;
    }
    check_business_hours(&c.business_hours)?;
    if c.shutdown.grace_s > 3600 {
        return Err(invalid(
            "shutdown.grace_s",
            "must be at most 3600 (seconds)",
        ));
    }
    Ok(())
}

/// `business_hours`: every schedule parses, each fault named by its weekday or
/// `holidays` key. (SLA targets are unsigned: a negative one is refused as a type.)
fn check_business_hours(b: &crate::BusinessHoursConfig) -> Result<(), ConfigError> {
    let schedules = std::iter::once(("business_hours.default".to_owned(), &b.default)).chain(
        b.properties
            .iter()
            .map(|(property, week)| (format!("business_hours.properties.{property}"), week)),
    );
    for (key, week) in schedules {
        if let Err(err) = week.schedule() {
            return Err(invalid(format!("{key}.{}", err.part), err.message));
        }
    }
    Ok(())
}

fn non_empty(key: &str, v: &str) -> Result<(), ConfigError> {
    if v.trim().is_empty() {
        Err(invalid(key, "must not be empty"))
    } else {
        Ok(())
    }
}

/// `nats`: the servers, the names of subjects, stream and consumer, the limits, and
/// the credentials.
fn check_nats(n: &NatsConfig) -> Result<(), ConfigError> {
    check_nats_servers(n)?;
    check_nats_names(n)?;
    if n.ack_wait_ms < 1_000 {
        return Err(invalid("nats.ack_wait_ms", "must be at least 1000"));
    }
    if !(1..=5).contains(&n.stream_replicas) {
        return Err(invalid("nats.stream_replicas", "must be between 1 and 5"));
    }
    if n.max_ack_pending < 1 {
        return Err(invalid("nats.max_ack_pending", "must be at least 1"));
    }
    check_nats_auth(n)
}

/// `nats.url`: one or more server URLs of a NATS scheme. A URL's credentials are left
/// out of the message.
fn check_nats_servers(n: &NatsConfig) -> Result<(), ConfigError> {
    non_empty("nats.url", n.url.expose())?;
    for server in n.servers() {
        let scheme_ok = ["nats://", "tls://", "ws://", "wss://"]
            .iter()
            .any(|s| server.starts_with(s))
            || !server.contains("://");
        let shown = server.split('@').next_back().unwrap_or(server);
        if !scheme_ok || server.contains(char::is_whitespace) {
            return Err(invalid(
                "nats.url",
                format!(
                    "{shown:?} is not a NATS server URL (nats://host:port, tls://, ws://, wss://; \
                     several separated by commas)"
                ),
            ));
        }
        if let Some(port) = server_port(server)
            && !matches!(port.parse::<u16>(), Ok(1..))
        {
            return Err(invalid(
                "nats.url",
                format!("{shown:?}: the port must be a number from 1 to 65535"),
            ));
        }
    }
    Ok(())
}

/// The port of a server URL as written (`nats://u:p@h:4222/` → `4222`), or `None` when
/// the URL names none and the scheme's default applies.
fn server_port(server: &str) -> Option<&str> {
    let rest = server.split_once("://").map_or(server, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    let after_host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map_or("", |(_, after)| after),
        None => host_port,
    };
    after_host.rsplit_once(':').map(|(_, port)| port)
}

/// `nats.subject_prefix`, `nats.stream` and `nats.consumer`: names the server takes
/// literally.
fn check_nats_names(n: &NatsConfig) -> Result<(), ConfigError> {
    non_empty("nats.subject_prefix", &n.subject_prefix)?;
    if n.subject_prefix.contains(['*', '>', ' ']) || n.subject_prefix.ends_with('.') {
        return Err(invalid(
            "nats.subject_prefix",
            "must be a plain subject such as butler.events (no wildcards, no trailing dot)",
        ));
    }
    let name_ok = |v: &str| !v.is_empty() && !v.contains(['.', '*', '>', ' ', '/', '\\']);
    for (key, name) in [("nats.stream", &n.stream), ("nats.consumer", &n.consumer)] {
        if !name_ok(name) {
            return Err(invalid(
                key,
                "must be a non-empty name without . * > / or spaces",
            ));
        }
    }
    Ok(())
}

/// The credentials: one way of authenticating at most, each complete.
fn check_nats_auth(n: &NatsConfig) -> Result<(), ConfigError> {
    if n.password.is_some() && n.user.is_none() {
        return Err(invalid("nats.password", "needs nats.user"));
    }
    let auth_modes = [
        n.token.is_some(),
        n.user.is_some(),
        n.nkey_seed.is_some(),
        n.creds_file.is_some(),
    ];
    if auth_modes.iter().filter(|set| **set).count() > 1 {
        return Err(invalid(
            "nats",
            "set at most one of token, user/password, nkey_seed and creds_file",
        ));
    }
    if let Some(tls) = &n.tls
        && tls.cert_file.is_some() != tls.key_file.is_some()
    {
        return Err(invalid("nats.tls", "cert_file and key_file go together"));
    }
    let tls = n.tls.as_ref();
    for (key, file) in [
        ("nats.creds_file", n.creds_file.as_ref()),
        ("nats.tls.ca_file", tls.and_then(|t| t.ca_file.as_ref())),
        ("nats.tls.cert_file", tls.and_then(|t| t.cert_file.as_ref())),
        ("nats.tls.key_file", tls.and_then(|t| t.key_file.as_ref())),
    ] {
        if let Some(file) = file {
            readable_file(key, file)?;
        }
    }
    Ok(())
}

/// A file the pipeline reads at start-up: refused now rather than at the first
/// connection, where the failure would look like the server's.
fn readable_file(key: &str, file: &Path) -> Result<(), ConfigError> {
    match std::fs::metadata(file) {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(_) => Err(invalid(key, format!("{} is not a file", file.display()))),
        Err(e) => Err(invalid(key, format!("cannot read {}: {e}", file.display()))),
    }
}

/// `storage`: a file name, and a URL that names a database ([`crate::Database::of`]).
fn check_storage(s: &StorageConfig) -> Result<(), ConfigError> {
    non_empty("storage.path", &s.path.to_string_lossy())?;
    s.database().map(|_| ())
}

/// `ingest`: batch sizes, the flush interval (which `nats.ack_wait_ms` must cover
/// twice) and the channels.
fn check_ingest(i: &IngestConfig, n: &NatsConfig) -> Result<(), ConfigError> {
    if !(1..=100_000).contains(&i.batch_size) {
        return Err(invalid("ingest.batch_size", "must be between 1 and 100000"));
    }
    if !(i.batch_size..=100_000).contains(&i.max_batch) {
        return Err(invalid(
            "ingest.max_batch",
            format!(
                "is {} and must be between ingest.batch_size ({}) and 100000 (default 10000: a batch_size above it needs a max_batch as large)",
                i.max_batch, i.batch_size
            ),
        ));
    }
    if i.flush_interval_ms == 0 {
        return Err(invalid("ingest.flush_interval_ms", "must be at least 1"));
    }
    if n.ack_wait_ms < 2 * i.flush_interval_ms {
        return Err(invalid(
            "nats.ack_wait_ms",
            format!(
                "must be at least twice ingest.flush_interval_ms ({} ms), or events are redelivered while they wait for their batch",
                i.flush_interval_ms
            ),
        ));
    }
    if i.channels.is_empty() {
        return Err(invalid("ingest.channels", "must list at least one channel"));
    }
    if let Some(bad) = i.channels.iter().find(|ch| ch.trim().is_empty()) {
        return Err(invalid(
            "ingest.channels",
            format!("holds an empty channel name {bad:?}"),
        ));
    }
    Ok(())
}

/// `aggregation`: the zones and the lease.
fn check_aggregation(a: &AggregationConfig) -> Result<(), ConfigError> {
    check_zone("aggregation.timezone", &a.timezone)?;
    if !(100..=3_600_000).contains(&a.lease_ms) {
        return Err(invalid(
            "aggregation.lease_ms",
            "must be between 100 ms and one hour",
        ));
    }
    for (property, zone) in &a.property_timezones {
        check_zone(&format!("aggregation.property_timezones.{property}"), zone)?;
    }
    Ok(())
}

/// `retention`: at least a day of everything.
fn check_retention(r: &RetentionConfig) -> Result<(), ConfigError> {
    for (key, days) in [
        ("retention.raw_events", r.raw_events),
        ("retention.hourly_aggregations", r.hourly_aggregations),
        ("retention.daily_aggregations", r.daily_aggregations),
        ("retention.weekly_aggregations", r.weekly_aggregations),
        ("retention.monthly_aggregations", r.monthly_aggregations),
        ("retention.live_state", r.live_state),
    ] {
        if days == 0 {
            return Err(invalid(key, "must be at least 1 day"));
        }
    }
    Ok(())
}

/// `reports`: a format, and an object store that can be a bucket.
fn check_reports(r: &ReportsConfig) -> Result<(), ConfigError> {
    if r.formats.is_empty() {
        return Err(invalid("reports.formats", "must list json, csv or both"));
    }
    if let Some(bucket) = &r.object_store
        && !is_bucket_name(bucket)
    {
        return Err(invalid(
            "reports.object_store",
            format!("{bucket:?} is not a bucket name: letters, digits, _ and - only"),
        ));
    }
    Ok(())
}

/// `dashboard`: the bucket and the two intervals.
fn check_dashboard(d: &DashboardConfig) -> Result<(), ConfigError> {
    if !is_bucket_name(&d.kv_bucket) {
        return Err(invalid(
            "dashboard.kv_bucket",
            format!(
                "{:?} is not a bucket name: letters, digits, _ and - only",
                d.kv_bucket
            ),
        ));
    }
    if !(10..=3_600_000).contains(&d.push_interval_ms) {
        return Err(invalid(
            "dashboard.push_interval_ms",
            "must be between 10 ms and one hour",
        ));
    }
    if !(1..=86_400).contains(&d.refresh_s) {
        return Err(invalid(
            "dashboard.refresh_s",
            "must be between 1 s and one day",
        ));
    }
    Ok(())
}

/// `log.level`: directives separated by commas, each a level or `target=level`.
fn check_log_level(level: &str) -> Result<(), ConfigError> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let ok = |directive: &str| {
        let level = directive.rsplit('=').next().unwrap_or(directive).trim();
        let target_ok = match directive.split_once('=') {
            Some((target, _)) => {
                !target.is_empty()
                    && target
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '-')
            }
            None => true,
        };
        target_ok && LEVELS.contains(&level.to_ascii_lowercase().as_str())
    };
    if level.split(',').all(|d| ok(d.trim())) {
        Ok(())
    } else {
        Err(invalid(
            "log.level",
            format!(
                "{level:?} is not a level (off, error, warn, info, debug, trace) or directives such as info,butler_analytics=debug"
            ),
        ))
    }
}

/// A JetStream bucket name: letters, digits, `_` and `-`.
fn is_bucket_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
}

fn check_zone(key: &str, name: &str) -> Result<(), ConfigError> {
    name.parse::<chrono_tz::Tz>().map(|_| ()).map_err(|_| {
        invalid(
            key,
            format!("{name:?} is not an IANA time zone name such as Europe/Lisbon"),
        )
    })
}

#[cfg(test)]
mod tests;
