//! Butler analytics query service: a NATS micro service (`$SRV` discovery, one queue
//! group so several processes share the load) named `butler-analytics`, answering
//! JSON requests with JSON replies, and errors as CONTRACT §4 spells them.
//!
//! Layout:
//! - [`endpoint`]: [`Endpoint`], each endpoint's name, subject, scoped subject and
//!   handler, declared once;
//! - [`service`]: [`service::run`] registers the endpoints and serves until shutdown;
//! - [`reply`]: [`QueryError`] and the reply encoding (error body and headers);
//! - [`dashboard`]: `analytics.query.dashboard`, with its per-property cache;
//! - [`live`]: live dashboards in a key-value bucket, written after commits;
//! - [`live_page`]: the live page and the server-sent events it follows;
//! - [`catalogue`], [`timeseries`]: `analytics.query.metrics` and
//!   `analytics.query.timeseries`;
//! - [`report`]: `analytics.query.report`, JSON or CSV, written to files;
//! - [`scoped`]: the property-scoped subjects' bodies (CONTRACT §7);
//! - [`objects`]: reports in a JetStream object store bucket, for clients on any host;
//! - [`scheduled`]: reports on a schedule, announced on `analytics.reports.generated`;
//! - [`admin`]: `analytics.admin.aggregate` and `analytics.admin.status`, through
//!   [`admin::AggregationControl`], which the binary wires to the aggregator;
//! - [`window`]: a window's counts and averages from the hour tallies;
//! - [`metrics`]: requests, errors and latency per endpoint.
//!
//! Calendar rules (local days, period keys, request dates) and business formulas come
//! from [`butler_events`], the tables from [`butler_storage::tables`].

pub mod admin;
pub mod catalogue;
pub mod dashboard;
pub mod endpoint;
pub mod live;
pub mod live_page;
pub mod metrics;
pub mod objects;
pub mod reply;
pub mod report;
pub mod scheduled;
pub mod scoped;
pub mod service;
pub mod timeseries;
pub mod window;

pub use endpoint::Endpoint;
pub use metrics::QueryMetrics;
pub use reply::QueryError;

use butler_events::calendar::{BadDate, parse_request_instant};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;

impl From<BadDate> for QueryError {
    fn from(err: BadDate) -> Self {
        QueryError::BadRequest(err.to_string())
    }
}

/// A request's half-open range `[from, to)`, which must not be empty; a bare date is
/// the start of that local date in `tz`.
///
/// # Errors
/// `bad_request` for a bad date or a reversed or empty range, naming the fields.
pub fn request_range(
    from: &str,
    to: &str,
    tz: Tz,
    names: (&str, &str),
) -> Result<(DateTime<Utc>, DateTime<Utc>), QueryError> {
    let start = parse_request_instant(from, tz, names.0)?;
    let end = parse_request_instant(to, tz, names.1)?;
    if start >= end {
        return Err(QueryError::BadRequest(format!(
            "{} ({from}) must be before {} ({to}); ranges are half-open [{}, {})",
            names.0, names.1, names.0, names.1
        )));
    }
    Ok((start, end))
}

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

/// Hostile requests: every parser answers, never panics.
#[cfg(test)]
mod hostile {
    use proptest::prelude::*;

    use butler_events::Granularity;

    use crate::catalogue;
    use crate::dashboard::DashboardRequest;
    use crate::report::{ReportRequest, file_component};
    use crate::timeseries::TimeseriesRequest;

    proptest! {
        // PROPTEST_CASES=1000000 for a long run; make test runs 3000 cases.
        #![proptest_config(ProptestConfig {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(3000),
            ..ProptestConfig::default()
        })]

        #[test]
        fn request_bodies_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = crate::reply::parse::<TimeseriesRequest>(&body);
            let _ = crate::reply::parse::<DashboardRequest>(&body);
            let _ = crate::reply::parse::<ReportRequest>(&body);
            let _ = crate::reply::parse::<crate::admin::AggregateRequest>(&body);
        }

        #[test]
        fn names_dates_and_properties_never_panic(s in "\\PC{0,64}") {
            for g in Granularity::ALL {
                if let Ok(m) = catalogue::resolve(&s, g) {
                    prop_assert_eq!(m.granularity(), g);
                    let _ = catalogue::check_dimensions(m, std::slice::from_ref(&s));
                }
            }
            let _ = catalogue::parse_granularity(&s);
            let _ = crate::request_range(&s, &s, chrono_tz::UTC, ("startDate", "endDate"));
            let _ = crate::check_property(&s);
        }

        #[test]
        fn report_file_names_stay_one_safe_component(s in "\\PC{0,64}") {
            let name = file_component(&s);
            prop_assert!(!name.contains('/') && !name.contains('\\'));
            prop_assert!(name != "." && name != "..");
            prop_assert!(!name.starts_with('.'));
        }
    }
}
