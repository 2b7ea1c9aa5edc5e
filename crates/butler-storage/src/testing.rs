//! A PostgreSQL database of a test's own, created on the server the tests use and
//! dropped afterwards, for this crate's tests and the end-to-end tests
//! (feature `testing`).
//!
//! The server is `BUTLER_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`, trust authentication as on the
//! development machines); `make test` starts one when none answers.

use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::postgres::PgConnection;
use sqlx::{Connection, Executor};

/// The server the tests use.
pub fn admin_url() -> String {
    std::env::var("BUTLER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database created for one test; dropped (connections and all) when this is.
#[derive(Debug)]
pub struct TempPostgres {
    name: String,
    url: String,
}

static NEXT: AtomicU64 = AtomicU64::new(0);

async fn admin() -> PgConnection {
    let url = admin_url();
    PgConnection::connect(&url).await.unwrap_or_else(|e| {
        panic!(
            "no PostgreSQL at {url} ({e}): start one (make test does) or set BUTLER_TEST_POSTGRES_URL"
        )
    })
}

impl TempPostgres {
    /// Creates an empty database `butler_test_<pid>_<n>`. Databases of earlier test
    /// processes that are gone (a test killed before it could drop its own) are
    /// dropped first.
    ///
    /// # Panics
    /// When the server cannot be reached or refuses.
    pub async fn create() -> TempPostgres {
        TempPostgres::create_with("").await
    }

    /// [`TempPostgres::create`] with more `CREATE DATABASE` options, e.g. a
    /// collation that orders text otherwise than byte by byte.
    ///
    /// # Panics
    /// As [`TempPostgres::create`].
    pub async fn create_with(options: &str) -> TempPostgres {
        let mut conn = admin().await;
        let leftovers: Vec<String> = sqlx::query_scalar(
            "SELECT datname FROM pg_database WHERE datname LIKE 'butler\\_test\\_%'",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap_or_default();
        for name in leftovers {
            let pid = name.split('_').nth(2).and_then(|p| p.parse::<u32>().ok());
            if pid.is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists()) {
                let _ = conn
                    .execute(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                    )))
                    .await;
            }
        }
        let name = format!(
            "butler_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        conn.execute(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE \"{name}\" {options}"
        )))
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let admin = admin_url();
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        let url = format!("{base}/{name}");
        TempPostgres { name, url }
    }

    /// [`TempPostgres::create`] from code that is not async (or is, but may not
    /// block its runtime): on a thread of its own.
    ///
    /// # Panics
    /// As [`TempPostgres::create`].
    pub fn create_blocking() -> TempPostgres {
        std::thread::spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime")
                .block_on(TempPostgres::create())
        })
        .join()
        .expect("the database created")
    }

    /// Its URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Storage options for it.
    pub fn options(&self) -> crate::StorageOptions {
        crate::StorageOptions::for_database(crate::Database::Postgres {
            url: self.url.as_str().into(),
        })
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime: drop the database from a thread of
        // its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut conn = PgConnection::connect(&admin_url()).await.ok()?;
                conn.execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                )))
                .await
                .ok()
            })
        });
        let _ = dropped.join();
    }
}
