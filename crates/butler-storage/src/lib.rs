//! Butler analytics storage: the only crate that speaks SQL.
//!
//! Its interface is shaped by what the other crates need — commit a batch of events
//! and dead letters, list and replay dead letters, report health — not by SQLite, so
//! that another backend (PostgreSQL, for a hotel group that outgrows one machine) can
//! be added here without touching the consumer, aggregator or query crates.
//!
//! Layout:
//! - [`connection`]: the settings of each kind of connection (WAL, `synchronous=FULL`,
//!   busy timeout, page caches), for both drivers, and the migrations;
//! - [`tables`]: the aggregate tables, each declared once, and their rows;
//! - [`ingest`]: [`Storage::commit_batch`], the one transaction per batch, run by the
//!   ingest writer thread (`ingest_writer`);
//! - [`dead_letters`]: listing and replaying rejected messages;
//! - [`aggregation`]: what the aggregator reads and writes (a bucket's events, the
//!   late-data queue, bucket rows, job runs and leases);
//! - [`retention`]: deleting what is past each table's retention;
//! - [`queries`]: what the query service reads (live state, series, resolutions);
//! - [`tallies`]: running counts kept by ingest, so dashboard and report windows
//!   read hours and minutes instead of every raw event;
//! - [`health`]: writability and size, for `/readyz` and metrics;
//! - `row_readers` (internal): the read-only rusqlite connections the reads that
//!   return many rows run on.

pub mod aggregation;
pub mod connection;
pub mod dead_letters;
pub mod error;
pub mod health;
pub mod ingest;
mod ingest_writer;
pub mod queries;
pub mod retention;
mod row_readers;
pub mod tables;
pub mod tallies;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use sqlx::SqlitePool;

pub use connection::StorageOptions;
pub use dead_letters::{DeadLetter, DeadLetterFilter, ReplayOutcome};
pub use error::StorageError;
pub use ingest::{BatchOutcome, NewDeadLetter};

/// Handle on the analytics database. Cheap to clone; all clones share the
/// connections.
#[derive(Debug, Clone)]
pub struct Storage {
    /// The sqlx writer: one connection for aggregation, retention and operator
    /// writes, so they queue here instead of contending for SQLite's lock.
    sql_writer: SqlitePool,
    /// sqlx read-only connections for the reads that return a few rows.
    sql_readers: SqlitePool,
    path: PathBuf,
    /// Set when the last write failed (disk full, IO error), cleared by the next
    /// success: `/readyz` reports it.
    write_failing: std::sync::Arc<AtomicBool>,
    /// The thread that commits ingest batches and replays.
    ingest_writer: ingest_writer::IngestWriter,
    /// Read-only rusqlite connections for the reads that return many rows.
    row_readers: row_readers::RowReaders,
}
