//! The aggregator's metrics, updated once per run.

use butler_events::registry::register;
use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use crate::jobs::Job;

/// Per-job runs, failures, duration, rows, last success and queued buckets; rows
/// deleted by retention per table; lease waits and leases held.
#[derive(Clone)]
pub struct AggregatorMetrics {
    runs: IntCounterVec,
    failures: IntCounterVec,
    duration: HistogramVec,
    rows: IntCounterVec,
    periods: IntCounterVec,
    last_success: GaugeVec,
    pending: IntGaugeVec,
    retention_deleted: IntCounterVec,
    lease_waits: IntCounter,
    leases_held: IntGauge,
}

impl std::fmt::Debug for AggregatorMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AggregatorMetrics")
    }
}

impl AggregatorMetrics {
    /// Creates the metrics in `registry`, with every job's series present from the start.
    ///
    /// # Errors
    /// When a metric of the same name is already registered.
    pub fn register(registry: &Registry) -> prometheus::Result<AggregatorMetrics> {
        let job = &["aggregation_job"];
        let m = AggregatorMetrics {
            runs: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "butler_analytics_aggregation_runs_total",
                        "Aggregation job runs.",
                    ),
                    job,
                )?,
            )?,
            failures: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "butler_analytics_aggregation_failures_total",
                        "Aggregation job runs that failed.",
                    ),
                    job,
                )?,
            )?,
            duration: register(
                registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "butler_analytics_aggregation_duration_seconds",
                        "Wall time of an aggregation run.",
                    )
                    .buckets(vec![
                        0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                    ]),
                    job,
                )?,
            )?,
            rows: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "butler_analytics_aggregation_rows_written_total",
                        "Aggregate rows written.",
                    ),
                    job,
                )?,
            )?,
            periods: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "butler_analytics_aggregation_periods_recomputed_total",
                        "Buckets recomputed.",
                    ),
                    job,
                )?,
            )?,
            last_success: register(
                registry,
                GaugeVec::new(
                    Opts::new(
                        "butler_analytics_aggregation_last_success_timestamp_seconds",
                        "Unix time of the last successful run.",
                    ),
                    job,
                )?,
            )?,
            pending: register(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "butler_analytics_aggregation_pending_buckets",
                        "Buckets queued for recomputation (late or new data waiting for its bucket to close).",
                    ),
                    job,
                )?,
            )?,
            retention_deleted: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "butler_analytics_retention_deleted_rows_total",
                        "Rows deleted by retention.",
                    ),
                    &["table"],
                )?,
            )?,
            lease_waits: register(
                registry,
                IntCounter::new(
                    "butler_analytics_aggregation_lease_waits_total",
                    "Runs that found their job's lease held by another process (and waited, or were skipped).",
                )?,
            )?,
            leases_held: register(
                registry,
                IntGauge::new(
                    "butler_analytics_aggregation_leases_held",
                    "Job leases this process holds now (jobs it is running).",
                )?,
            )?,
        };
        for j in Job::all() {
            let name = [j.name()];
            m.runs.with_label_values(&name);
            m.failures.with_label_values(&name);
            m.rows.with_label_values(&name);
            m.periods.with_label_values(&name);
        }
        Ok(m)
    }

    /// Records a successful run.
    pub fn run_succeeded(&self, job: Job, seconds: f64, periods: u64, rows: u64) {
        let name = [job.name()];
        self.runs.with_label_values(&name).inc();
        self.duration.with_label_values(&name).observe(seconds);
        self.periods.with_label_values(&name).inc_by(periods);
        self.rows.with_label_values(&name).inc_by(rows);
        self.last_success
            .with_label_values(&name)
            .set(chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
    }

    /// Records a failed run.
    pub fn run_failed(&self, job: Job, seconds: f64) {
        let name = [job.name()];
        self.runs.with_label_values(&name).inc();
        self.failures.with_label_values(&name).inc();
        self.duration.with_label_values(&name).observe(seconds);
    }

    /// Sets a job's queue length.
    pub fn set_pending(&self, job: &str, buckets: i64) {
        self.pending.with_label_values(&[job]).set(buckets);
    }

    /// A run found its job's lease held by another process.
    pub fn lease_waited(&self) {
        self.lease_waits.inc();
    }

    /// A job lease was taken.
    pub fn lease_taken(&self) {
        self.leases_held.inc();
    }

    /// A job lease was given back.
    pub fn lease_given_back(&self) {
        self.leases_held.dec();
    }

    /// Records rows deleted by retention.
    pub fn retention_deleted(&self, table: &str, rows: u64) {
        self.retention_deleted
            .with_label_values(&[table])
            .inc_by(rows);
    }
}
