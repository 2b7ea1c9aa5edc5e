//! What the consumer takes from the configuration.

use std::sync::Arc;
use std::time::Duration;

use butler_config::Config;
use butler_events::ValidationRules;

/// The consumer's settings, derived from the `nats`, `ingest` and `retention`
/// sections.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// The stream name.
    pub stream: String,
    /// Subjects of the stream, `<prefix>.>`.
    pub subjects: String,
    /// Create the stream when it is missing.
    pub create_stream: bool,
    /// Replicas of a stream it creates.
    pub stream_replicas: usize,
    /// The durable consumer's name.
    pub consumer: String,
    /// The usual events in one commit.
    pub batch_size: usize,
    /// Most events in one commit, reached while the writer is busy (group commit).
    pub max_batch: usize,
    /// Longest an event waits for its commit.
    pub flush_interval: Duration,
    /// Server-side redelivery timeout.
    pub ack_wait: Duration,
    /// How long commits may go on once shutdown has begun (`shutdown.grace_s`).
    pub shutdown_grace: Duration,
    /// Most unacked messages across all processes.
    pub max_ack_pending: i64,
    /// How a message is judged.
    pub rules: ValidationRules,
    /// Told, after each commit, the properties it gave new events.
    pub on_commit: Option<CommitHook>,
    /// The zone of each property's local days, for what is on today's figures.
    pub zones: butler_events::Zones,
}

/// Called after each commit with the properties of its new events (sorted, each
/// once, with the earliest timestamp among its new events of the property's current
/// local day, if any), so views derived from the
/// events (the live dashboards) follow commits without polling the database, and can
/// say how fresh they are. It must return quickly: it runs on the writer.
#[derive(Clone)]
pub struct CommitHook(pub Arc<CommittedProperties>);

/// The function behind a [`CommitHook`].
pub type CommittedProperties = dyn Fn(&[(&str, Option<butler_events::EventTime>)]) + Send + Sync;

impl std::fmt::Debug for CommitHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CommitHook")
    }
}

impl ConsumerSettings {
    /// Settings from a checked configuration.
    pub fn from_config(config: &Config) -> ConsumerSettings {
        ConsumerSettings {
            stream: config.nats.stream.clone(),
            subjects: format!("{}.>", config.nats.subject_prefix),
            create_stream: config.nats.create_stream,
            stream_replicas: config.nats.stream_replicas,
            consumer: config.nats.consumer.clone(),
            batch_size: config.ingest.batch_size,
            max_batch: config.ingest.max_batch,
            flush_interval: Duration::from_millis(config.ingest.flush_interval_ms),
            ack_wait: Duration::from_millis(config.nats.ack_wait_ms),
            shutdown_grace: Duration::from_secs(config.shutdown.grace_s),
            max_ack_pending: config.nats.max_ack_pending,
            rules: validation_rules(config),
            on_commit: None,
            zones: config.zones(),
        }
    }
}

/// The validation rules of a configuration, shared by ingest and replay.
pub fn validation_rules(config: &Config) -> ValidationRules {
    ValidationRules {
        subject_prefix: config.nats.subject_prefix.clone(),
        channels: config.ingest.channels.clone(),
        max_future_skew: chrono::Duration::seconds(
            i64::try_from(config.ingest.max_future_skew_s).unwrap_or(i64::MAX / 1000),
        ),
        raw_retention: chrono::Duration::days(i64::from(config.retention.raw_events)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Group commit is on by default (CONTRACT §5: `max_batch: 10000`); `max_batch`
    /// equal to `batch_size` turns it off.
    #[test]
    fn group_commit_is_on_by_default() {
        let mut config = Config::default();
        config.ingest.batch_size = 700;
        assert_eq!(ConsumerSettings::from_config(&config).max_batch, 10_000);
        config.ingest.max_batch = 700;
        assert_eq!(ConsumerSettings::from_config(&config).max_batch, 700);
    }
}
