//! Butler analytics aggregator: rolls raw events up into the hourly, daily, weekly and
//! monthly tables of CONTRACT §3, whole aligned buckets at a time.
//!
//! Layout:
//! - [`buckets`]: bucket boundaries in UTC or in a property's local time;
//! - [`rollups`]: the definition of every aggregate column, as pure functions.

pub mod buckets;
pub mod rollups;
