//! Which database the `storage` section names, read once by one rule.
//!
//! The section's two keys stay in [`crate::StorageConfig`] as the file has them, since
//! `check-config` prints them and a command may point `url` elsewhere; this is the one
//! place that reads them as a database. Loading refuses what [`Database::of`] refuses,
//! and storage is handed the enum itself, so no other crate tests a URL's scheme.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::{ConfigError, SecretUrl};

/// The database `storage` names. It lives in this crate, which has no IO and few
/// dependencies, so that the binary parses it here and `butler-storage` opens it as
/// is, without a storage type of its own for the same choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file: `storage.path`, or the file of a `sqlite:<file>` URL.
    Sqlite {
        /// The database file; its directory is created when missing.
        path: PathBuf,
        /// Whether `storage.url` chose it (`sqlite:` or `sqlite:<file>`) rather than
        /// `storage.path` alone, so that an error names the key the operator set.
        by_url: bool,
    },
    /// A PostgreSQL database (CONTRACT §6).
    Postgres {
        /// `postgres://user:password@host:port/db?…`; its password never prints.
        url: SecretUrl,
    },
}

impl Database {
    /// The database of `url` (the key `storage.url`) and `path` (`storage.path`):
    /// `postgres://` or `postgresql://` is PostgreSQL; `sqlite:<file>` that file;
    /// `sqlite:` or no URL the file at `path`.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming `storage.url` for any other scheme.
    pub fn of(url: Option<&SecretUrl>, path: &Path) -> Result<Database, ConfigError> {
        let Some(url) = url else {
            return Ok(Database::Sqlite {
                path: path.to_owned(),
                by_url: false,
            });
        };
        let text = url.expose();
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Ok(Database::Postgres { url: url.clone() });
        }
        match text.strip_prefix("sqlite:") {
            Some(file) => {
                let file = file.trim_start_matches("//");
                Ok(Database::Sqlite {
                    path: if file.is_empty() {
                        path.to_owned()
                    } else {
                        file.into()
                    },
                    by_url: true,
                })
            }
            None => Err(ConfigError::Invalid {
                key: "storage.url".into(),
                message:
                    "must start with sqlite: (the embedded database) or postgres:// (PostgreSQL)"
                        .into(),
            }),
        }
    }

    /// The config key that chose this database, for messages about it.
    pub fn key(&self) -> &'static str {
        match self {
            Database::Sqlite { by_url: false, .. } => "storage.path",
            Database::Sqlite { by_url: true, .. } | Database::Postgres { .. } => "storage.url",
        }
    }
}

/// The database as logs and errors show it: the SQLite file, or the PostgreSQL URL
/// without its password.
impl fmt::Display for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Database::Sqlite { path, .. } => write!(f, "{}", path.display()),
            Database::Postgres { url } => f.write_str(&url.redacted()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(url: Option<&str>) -> Result<Database, String> {
        Database::of(url.map(SecretUrl::from).as_ref(), Path::new("/d/a.db"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn one_rule_reads_the_url_and_names_the_key_that_chose() {
        let sqlite = |path: &str, by_url| {
            Ok(Database::Sqlite {
                path: path.into(),
                by_url,
            })
        };
        assert_eq!(of(None), sqlite("/d/a.db", false));
        assert_eq!(of(Some("sqlite:")), sqlite("/d/a.db", true));
        assert_eq!(of(Some("sqlite:///x/b.db")), sqlite("/x/b.db", true));
        assert_eq!(of(Some("sqlite:./b.db")), sqlite("./b.db", true));
        let pg = of(Some("postgresql://u:pw@h/db")).unwrap();
        assert_eq!(pg.key(), "storage.url");
        assert_eq!(pg.to_string(), "postgresql://u:***@h/db");
        let pg = of(Some("postgres://u:pw@h/db")).unwrap();
        assert!(matches!(pg, Database::Postgres { .. }), "{pg:?}");
        assert_eq!(pg.to_string(), "postgres://u:***@h/db");
        assert_eq!(of(None).unwrap().key(), "storage.path");
        assert_eq!(of(Some("sqlite:")).unwrap().key(), "storage.url");
        for bad in ["mysql://db/a", "postgres:/h/db", "postgresfoo://h/db"] {
            let err = of(Some(bad)).unwrap_err();
            assert!(
                err.starts_with("config key `storage.url`: must start"),
                "{err}"
            );
        }
    }
}
