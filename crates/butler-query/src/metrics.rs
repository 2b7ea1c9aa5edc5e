//! Query metrics: requests, errors and latency per endpoint.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// Per-endpoint request metrics.
#[derive(Clone)]
pub struct QueryMetrics {
    requests: IntCounterVec,
    errors: IntCounterVec,
    latency: HistogramVec,
    cache: IntCounterVec,
}

impl QueryMetrics {
    /// Creates the metrics in `registry`.
    ///
    /// # Errors
    /// When a metric of the same name is already registered.
    pub fn register(registry: &Registry) -> prometheus::Result<QueryMetrics> {
        let requests = IntCounterVec::new(
            Opts::new(
                "butler_analytics_query_requests_total",
                "Requests answered, by endpoint.",
            ),
            &["endpoint"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "butler_analytics_query_errors_total",
                "Error replies, by endpoint and code.",
            ),
            &["endpoint", "code"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "butler_analytics_query_duration_seconds",
                "Time to answer a request.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
            ]),
            &["endpoint"],
        )?;
        let cache = IntCounterVec::new(
            Opts::new(
                "butler_analytics_query_cache_requests_total",
                "Dashboard cache look-ups, by result (hit, miss).",
            ),
            &["result"],
        )?;
        registry.register(Box::new(cache.clone()))?;
        cache.with_label_values(&["hit"]);
        cache.with_label_values(&["miss"]);
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        Ok(QueryMetrics {
            requests,
            errors,
            latency,
            cache,
        })
    }

    /// A dashboard served from the cache.
    pub fn cache_hit(&self) {
        self.cache.with_label_values(&["hit"]).inc();
    }

    /// A dashboard computed afresh.
    pub fn cache_miss(&self) {
        self.cache.with_label_values(&["miss"]).inc();
    }

    /// Records one answered request.
    pub fn observe(&self, endpoint: &str, seconds: f64, error_code: Option<&str>) {
        self.requests.with_label_values(&[endpoint]).inc();
        self.latency.with_label_values(&[endpoint]).observe(seconds);
        if let Some(code) = error_code {
            self.errors.with_label_values(&[endpoint, code]).inc();
        }
    }
}
