//! The SQLite backend: one file in WAL mode, written by the ingest writer thread, one
//! sqlx writer and a connection for leases, read by read-only connections beside them.
//!
//! Layout: [`connection`] (the settings of each kind of connection, migrations),
//! `ingest_writer` (the thread that commits ingest batches and replays),
//! `row_readers` (read-only rusqlite connections, on which every `Role::Read` query of
//! the storage interface runs).

mod connection;
pub(crate) use connection::MIGRATOR;
mod ingest_writer;
pub(crate) mod row_readers;

use std::path::PathBuf;
use std::sync::Arc;

use butler_events::{Event, RejectReason};
use sqlx::SqlitePool;

use crate::{BatchOutcome, NewDeadLetter, ReplayOutcome, StorageError};

/// Handles on one SQLite database file, each named for what it does.
#[derive(Debug, Clone)]
pub(crate) struct SqliteDb {
    /// The sqlx writer: one connection for aggregation, retention and operator
    /// writes, so they queue here instead of contending for SQLite's lock.
    pub(crate) sql_writer: SqlitePool,
    /// A connection of its own for job leases, so a renewal waits for SQLite's lock
    /// alone, never behind the writes of the run it keeps alive.
    pub(crate) lease_writer: SqlitePool,
    /// sqlx read-only connections, for backups and for copying the file elsewhere.
    pub(crate) sql_readers: SqlitePool,
    /// The database file.
    pub(crate) path: PathBuf,
    /// The thread that commits ingest batches and replays.
    pub(crate) ingest_writer: ingest_writer::IngestWriter,
    /// Read-only rusqlite connections, on which every `Role::Read` query runs.
    pub(crate) row_readers: row_readers::RowReaders,
}

impl SqliteDb {
    /// The sqlx connection of a writing [`crate::sql::Role`].
    pub(crate) fn writer(&self, role: crate::sql::Role) -> &SqlitePool {
        match role {
            crate::sql::Role::Lease => &self.lease_writer,
            crate::sql::Role::Read | crate::sql::Role::Write => &self.sql_writer,
        }
    }

    pub(crate) async fn commit_batch(
        &self,
        events: Arc<[Event]>,
        dead_letters: Arc<[NewDeadLetter]>,
    ) -> Result<BatchOutcome, StorageError> {
        self.ingest_writer.commit_batch(events, dead_letters).await
    }

    pub(crate) async fn commit_replay(
        &self,
        accepted: &[(i64, Event)],
        still_rejected: &[(i64, RejectReason, String)],
    ) -> Result<ReplayOutcome, StorageError> {
        self.ingest_writer
            .commit_replay(accepted, still_rejected)
            .await
    }
}
