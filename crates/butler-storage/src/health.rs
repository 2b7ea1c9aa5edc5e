//! What `/readyz`, the database-size gauge and backups need.

use std::sync::atomic::Ordering;

use crate::{Storage, StorageError, dispatch};

impl Storage {
    /// Proves the database takes writes now: on SQLite, takes and releases the write
    /// lock.
    ///
    /// # Errors
    /// The database error that stands in the way (busy, read-only, IO, unreachable).
    pub async fn check_writable(&self) -> Result<(), StorageError> {
        dispatch!(self.check_writable())
    }

    /// Whether the last write failed for another reason than a busy lock (disk full,
    /// IO error, read-only file, connection lost).
    pub fn write_failing(&self) -> bool {
        self.write_failing.load(Ordering::Relaxed)
    }

    /// Bytes on disk: the SQLite file plus its write-ahead log.
    ///
    /// # Errors
    /// When the size cannot be read.
    pub async fn size_bytes(&self) -> Result<u64, StorageError> {
        dispatch!(self.size_bytes())
    }

    /// Writes a consistent copy of the whole database to `target` while ingest goes on
    /// (SQLite's `VACUUM INTO` reads one snapshot). The copy holds every transaction
    /// committed before it started, and is compact.
    ///
    /// # Errors
    /// When `target` exists already, or cannot be written.
    pub async fn backup_to(&self, target: &std::path::Path) -> Result<(), StorageError> {
        dispatch!(self.backup_to(target))
    }
}
