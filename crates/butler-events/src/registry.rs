//! Registering a Prometheus metric and keeping a handle on it, the one step every
//! crate's `metrics.rs` repeats for each metric it declares.
//!
//! It lives here because the consumer and the aggregator (and the query service) all
//! depend on this crate and on none of each other, and the storage crate is for SQL
//! alone. It does no IO, and `prometheus` without its default features adds no
//! dependency the binary does not already build.

use prometheus::Registry;
use prometheus::core::Collector;

/// Registers `metric` in `registry` and returns it, so a metrics struct can be built
/// field by field from registered metrics (the registry keeps a clone; both share the
/// same values).
///
/// # Errors
/// When a metric of the same name is already registered, or its descriptor is invalid.
pub fn register<T: Collector + Clone + 'static>(
    registry: &Registry,
    metric: T,
) -> prometheus::Result<T> {
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

/// `butler_analytics_freshness_seconds`: from an event's own timestamp to each stage
/// of its way through the pipeline — `committed` (stored and about to be acked) and
/// `dashboard` (the first live dashboard value that counts it written) — the delay a
/// hotel sees, publisher and broker included. Both stages share one metric, so it is
/// registered once and each stage's writer holds its own series.
#[derive(Clone)]
pub struct Freshness(prometheus::HistogramVec);

impl Freshness {
    /// Creates the metric in `registry`, both stages present from the start.
    ///
    /// # Errors
    /// When a metric of the same name is already registered.
    pub fn register(registry: &Registry) -> prometheus::Result<Freshness> {
        let histogram = register(
            registry,
            prometheus::HistogramVec::new(
                prometheus::HistogramOpts::new(
                    "butler_analytics_freshness_seconds",
                    "From an event's timestamp to its commit (stage committed) and to the first live dashboard value counting it (stage dashboard).",
                )
                .buckets(vec![
                    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
                    21600.0, 86400.0,
                ]),
                &["stage"],
            )?,
        )?;
        for stage in ["committed", "dashboard"] {
            histogram.with_label_values(&[stage]);
        }
        Ok(Freshness(histogram))
    }

    /// The series of events stored.
    pub fn committed(&self) -> prometheus::Histogram {
        self.0.with_label_values(&["committed"])
    }

    /// The series of live dashboard values written.
    pub fn dashboard(&self) -> prometheus::Histogram {
        self.0.with_label_values(&["dashboard"])
    }
}

/// Seconds from `timestamp` to `now` for a freshness histogram; an event stamped a
/// little in the future (within the accepted skew) counts as fresh, not negative.
pub fn seconds_since(timestamp: crate::EventTime, now: chrono::DateTime<chrono::Utc>) -> f64 {
    (now.timestamp_millis() - timestamp.millis()).max(0) as f64 / 1000.0
}
