//! Butler analytics query service: a NATS micro service (`$SRV` discovery, one queue
//! group so several processes share the load) named `butler-analytics`, answering
//! JSON requests with JSON replies, and errors as CONTRACT §4 spells them.
//!
//! Layout:
//! - [`service`]: [`service::run`] registers the endpoints and serves until shutdown;
//! - [`reply`]: [`QueryError`] and the reply encoding (error body and headers);
//! - [`dashboard`]: `analytics.query.dashboard`, with its per-property cache;
//! - [`catalogue`], [`timeseries`]: `analytics.query.metrics` and
//!   `analytics.query.timeseries`;
//! - [`report`]: `analytics.query.report`, JSON or CSV, written to files;
//! - [`scheduled`]: reports on a schedule, announced on `analytics.reports.generated`;
//! - [`admin`]: `analytics.admin.aggregate` and `analytics.admin.status`;
//! - [`dates`]: request dates (`YYYY-MM-DD` or RFC 3339);
//! - [`metrics`]: requests, errors and latency per endpoint.

pub mod admin;
pub mod catalogue;
pub mod dashboard;
pub mod dates;
pub mod metrics;
pub mod reply;
pub mod report;
pub mod scheduled;
pub mod service;
pub mod timeseries;

pub use metrics::QueryMetrics;
pub use reply::QueryError;

/// Checks a `propertyId` field: 1 to 128 characters, no control characters (as ingest
/// accepts them). It only ever reaches SQL as a bound value.
///
/// # Errors
/// `bad_request` saying what is wrong.
pub fn check_property(property: &str) -> Result<(), QueryError> {
    if property.is_empty() {
        return Err(QueryError::BadRequest(
            "propertyId must not be empty".into(),
        ));
    }
    if property.chars().count() > 128 {
        return Err(QueryError::BadRequest(
            "propertyId is longer than 128 characters".into(),
        ));
    }
    if property.chars().any(char::is_control) {
        return Err(QueryError::BadRequest(
            "propertyId holds control characters".into(),
        ));
    }
    Ok(())
}
