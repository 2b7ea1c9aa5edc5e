//! The SQL spellings a backend needs where SQLite and PostgreSQL differ. Everything
//! else is written once in the spelling both accept: `$N` parameters,
//! `ON CONFLICT … DO …`, `CAST(x AS BIGINT)`, `"timestamp"`.

use butler_events::Granularity;

use crate::tables::{AggTable, Kind};

/// Which SQL a statement is spelled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// Text instants and periods, JSON lists, SQLite's date functions.
    Sqlite = 0,
    /// Typed instants and periods (`timestamptz`, `date`, `text`), arrays.
    Postgres = 1,
}

impl Dialect {
    /// Parameter `n`: `$N` on both (SQLite reads it as the parameter named `$N`, which
    /// [`crate::sql::Db`] binds as the `N`th).
    pub(crate) fn param(self, n: usize) -> String {
        format!("${n}")
    }

    /// `IN` the list bound as parameter `n` ([`crate::sql::Param::Texts`],
    /// [`crate::sql::Param::Ints`]): a JSON array on SQLite, an array on PostgreSQL.
    pub(crate) fn in_list(self, n: usize) -> String {
        match self {
            Dialect::Sqlite => format!("IN (SELECT value FROM json_each(${n}))"),
            Dialect::Postgres => format!("= ANY(${n})"),
        }
    }

    /// Now, by the server's clock when the statement runs (not its transaction's
    /// start), in the stored form of an instant.
    pub(crate) fn now(self) -> &'static str {
        match self {
            Dialect::Sqlite => "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
            Dialect::Postgres => "clock_timestamp()",
        }
    }

    /// Parameter `n` milliseconds after [`Dialect::now`].
    pub(crate) fn millis_from_now(self, n: usize) -> String {
        match self {
            Dialect::Sqlite => {
                format!(
                    "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+' || (${n} / 1000.0) || ' seconds')"
                )
            }
            Dialect::Postgres => format!("clock_timestamp() + ${n} * interval '1 millisecond'"),
        }
    }

    /// After an `ORDER BY` text column: byte order on both, whatever the PostgreSQL
    /// database's collation.
    pub(crate) fn bytewise(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " COLLATE \"C\"",
        }
    }

    /// After a table name: the index SQLite's planner must use where its statistics
    /// could mislead it (PostgreSQL plans by its own).
    pub(crate) fn indexed_by(self, index: &str) -> String {
        match self {
            Dialect::Sqlite => format!(" INDEXED BY {index}"),
            Dialect::Postgres => String::new(),
        }
    }

    /// `metadata.<key>` when it is a string, else NULL.
    pub(crate) fn metadata_text(self, key: &str) -> String {
        match self {
            Dialect::Sqlite => format!(
                "CASE WHEN json_type(metadata, '$.{key}') = 'text' THEN json_extract(metadata, '$.{key}') END"
            ),
            Dialect::Postgres => format!(
                "CASE WHEN jsonb_typeof(metadata -> '{key}') = 'string' THEN metadata ->> '{key}' END"
            ),
        }
    }

    /// A JSON column read back as its text.
    pub(crate) fn json_text(self, column: &str) -> String {
        match self {
            Dialect::Sqlite => column.to_owned(),
            Dialect::Postgres => format!("{column}::text AS {column}"),
        }
    }

    /// The rows of the JSON array of objects bound as parameter `n`, as a table of
    /// `columns` (name, PostgreSQL type): many rows in one statement on both.
    pub(crate) fn json_records(self, n: usize, columns: &[(&str, &str)]) -> String {
        match self {
            Dialect::Sqlite => {
                let values: Vec<String> = columns
                    .iter()
                    .map(|(name, _)| format!("value ->> '{name}' AS {name}"))
                    .collect();
                format!("(SELECT {} FROM json_each(${n}))", values.join(", "))
            }
            Dialect::Postgres => {
                let types: Vec<String> = columns
                    .iter()
                    .map(|(name, ty)| format!("{name} {ty}"))
                    .collect();
                format!("jsonb_to_recordset(${n}::jsonb) AS r({})", types.join(", "))
            }
        }
    }

    /// Parameter `n` as a value of a measure column of `kind` (`None`: a text key
    /// column). PostgreSQL is told the type; SQLite stores what it is given.
    pub(crate) fn typed_param(self, n: usize, kind: Option<Kind>) -> String {
        match (self, kind) {
            (Dialect::Sqlite, _) => format!("${n}"),
            (Dialect::Postgres, Some(Kind::Integer)) => format!("${n}::int8"),
            (Dialect::Postgres, Some(Kind::Real)) => format!("${n}::float8"),
            (Dialect::Postgres, Some(Kind::Json)) => format!("${n}::jsonb"),
            (Dialect::Postgres, None) => format!("${n}::text"),
        }
    }

    /// A floating-point SQL type.
    pub(crate) fn real(self) -> &'static str {
        match self {
            Dialect::Sqlite => "REAL",
            Dialect::Postgres => "double precision",
        }
    }

    /// Parameter `n`, a text key, as a value of the period column of `granularity`.
    pub(crate) fn period_param(self, n: usize, granularity: Granularity) -> String {
        match (self, granularity) {
            (Dialect::Sqlite, _) | (Dialect::Postgres, Granularity::Month) => format!("${n}"),
            (Dialect::Postgres, Granularity::Hour) => format!("${n}::timestamptz"),
            (Dialect::Postgres, Granularity::Day | Granularity::Week) => format!("${n}::date"),
        }
    }

    /// The period column as its key text.
    pub(crate) fn period_text(self, table: &AggTable) -> String {
        let column = table.period_column;
        match (self, table.granularity) {
            (Dialect::Sqlite, _) | (Dialect::Postgres, Granularity::Month) => column.to_owned(),
            (Dialect::Postgres, Granularity::Hour) => {
                format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:00:00\"Z\"')")
            }
            (Dialect::Postgres, Granularity::Day | Granularity::Week) => {
                format!("to_char({column}, 'YYYY-MM-DD')")
            }
        }
    }

    /// `column >= from AND column < to`, the range keys given as parameters 2 and 3
    /// (dates, a month's key read as its first day, or UTC hour keys).
    pub(crate) fn period_in_range(self, table: &AggTable) -> String {
        let column = table.period_column;
        let (from, to) = (self.param(2), self.param(3));
        match (self, table.granularity) {
            (_, Granularity::Month) => {
                format!("{column} || '-01' >= {from} AND {column} || '-01' < {to}")
            }
            (Dialect::Sqlite, _) => format!("{column} >= {from} AND {column} < {to}"),
            (Dialect::Postgres, Granularity::Hour) => {
                format!("{column} >= {from}::timestamptz AND {column} < {to}::timestamptz")
            }
            (Dialect::Postgres, Granularity::Day | Granularity::Week) => {
                format!("{column} >= {from}::date AND {column} < {to}::date")
            }
        }
    }
}
