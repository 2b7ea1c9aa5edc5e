//! Running a statement on whichever backend is open.

use std::borrow::Cow;

use futures_util::TryStreamExt;
use rusqlite::types::Value as SqliteValue;

use super::{Dialect, Param, Row};
use crate::StorageError;
use crate::postgres::PgDb;
use crate::sqlite::SqliteDb;

/// The database behind a [`crate::Storage`].
#[derive(Debug, Clone)]
pub(crate) enum Db {
    /// A SQLite file.
    Sqlite(SqliteDb),
    /// A PostgreSQL database.
    Postgres(PgDb),
}

/// Which connection a statement runs on. PostgreSQL has one pool for all; SQLite
/// keeps writes on one connection each, so they queue in the process instead of
/// contending for the file's lock, and reads on read-only connections beside them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Reads that need not see the writer's latest uncommitted state (SQLite: the
    /// rusqlite read connections, the whole query on one blocking thread).
    Read,
    /// Aggregation, retention and operator writes, and reads that must queue behind
    /// them.
    Write,
    /// Job leases, on a connection of their own so that a renewal never waits behind
    /// the writes of the run it keeps alive.
    Lease,
}

/// An open transaction on the writer.
pub(crate) enum Tx {
    /// On SQLite, begun `IMMEDIATE`: it holds the write lock from its first statement.
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    /// On PostgreSQL.
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

/// A statement's text: a constant, or one built from a table's declaration.
pub(crate) type Sql = Cow<'static, str>;

fn sqlite_query<'q>(
    sql: Sql,
    params: &[Param<'_>],
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    let mut query = match sql {
        Cow::Borrowed(text) => sqlx::query(text),
        Cow::Owned(text) => sqlx::query(sqlx::AssertSqlSafe(text)),
    };
    for param in params {
        query = match param.to_sqlite() {
            SqliteValue::Null => query.bind(None::<String>),
            SqliteValue::Integer(v) => query.bind(v),
            SqliteValue::Real(v) => query.bind(v),
            SqliteValue::Text(v) => query.bind(v),
            SqliteValue::Blob(v) => query.bind(v),
        };
    }
    query
}

fn pg_query<'q>(
    sql: Sql,
    params: &[Param<'q>],
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let mut query = match sql {
        Cow::Borrowed(text) => sqlx::query(text),
        Cow::Owned(text) => sqlx::query(sqlx::AssertSqlSafe(text)),
    };
    for param in params {
        query = match *param {
            Param::Text(v) => query.bind(v),
            Param::OptText(v) => query.bind(v),
            Param::Int(v) => query.bind(v),
            Param::OptInt(v) => query.bind(v),
            Param::OptReal(v) => query.bind(v),
            Param::Bool(v) => query.bind(v),
            Param::Time(t) => query.bind(t.to_datetime()),
            Param::Texts(v) => query.bind(v),
            Param::Ints(v) => query.bind(v),
        };
    }
    query
}

/// Binds `params` to a rusqlite statement by their numbers: `$N` (or `?N`) takes the
/// `N`th, whatever order the statement names them in.
fn bind_rusqlite(
    stmt: &mut rusqlite::CachedStatement<'_>,
    params: &[SqliteValue],
) -> Result<(), StorageError> {
    let mut positional = 0;
    for index in 1..=stmt.parameter_count() {
        let number = match stmt.parameter_name(index) {
            Some(name) => name
                .trim_start_matches(['$', '?'])
                .parse::<usize>()
                .map_err(|_| {
                    StorageError::Unsupported("a statement parameter not of the form $N")
                })?,
            None => {
                positional += 1;
                positional
            }
        };
        if let Some(value) = params.get(number - 1) {
            stmt.raw_bind_parameter(index, value)?;
        }
    }
    Ok(())
}

impl Db {
    /// The SQL this backend speaks.
    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Db::Sqlite(_) => Dialect::Sqlite,
            Db::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Runs one statement on its own; how many rows it changed.
    pub(crate) async fn execute(
        &self,
        role: Role,
        sql: impl Into<Sql>,
        params: &[Param<'_>],
    ) -> Result<u64, StorageError> {
        Ok(match self {
            Db::Sqlite(db) => sqlite_query(sql.into(), params)
                .execute(db.writer(role))
                .await?
                .rows_affected(),
            Db::Postgres(db) => pg_query(sql.into(), params)
                .execute(&db.pool)
                .await?
                .rows_affected(),
        })
    }

    /// Runs one query and turns each row into a `T` as it arrives, so a large result
    /// is never held as the driver's rows.
    pub(crate) async fn fetch<T, F>(
        &self,
        role: Role,
        sql: impl Into<Sql>,
        params: &[Param<'_>],
        mut map: F,
    ) -> Result<Vec<T>, StorageError>
    where
        T: Send + 'static,
        F: FnMut(&dyn Row) -> Result<T, StorageError> + Send + 'static,
    {
        let sql = sql.into();
        match self {
            Db::Sqlite(db) if role == Role::Read => {
                let params: Vec<SqliteValue> = params.iter().map(|p| p.to_sqlite()).collect();
                db.row_readers
                    .run(move |conn| {
                        let mut stmt = conn.prepare_cached(&sql)?;
                        bind_rusqlite(&mut stmt, &params)?;
                        let mut rows = stmt.raw_query();
                        let mut out = Vec::new();
                        while let Some(row) = rows.next()? {
                            out.push(map(row)?);
                        }
                        Ok(out)
                    })
                    .await
            }
            Db::Sqlite(db) => {
                sqlite_query(sql, params)
                    .fetch(db.writer(role))
                    .map_err(StorageError::from)
                    .and_then(|row| std::future::ready(map(&row)))
                    .try_collect()
                    .await
            }
            Db::Postgres(db) => {
                pg_query(sql, params)
                    .fetch(&db.pool)
                    .map_err(StorageError::from)
                    .and_then(|row| std::future::ready(map(&row)))
                    .try_collect()
                    .await
            }
        }
    }

    /// The first row of a query, if any.
    pub(crate) async fn fetch_optional<T, F>(
        &self,
        role: Role,
        sql: impl Into<Sql>,
        params: &[Param<'_>],
        map: F,
    ) -> Result<Option<T>, StorageError>
    where
        T: Send + 'static,
        F: FnMut(&dyn Row) -> Result<T, StorageError> + Send + 'static,
    {
        Ok(self.fetch(role, sql, params, map).await?.into_iter().next())
    }

    /// Begins a transaction on the writer (or the lease connection).
    pub(crate) async fn begin(&self, role: Role) -> Result<Tx, StorageError> {
        Ok(match self {
            Db::Sqlite(db) => Tx::Sqlite(db.writer(role).begin_with("BEGIN IMMEDIATE").await?),
            Db::Postgres(db) => Tx::Postgres(db.pool.begin().await?),
        })
    }
}

impl Tx {
    /// The SQL this transaction speaks.
    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Tx::Sqlite(_) => Dialect::Sqlite,
            Tx::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Runs one statement in the transaction; how many rows it changed.
    pub(crate) async fn execute(
        &mut self,
        sql: impl Into<Sql>,
        params: &[Param<'_>],
    ) -> Result<u64, StorageError> {
        Ok(match self {
            Tx::Sqlite(tx) => sqlite_query(sql.into(), params)
                .execute(&mut **tx)
                .await?
                .rows_affected(),
            Tx::Postgres(tx) => pg_query(sql.into(), params)
                .execute(&mut **tx)
                .await?
                .rows_affected(),
        })
    }

    /// The first row of a query in the transaction, if any.
    pub(crate) async fn fetch_optional<T>(
        &mut self,
        sql: impl Into<Sql>,
        params: &[Param<'_>],
        map: impl FnOnce(&dyn Row) -> Result<T, StorageError>,
    ) -> Result<Option<T>, StorageError> {
        match self {
            Tx::Sqlite(tx) => {
                let row = sqlite_query(sql.into(), params).fetch_optional(&mut **tx);
                row.await?.map(|row| map(&row)).transpose()
            }
            Tx::Postgres(tx) => {
                let row = pg_query(sql.into(), params).fetch_optional(&mut **tx);
                row.await?.map(|row| map(&row)).transpose()
            }
        }
    }

    /// Commits.
    pub(crate) async fn commit(self) -> Result<(), StorageError> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await?,
            Tx::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }
}
