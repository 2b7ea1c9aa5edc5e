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
