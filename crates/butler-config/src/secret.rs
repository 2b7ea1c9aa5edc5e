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

/// A URL that may carry credentials: `nats.url` (one or several, comma-separated) and
/// `storage.url`. Its secrets never print: `Debug`, `Display`, `Serialize` and
/// [`SecretUrl::redacted`] show `***` for a password in the user info, for a NATS
/// token (`nats://token@host`), and for the value of a `password`-like query
/// parameter (`?password=…`, which PostgreSQL drivers accept too).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SecretUrl(String);

/// Query parameters whose value is a credential.
const SECRET_PARAMETERS: [&str; 6] = [
    "password",
    "pass",
    "sslpassword",
    "token",
    "auth_token",
    "nkey",
];

/// Schemes whose user info, without a `:`, is a token rather than a user name.
const TOKEN_SCHEMES: [&str; 4] = ["nats", "tls", "ws", "wss"];

impl SecretUrl {
    /// The URL itself, for the one place that hands it to a client library or driver.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with every credential replaced by `***`, for logs, errors, status and
    /// `check-config`.
    pub fn redacted(&self) -> String {
        self.0
            .split(',')
            .map(redact_one)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// One URL of a list, its credentials replaced by `***`.
fn redact_one(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    // Without a scheme (`sqlite:<path>`, a bare `host:port`) only a `user:password@`
    // prefix counts.
    let (authority, tail) = match (scheme, rest.find(['/', '?'])) {
        (Some(_), Some(i)) => rest.split_at(i),
        _ => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None if scheme.is_none_or(|s| {
                TOKEN_SCHEMES.contains(&s.trim().to_ascii_lowercase().as_str())
            }) =>
            {
                format!("***@{host}")
            }
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _))
                        if SECRET_PARAMETERS.contains(&key.to_ascii_lowercase().as_str()) =>
                    {
                        format!("{key}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect::<Vec<_>>()
                .join("&");
            format!("{path}?{query}")
        }
        None => tail.to_owned(),
    };
    match scheme {
        Some(scheme) => format!("{scheme}://{authority}{tail}"),
        None => format!("{authority}{tail}"),
    }
}

impl From<&str> for SecretUrl {
    fn from(s: &str) -> Self {
        SecretUrl(s.to_owned())
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for SecretUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_shows() {
        let redacted = |url: &str| SecretUrl::from(url).redacted();
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
        assert_eq!(
            redacted("postgres://h/db?user=u&Password=hunter2&sslmode=require"),
            "postgres://h/db?user=u&Password=***&sslmode=require"
        );
        assert_eq!(
            redacted("nats://a:pw1@n1:4222, nats://tok3n@n2:4222,tls://n3"),
            "nats://a:***@n1:4222, nats://***@n2:4222,tls://n3"
        );
        assert_eq!(redacted("u:pw@host:4222"), "u:***@host:4222");
        assert_eq!(redacted("nats://n1:4222"), "nats://n1:4222");
        let url = SecretUrl::from("postgres://u:hunter2@h/db?password=hunter3");
        for shown in [
            format!("{url:?}"),
            format!("{url}"),
            serde_json::to_string(&url).unwrap(),
        ] {
            assert!(!shown.contains("hunter"), "{shown}");
        }
    }
}
