//! The SQLite backend: one file in WAL mode, written by the ingest writer thread and
//! one sqlx writer (and a connection for leases), read by read-only connections beside them.
//!
//! Layout: [`connection`] (the settings of each kind of connection, migrations),
//! `ingest_writer` (the thread that commits ingest batches and replays),
//! `row_readers` (read-only rusqlite connections for the reads that return many
//! rows), and one module per area of the storage interface.

mod aggregation;
pub(crate) mod connection;
mod dead_letters;
mod health;
mod ingest_writer;
mod live_state;
mod queries;
mod report_schedules;
mod retention;
pub(crate) mod row_readers;
mod tallies;

use std::path::PathBuf;
use std::sync::Arc;

use butler_events::Event;
use sqlx::SqlitePool;

use crate::{BatchOutcome, NewDeadLetter, StorageError};

/// Handles on one SQLite database file, each named for what it does.
#[derive(Debug, Clone)]
pub(crate) struct SqliteDb {
    /// The sqlx writer: one connection for aggregation, retention and operator
    /// writes, so they queue here instead of contending for SQLite's lock.
    pub(crate) sql_writer: SqlitePool,
    /// A connection of its own for job leases, so a renewal waits for SQLite's lock
    /// alone, never behind the writes of the run it keeps alive.
    pub(crate) lease_writer: SqlitePool,
    /// sqlx read-only connections for the reads that return a few rows.
    pub(crate) sql_readers: SqlitePool,
    /// The database file.
    pub(crate) path: PathBuf,
    /// The thread that commits ingest batches and replays.
    pub(crate) ingest_writer: ingest_writer::IngestWriter,
    /// Read-only rusqlite connections for the reads that return many rows.
    pub(crate) row_readers: row_readers::RowReaders,
}

impl SqliteDb {
    pub(crate) async fn commit_batch(
        &self,
        events: Arc<[Event]>,
        dead_letters: Arc<[NewDeadLetter]>,
    ) -> Result<BatchOutcome, StorageError> {
        self.ingest_writer.commit_batch(events, dead_letters).await
    }
}
