//! The consumer's metrics, updated once per batch.

use std::time::Duration;

use butler_events::registry::register;
use butler_events::{EventTime, EventType, RejectReason};
use butler_storage::CommitPhases;
use prometheus::{
    Counter, CounterVec, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    Opts, Registry,
};

/// Ingest metrics. Label values are resolved once, at registration, so a batch
/// updates plain counters.
#[derive(Clone)]
pub struct IngestMetrics {
    received: Vec<IntCounter>,
    received_unknown: IntCounter,
    inserted: Vec<IntCounter>,
    duplicate: Vec<IntCounter>,
    rejected: Vec<IntCounter>,
    batch_size: Histogram,
    commit_seconds: Histogram,
    commit_phases: [Counter; 5],
    commit_retries: IntCounter,
    ack_failures: IntCounter,
    stream_restarts: IntCounter,
    pending: IntGauge,
    ack_pending: IntGauge,
    last_commit: Gauge,
    consuming: IntGauge,
    freshness: Histogram,
}

/// Counts of one batch, by event type (in [`EventType::ALL`] order) and by rejection
/// reason (in [`RejectReason::ALL`] order).
#[derive(Debug, Clone, Default)]
pub struct BatchCounts {
    /// Messages per event type their subject names.
    pub received: [u64; EventType::ALL.len()],
    /// Messages whose subject names no event type.
    pub received_unknown: u64,
    /// New rows per event type.
    pub inserted: [u64; EventType::ALL.len()],
    /// Already-stored ids per event type.
    pub duplicate: [u64; EventType::ALL.len()],
    /// New dead letters per reason.
    pub rejected: [u64; RejectReason::ALL.len()],
}

fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    label: &str,
) -> prometheus::Result<IntCounterVec> {
    register(
        registry,
        IntCounterVec::new(Opts::new(name, help), &[label])?,
    )
}

fn by_type(vec: &IntCounterVec) -> Vec<IntCounter> {
    EventType::ALL
        .iter()
        .map(|t| vec.with_label_values(&[t.as_str()]))
        .collect()
}

