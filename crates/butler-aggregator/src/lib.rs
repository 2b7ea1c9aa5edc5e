//! Butler analytics aggregator: rolls raw events up into the hourly, daily, weekly and
//! monthly tables of CONTRACT §3 and §8, whole aligned buckets at a time (bucket boundaries
//! are [`butler_events::calendar`]'s, the tables [`butler_storage::tables`]').
//!
//! Layout:
//! - [`rollups`]: the definition of every aggregate column, as pure functions;
//! - [`jobs`]: [`jobs::JOBS`], the table of the jobs (the seed design's seven and §8's), and
//!   [`Job`], a handle on one of them;
//! - [`runner`]: [`Aggregator`], which runs them: late data in, closed buckets out;
//! - [`lease`]: job leases renewed while a run goes on, so one process runs a job at
//!   a time and a dead one holds it up for one lease period at most;
//! - [`schedule`]: cron schedules in the configured zone, and start-up catch-up;
//! - [`retention`]: deleting what is past each table's retention;
//! - [`rules`]: the business hours and SLA targets the jobs apply, [`SharedRules`];
//! - [`metrics`]: the aggregation metrics, [`AggregatorMetrics`].

pub mod jobs;
pub mod lease;
pub mod metrics;
pub mod retention;
pub mod rollups;
pub mod rules;
pub mod runner;
pub mod schedule;

pub use jobs::Job;
pub use metrics::AggregatorMetrics;
pub use rules::SharedRules;
pub use runner::{AggregateError, Aggregator, AggregatorSettings, RunReport, Trigger};
