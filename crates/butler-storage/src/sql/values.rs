//! Values crossing into and out of SQL, each in its backend's type: bound through
//! [`Param`], read through [`Row`], so that a statement's code names a value's meaning
//! (an instant, a list) and never its storage form.

use butler_events::EventTime;
use chrono::{DateTime, Utc};
use rusqlite::types::Value as SqliteValue;

use crate::StorageError;

/// A value bound to a statement parameter.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Param<'a> {
    /// Text.
    Text(&'a str),
    /// Text or NULL.
    OptText(Option<&'a str>),
    /// An integer.
    Int(i64),
    /// An integer or NULL.
    OptInt(Option<i64>),
    /// A float or NULL.
    OptReal(Option<f64>),
    /// A boolean (an integer 0 or 1 on SQLite).
    Bool(bool),
    /// An instant: on SQLite its text `YYYY-MM-DDTHH:MM:SS.sssZ`, whose string order is
    /// time order; on PostgreSQL a `timestamptz`.
    Time(EventTime),
    /// A list of texts for [`crate::sql::Dialect::in_list`].
    Texts(&'a [&'a str]),
    /// A list of integers for [`crate::sql::Dialect::in_list`], or NULL.
    Ints(Option<&'a [i64]>),
}

impl Param<'_> {
    /// The value as SQLite stores it (the one SQLite encoding, for both drivers).
    pub(crate) fn to_sqlite(self) -> SqliteValue {
        match self {
            Param::Text(v) => SqliteValue::Text(v.to_owned()),
            Param::OptText(v) => v.map_or(SqliteValue::Null, |v| SqliteValue::Text(v.to_owned())),
            Param::Int(v) => SqliteValue::Integer(v),
            Param::OptInt(v) => v.map_or(SqliteValue::Null, SqliteValue::Integer),
            Param::OptReal(v) => v.map_or(SqliteValue::Null, SqliteValue::Real),
            Param::Bool(v) => SqliteValue::Integer(i64::from(v)),
            Param::Time(t) => SqliteValue::Text(t.to_string()),
            // A list of plain texts or integers always serializes.
            Param::Texts(v) => SqliteValue::Text(serde_json::to_string(v).unwrap_or_default()),
            Param::Ints(v) => v.map_or(SqliteValue::Null, |v| {
                SqliteValue::Text(serde_json::to_string(v).unwrap_or_default())
            }),
        }
    }
}

/// An instant in its stored text form (or an hour key), as the model's time.
pub(crate) fn parse_time(text: &str) -> Result<EventTime, StorageError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| EventTime::from_datetime(&t))
        .map_err(|e| StorageError::Database(sqlx::Error::Decode(Box::new(e))))
}

/// A result row of either backend, read by column index.
pub(crate) trait Row {
    /// Text.
    fn text(&self, i: usize) -> Result<String, StorageError>;
    /// Text borrowed from the row, for a value read and dropped at once.
    fn str(&self, i: usize) -> Result<&str, StorageError>;
    /// Text or NULL.
    fn opt_text(&self, i: usize) -> Result<Option<String>, StorageError>;
    /// An integer.
    fn int(&self, i: usize) -> Result<i64, StorageError>;
    /// An integer or NULL.
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StorageError>;
    /// A float or NULL.
    fn opt_real(&self, i: usize) -> Result<Option<f64>, StorageError>;
    /// Bytes.
    fn bytes(&self, i: usize) -> Result<Vec<u8>, StorageError>;
    /// An instant or NULL, whichever type stores it (an hour key's text too).
    fn opt_time(&self, i: usize) -> Result<Option<EventTime>, StorageError>;

    /// An instant.
    fn time(&self, i: usize) -> Result<EventTime, StorageError> {
        self.opt_time(i)?
            .ok_or_else(|| StorageError::Database(sqlx::Error::Decode("NULL instant".into())))
    }

    /// A float.
    fn real(&self, i: usize) -> Result<f64, StorageError> {
        self.opt_real(i)?
            .ok_or_else(|| StorageError::Database(sqlx::Error::Decode("NULL number".into())))
    }
}

/// The methods of [`Row`] in which sqlx's two rows agree.
macro_rules! sqlx_row_columns {
    () => {
        fn text(&self, i: usize) -> Result<String, StorageError> {
            Ok(sqlx::Row::try_get(self, i)?)
        }
        fn str(&self, i: usize) -> Result<&str, StorageError> {
            Ok(sqlx::Row::try_get(self, i)?)
        }
        fn opt_text(&self, i: usize) -> Result<Option<String>, StorageError> {
            Ok(sqlx::Row::try_get(self, i)?)
        }
        fn int(&self, i: usize) -> Result<i64, StorageError> {
            Ok(sqlx::Row::try_get(self, i)?)
        }
        fn opt_int(&self, i: usize) -> Result<Option<i64>, StorageError> {
            Ok(sqlx::Row::try_get(self, i)?)
        }
        fn opt_real(&self, i: usize) -> Result<Option<f64>, StorageError> {
            Ok(sqlx::Row::try_get(self, i)?)
        }
        fn bytes(&self, i: usize) -> Result<Vec<u8>, StorageError> {
            Ok(sqlx::Row::try_get(self, i)?)
        }
    };
}

/// [`Row`] over an sqlx row whose instants are text.
impl Row for sqlx::sqlite::SqliteRow {
    sqlx_row_columns!();
    fn opt_time(&self, i: usize) -> Result<Option<EventTime>, StorageError> {
        sqlx::Row::try_get::<Option<&str>, _>(self, i)?
            .map(parse_time)
            .transpose()
    }
}

/// [`Row`] over an sqlx row whose instants are `timestamptz`.
impl Row for sqlx::postgres::PgRow {
    sqlx_row_columns!();
    fn opt_time(&self, i: usize) -> Result<Option<EventTime>, StorageError> {
        Ok(sqlx::Row::try_get::<Option<DateTime<Utc>>, _>(self, i)?
            .map(|t| EventTime::from_datetime(&t)))
    }
}

/// [`Row`] over a rusqlite row (the SQLite read connections).
impl Row for rusqlite::Row<'_> {
    fn text(&self, i: usize) -> Result<String, StorageError> {
        Ok(self.get(i)?)
    }
    fn str(&self, i: usize) -> Result<&str, StorageError> {
        self.get_ref(i)?.as_str().map_err(|e| {
            StorageError::Sqlite(rusqlite::Error::FromSqlConversionFailure(
                i,
                rusqlite::types::Type::Text,
                Box::new(e),
            ))
        })
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, StorageError> {
        Ok(self.get(i)?)
    }
    fn int(&self, i: usize) -> Result<i64, StorageError> {
        Ok(self.get(i)?)
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StorageError> {
        Ok(self.get(i)?)
    }
    fn opt_real(&self, i: usize) -> Result<Option<f64>, StorageError> {
        Ok(self.get(i)?)
    }
    fn bytes(&self, i: usize) -> Result<Vec<u8>, StorageError> {
        Ok(self.get(i)?)
    }
    fn opt_time(&self, i: usize) -> Result<Option<EventTime>, StorageError> {
        match self.get_ref(i)? {
            rusqlite::types::ValueRef::Null => Ok(None),
            _ => parse_time(self.str(i)?).map(Some),
        }
    }
}
