//! Butler analytics storage: the only crate that speaks SQL.
//!
//! Its interface is shaped by what the other crates need — commit a batch of events
//! and dead letters, list and replay dead letters, report health — not by SQLite, so
//! that another backend (PostgreSQL, for a hotel group that outgrows one machine) can
//! be added here without touching the consumer, aggregator or query crates.
//!
//! Layout:
//! - [`open`]: connection settings (WAL, `synchronous=FULL`, busy timeout) and
//!   migrations;
//! - [`ingest`]: [`Storage::commit_batch`], the one transaction per batch;
//! - [`dead_letters`]: listing and replaying rejected messages;
//! - [`aggregates`], [`aggregation`]: the aggregate rows, and what the aggregator
//!   reads and writes;
//! - [`queries`]: what the query service reads (dashboard windows, live state,
//!   series);
//! - [`tallies`]: running counts kept by ingest, so dashboard and report windows
//!   read hours and minutes instead of every raw event;
//! - [`health`]: writability and size, for `/readyz` and metrics;
//! - `writer` and `read` (internal): the ingest writer thread, and the read-only
//!   connections the reads that return many rows run on.

pub mod aggregates;
pub mod aggregation;
pub mod dead_letters;
pub mod error;
pub mod health;
pub mod ingest;
pub mod open;
pub mod queries;
mod read;
pub mod tallies;
mod writer;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use sqlx::SqlitePool;

pub use dead_letters::{DeadLetter, DeadLetterFilter, ReplayOutcome};
pub use error::StorageError;
pub use ingest::{BatchOutcome, NewDeadLetter};
pub use open::StorageOptions;

/// Handle on the analytics database. Cheap to clone; all clones share the pools.
#[derive(Debug, Clone)]
pub struct Storage {
    /// One connection: writes are serialized here instead of contending for SQLite's
    /// lock inside the process.
    writer: SqlitePool,
    /// Read-only connections for listing and queries; WAL lets them run beside the
    /// writer.
    reader: SqlitePool,
    path: PathBuf,
    /// Set when the last write failed (disk full, IO error), cleared by the next
    /// success: `/readyz` reports it.
    write_failing: std::sync::Arc<AtomicBool>,
    /// The thread that commits ingest batches and replays.
    ingest: writer::IngestWriter,
    /// Read-only connections for the reads that return many rows.
    row_reader: read::ReadPool,
}
