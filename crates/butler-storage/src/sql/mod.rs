//! The one layer that knows which database is behind [`crate::Storage`]. Every
//! statement of the storage interface is written once, against this layer:
//! - [`Dialect`]: the few spellings that differ (clocks, lists, casts, collation);
//! - [`Param`] and [`Row`]: values bound and read in each backend's own types (an
//!   instant is text on SQLite, `timestamptz` on PostgreSQL);
//! - [`Db`] and [`Tx`]: running a statement, or a transaction of them, on either.
//!
//! A third backend is a third arm here and a third dialect; only what is truly
//! different stays in `sqlite/` and `postgres/`: opening and migrating, and the ingest
//! writer (rusqlite on its own thread against PostgreSQL's array inserts).

mod dialect;
mod exec;
mod values;

pub(crate) use dialect::Dialect;
pub(crate) use exec::{Db, Role, Tx};
#[cfg(test)]
pub(crate) use values::parse_time;
pub(crate) use values::{Param, Row};

/// A statement with dialect-dependent parts, formatted once per dialect and kept: the
/// arguments may use the dialect expression (`$d`) through any binding of it.
macro_rules! sql {
    ($d:expr, $($format:tt)+) => {{
        static TEXT: [::std::sync::OnceLock<String>; 2] =
            [const { ::std::sync::OnceLock::new() }; 2];
        let dialect: $crate::sql::Dialect = $d;
        TEXT[dialect as usize]
            .get_or_init(|| format!($($format)+))
            .as_str()
    }};
}
pub(crate) use sql;
