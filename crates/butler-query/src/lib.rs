//! Butler analytics query service: a NATS micro service (`$SRV` discovery, one queue
//! group so several processes share the load) named `butler-analytics`, answering
//! JSON requests with JSON replies, and errors as CONTRACT §4 spells them.
//!
//! Layout:
//! - [`service`]: [`service::run`] registers the endpoints and serves until shutdown;
//! - [`reply`]: [`QueryError`] and the reply encoding (error body and headers);
//! - [`admin`]: `analytics.admin.aggregate` and `analytics.admin.status`;
//! - [`dates`]: request dates (`YYYY-MM-DD` or RFC 3339);
//! - [`metrics`]: requests, errors and latency per endpoint.

pub mod admin;
pub mod dates;
pub mod metrics;
pub mod reply;
pub mod service;

pub use metrics::QueryMetrics;
pub use reply::QueryError;
