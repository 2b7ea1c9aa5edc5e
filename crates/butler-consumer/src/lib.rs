//! Butler analytics consumer: events from a JetStream durable pull consumer into
//! durable storage, acked only once stored.
//!
//! Three tasks overlap so that NATS and the database both stay busy: the **reader**
//! pulls messages, cuts them into batches (`ingest.batch_size` or
//! `ingest.flush_interval_ms`, whichever comes first) and validates them; the
//! **writer** commits each batch in one transaction through [`butler_storage`]
//! (SQLite or PostgreSQL, whichever `storage` names) and hands its messages to the
//! **acker**, which acks them, in commit order, while the next batch commits. A
//! one-slot channel joins the reader to the writer. Group commit (`ingest.max_batch`,
//! 10000 by default): while the writer is busy and the slot full the next batch keeps
//! growing up to it, so a backlog is written in fewer, larger commits and light traffic in small
//! ones. The events in hand are bounded by one batch being committed, one in the slot
//! and one growing. Beside them, [`jetstream::watch_lag`] publishes the consumer's
//! backlog as gauges.
//!
//! Layout:
//! - [`settings`]: [`ConsumerSettings`], what the consumer takes from the config, and
//!   the [`CommitHook`] called after each commit;
//! - [`jetstream`]: the stream and durable consumer, created when absent;
//! - [`reader`], [`writer`]: the reader task and the writer task, which starts the
//!   acker; [`run`] starts them;
//! - [`decode`]: a NATS message into an event or a dead letter;
//! - [`replay`]: dead letters back through validation after a fix;
//! - [`metrics`]: the ingest metrics, [`IngestMetrics`].

pub mod decode;
pub mod jetstream;
pub mod metrics;
pub mod reader;
pub mod replay;
pub mod settings;
pub mod writer;

use butler_storage::Storage;
use tokio_util::sync::CancellationToken;

pub use metrics::IngestMetrics;
pub use settings::{CommitHook, ConsumerSettings};

/// Why the consumer stopped other than by shutdown.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// A task of the consumer panicked.
    #[error("consumer task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Runs the consumer until `shutdown` is cancelled, then commits and acks the events
/// in hand, flushes the acks to the server and returns.
///
/// # Errors
/// [`ConsumerError::Task`] when a task panicked; NATS and database failures are
/// retried with back-off instead of ending the consumer.
pub async fn run(
    client: async_nats::Client,
    storage: Storage,
    settings: ConsumerSettings,
    metrics: IngestMetrics,
    shutdown: CancellationToken,
) -> Result<(), ConsumerError> {
    let (batches, inbox) = tokio::sync::mpsc::channel(1);
    let js = async_nats::jetstream::new(client.clone());
    let reader = tokio::spawn(reader::run(
        js.clone(),
        settings.clone(),
        metrics.clone(),
        batches,
        shutdown.clone(),
    ));
    let writer = tokio::spawn(writer::run(
        storage,
        settings.clone(),
        metrics.clone(),
        inbox,
        shutdown.clone(),
    ));
    let lag = tokio::spawn(jetstream::watch_lag(js, settings, metrics, shutdown));
    reader.await?;
    writer.await?;
    lag.await?;
    if let Err(err) = client.flush().await {
        tracing::warn!(error = %err, "could not flush the last acks; those messages will be redelivered and deduplicated");
    }
    Ok(())
}