impl IngestMetrics {
    /// Creates the metrics in `registry`, every label value present from the start.
    ///
    /// # Errors
    /// When a metric of the same name is already registered.
    /// `freshness` is the shared metric's `committed` series.
    pub fn register(
        registry: &Registry,
        freshness: &butler_events::registry::Freshness,
    ) -> prometheus::Result<IngestMetrics> {
        let received = counter_vec(
            registry,
            "butler_analytics_events_received_total",
            "Messages read from the stream, by the event type their subject names (unknown for none).",
            "event_type",
        )?;
        let inserted = counter_vec(
            registry,
            "butler_analytics_events_inserted_total",
            "Events stored as new rows.",
            "event_type",
        )?;
        let duplicate = counter_vec(
            registry,
            "butler_analytics_events_duplicate_total",
            "Valid events whose id was already stored (redeliveries and reused ids).",
            "event_type",
        )?;
        let rejected = counter_vec(
            registry,
            "butler_analytics_events_rejected_total",
            "Messages kept as dead letters, by reason (a redelivered rejection counts once).",
            "reason",
        )?;
        let batch_buckets = vec![
            1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
        ];
        let commit_buckets = vec![
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        Ok(IngestMetrics {
            received: by_type(&received),
            received_unknown: received.with_label_values(&["unknown"]),
            inserted: by_type(&inserted),
            duplicate: by_type(&duplicate),
            rejected: RejectReason::ALL
                .iter()
                .map(|r| rejected.with_label_values(&[r.as_str()]))
                .collect(),
            batch_size: register(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "butler_analytics_ingest_batch_size",
                        "Messages per committed batch.",
                    )
                    .buckets(batch_buckets),
                )?,
            )?,
            commit_seconds: register(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "butler_analytics_ingest_commit_duration_seconds",
                        "Time to commit one batch durably, retries excluded.",
                    )
                    .buckets(commit_buckets),
                )?,
            )?,
            commit_phases: {
                let vec = register(
                    registry,
                    CounterVec::new(
                        Opts::new(
                            "butler_analytics_ingest_commit_phase_seconds_total",
                            "Time committed batches spent in each phase of their transaction: \
                             events, live_state, dirty_hours, tallies, commit.",
                        ),
                        &["phase"],
                    )?,
                )?;
                CommitPhases::default()
                    .labelled()
                    .map(|(phase, _)| vec.with_label_values(&[phase]))
            },
            commit_retries: register(
                registry,
                IntCounter::new(
                    "butler_analytics_ingest_commit_retries_total",
                    "Batch commits that failed and were retried (busy database, full disk, IO).",
                )?,
            )?,
            ack_failures: register(
                registry,
                IntCounter::new(
                    "butler_analytics_ingest_ack_failures_total",
                    "Acks that could not be sent; those messages are redelivered and deduplicated.",
                )?,
            )?,
            stream_restarts: register(
                registry,
                IntCounter::new(
                    "butler_analytics_ingest_stream_restarts_total",
                    "Times the pull subscription was rebuilt after an error.",
                )?,
            )?,
            pending: register(
                registry,
                IntGauge::new(
                    "butler_analytics_ingest_consumer_pending_messages",
                    "Messages in the stream not yet delivered to the consumer (lag).",
                )?,
            )?,
            ack_pending: register(
                registry,
                IntGauge::new(
                    "butler_analytics_ingest_consumer_ack_pending_messages",
                    "Messages delivered but not yet acked.",
                )?,
            )?,
            last_commit: register(
                registry,
                Gauge::new(
                    "butler_analytics_ingest_last_commit_timestamp_seconds",
                    "Unix time of the last committed batch.",
                )?,
            )?,
            consuming: register(
                registry,
                IntGauge::new(
                    "butler_analytics_ingest_consuming",
                    "1 while subscribed to the durable consumer (the stream and consumer exist).",
                )?,
            )?,
            freshness: freshness.committed(),
        })
    }

    /// Records a committed batch.
    pub fn record_batch(
        &self,
        counts: &BatchCounts,
        messages: usize,
        commit: Duration,
        phases: &CommitPhases,
    ) {
        for (counter, (_, took)) in self.commit_phases.iter().zip(phases.labelled()) {
            counter.inc_by(took.as_secs_f64());
        }
        for (counter, n) in self.received.iter().zip(&counts.received) {
            counter.inc_by(*n);
        }
        self.received_unknown.inc_by(counts.received_unknown);
        for (counter, n) in self.inserted.iter().zip(&counts.inserted) {
            counter.inc_by(*n);
        }
        for (counter, n) in self.duplicate.iter().zip(&counts.duplicate) {
            counter.inc_by(*n);
        }
        for (counter, n) in self.rejected.iter().zip(&counts.rejected) {
            counter.inc_by(*n);
        }
        self.batch_size.observe(messages as f64);
        self.commit_seconds.observe(commit.as_secs_f64());
        self.last_commit
            .set(chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
    }

    /// Records how long after its own timestamp each newly stored event was committed.
    pub fn record_freshness(&self, timestamps: impl Iterator<Item = EventTime>) {
        let now = chrono::Utc::now();
        for timestamp in timestamps {
            self.freshness
                .observe(butler_events::registry::seconds_since(timestamp, now));
        }
    }

    /// Records a failed commit that will be retried.
    pub fn commit_retried(&self) {
        self.commit_retries.inc();
    }

    /// Records acks that could not be sent.
    pub fn acks_failed(&self, n: u64) {
        self.ack_failures.inc_by(n);
    }

    /// Records whether the pull subscription to the durable consumer stands.
    pub fn set_consuming(&self, consuming: bool) {
        self.consuming.set(i64::from(consuming));
    }

    /// Whether the pull subscription to the durable consumer stands: `/readyz` waits
    /// for it, so that a ready pipeline's stream exists.
    pub fn is_consuming(&self) -> bool {
        self.consuming.get() == 1
    }

    /// Records a rebuilt pull subscription.
    pub fn stream_restarted(&self) {
        self.stream_restarts.inc();
    }

    /// Sets the consumer lag gauges.
    pub fn set_lag(&self, pending: u64, ack_pending: usize) {
        self.pending.set(i64::try_from(pending).unwrap_or(i64::MAX));
        self.ack_pending
            .set(i64::try_from(ack_pending).unwrap_or(i64::MAX));
    }
}
