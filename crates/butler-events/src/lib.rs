//! The Butler analytics event model: what a valid event is, and why a message is not
//! one. No IO happens here, so the consumer, the dead-letter replay and the tests all
//! judge a message by exactly the same rules (CONTRACT §1).
//!
//! Layout:
//! - [`business`]: business hours and the business time of an interval (§8);
//! - [`calendar`]: buckets, local days, period keys and request dates, in each
//!   property's zone ([`Zones`]);
//! - [`formulas`]: the business formulas (NPS, mean rating, rates, percentiles);
//! - [`event_type`]: the 25 event types and their subject suffixes;
//! - [`event`]: a validated [`Event`], its UTC millisecond [`EventTime`], and the
//!   [`LiveEffect`] it has on the dashboard's live state;
//! - [`registry`]: registering a Prometheus metric, shared by every crate's metrics;
//! - [`testing`]: a deterministic random stream for tests and benchmarks;
//! - [`validate`]: [`validate()`] turns an [`IncomingMessage`] into an [`Event`] or a
//!   [`Rejection`] carrying one stable [`RejectReason`].

pub mod business;
pub mod calendar;
pub mod event;
pub mod event_type;
pub mod formulas;
pub mod registry;
pub mod testing;
pub mod validate;

pub use calendar::{Granularity, Zones};
pub use event::{Event, EventTime, LiveEffect};
pub use event_type::EventType;
pub use validate::{
    IncomingMessage, MAX_PAYLOAD_BYTES, RejectReason, Rejection, ValidationRules, validate,
};
