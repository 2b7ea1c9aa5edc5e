//! The stream and the durable pull consumer.

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::stream::{self, StorageType};
use async_nats::jetstream::{self, Context};
use tokio_util::sync::CancellationToken;

use crate::{ConsumerSettings, IngestMetrics};

/// Error from setting up the stream or consumer; retried with back-off.
pub type SetupError = Box<dyn std::error::Error + Send + Sync>;

/// The stream, created with file storage when absent and allowed; used as is
/// otherwise.
///
/// # Errors
/// The server's refusal, or "stream does not exist" when creation is off.
pub async fn ensure_stream(
    js: &Context,
    settings: &ConsumerSettings,
) -> Result<stream::Stream, SetupError> {
    if settings.create_stream {
        Ok(js
            .get_or_create_stream(stream::Config {
                name: settings.stream.clone(),
                subjects: vec![settings.subjects.clone()],
                storage: StorageType::File,
                num_replicas: settings.stream_replicas,
                ..Default::default()
            })
            .await?)
    } else {
        Ok(js.get_stream(&settings.stream).await?)
    }
}

/// The durable pull consumer, created when absent. An existing consumer is used with
/// its own settings, so an operator's tuning survives restarts.
///
/// A new consumer filters on the event subjects only when the stream also holds
/// others: a filter that matches every message of the stream changes nothing it
/// delivers, and nats-server 2.9 spends several times more CPU serving a filtered
/// consumer (`BENCHMARKS.md` has the measurement).
///
/// # Errors
/// The server's refusal.
pub async fn ensure_consumer(
    js: &Context,
    settings: &ConsumerSettings,
) -> Result<PullConsumer, SetupError> {
    let stream = ensure_stream(js, settings).await?;
    let filter_subject = consumer_filter(&stream.cached_info().config.subjects, &settings.subjects);
    if filter_subject.is_empty() {
        tracing::debug!(stream = %settings.stream, "the stream holds only event subjects; the consumer needs no filter");
    }
    Ok(stream
        .get_or_create_consumer(
            &settings.consumer,
            pull::Config {
                durable_name: Some(settings.consumer.clone()),
                description: Some("butler-analytics ingest".into()),
                ack_policy: AckPolicy::Explicit,
                deliver_policy: DeliverPolicy::All,
                ack_wait: settings.ack_wait,
                max_ack_pending: settings.max_ack_pending,
                filter_subject,
                ..Default::default()
            },
        )
        .await?)
}

/// The filter a new consumer needs on a stream of `stream_subjects` to see only
/// `event_subjects`: none (empty) when the stream holds nothing else.
pub fn consumer_filter(stream_subjects: &[String], event_subjects: &str) -> String {
    if stream_subjects.len() == 1 && stream_subjects[0] == event_subjects {
        String::new()
    } else {
        event_subjects.to_owned()
    }
}

/// Publishes the consumer's backlog (`num_pending`) and unacked count
/// (`num_ack_pending`) as gauges every few seconds.
pub async fn watch_lag(
    js: jetstream::Context,
    settings: ConsumerSettings,
    metrics: IngestMetrics,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let info = async {
            let stream = js.get_stream(&settings.stream).await?;
            let info = stream.consumer_info(&settings.consumer).await?;
            Ok::<_, SetupError>(info)
        };
        match tokio::time::timeout(Duration::from_secs(5), info).await {
            Ok(Ok(info)) => metrics.set_lag(info.num_pending, info.num_ack_pending),
            Ok(Err(err)) => tracing::debug!(error = %err, "consumer info unavailable"),
            Err(_) => tracing::debug!("consumer info timed out"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::consumer_filter;

    #[test]
    fn filters_only_when_the_stream_holds_other_subjects() {
        let only = vec!["butler.events.>".to_owned()];
        assert_eq!(consumer_filter(&only, "butler.events.>"), "");
        let more = vec!["butler.events.>".to_owned(), "other.>".to_owned()];
        assert_eq!(consumer_filter(&more, "butler.events.>"), "butler.events.>");
        let wider = vec![">".to_owned()];
        assert_eq!(
            consumer_filter(&wider, "butler.events.>"),
            "butler.events.>"
        );
        let narrower = vec!["butler.events.message.*".to_owned()];
        assert_eq!(
            consumer_filter(&narrower, "butler.events.>"),
            "butler.events.>"
        );
    }
}
