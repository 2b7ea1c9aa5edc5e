//! Credentials that must not reach logs or `check-config` output.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A credential (token, password, NKey seed). Its `Debug` and `Serialize` forms are
/// redacted, so printing a whole config never leaks it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that must hand it to a client library.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

/// A database URL (`storage.url`). Its password never prints: `Debug`, `Serialize`
/// and [`DatabaseUrl::redacted`] show `***` in its place.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The URL itself, for the one place that hands it to the database driver.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with its password replaced by `***`, for logs, errors and
    /// `check-config`.
    pub fn redacted(&self) -> String {
        let url = self.0.as_str();
        let Some((scheme, rest)) = url.split_once("://") else {
            return url.to_owned();
        };
        let (authority, tail) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        match authority.rsplit_once('@') {
            Some((user_info, host)) => match user_info.split_once(':') {
                Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
                None => url.to_owned(),
            },
            None => url.to_owned(),
        }
    }
}

impl From<&str> for DatabaseUrl {
    fn from(s: &str) -> Self {
        DatabaseUrl(s.to_owned())
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for DatabaseUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_password_never_shows() {
        let redacted = |url: &str| DatabaseUrl::from(url).redacted();
        assert_eq!(
            redacted("postgres://butler:s3cret@db.example:5432/analytics?sslmode=require"),
            "postgres://butler:***@db.example:5432/analytics?sslmode=require"
        );
        assert_eq!(
            redacted("postgres://butler@db/analytics"),
            "postgres://butler@db/analytics"
        );
        assert_eq!(
            redacted("postgresql://u:p@ss:word@h/db"),
            "postgresql://u:***@h/db"
        );
        assert_eq!(redacted("sqlite:./data/a.db"), "sqlite:./data/a.db");
        let url = DatabaseUrl::from("postgres://u:hunter2@h/db");
        assert!(!format!("{url:?}").contains("hunter2"));
        assert!(!serde_json::to_string(&url).unwrap().contains("hunter2"));
    }
}
