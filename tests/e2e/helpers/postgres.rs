//! A PostgreSQL server of a test's own — a cluster in a temporary folder, on a free
//! port — for the tests that stop, restart or crash the server, which they must not
//! do to the server the other tests share. Debian's binaries
//! (`/usr/lib/postgresql/<version>/bin`, or `PG_BIN_DIR`); as root, the server runs
//! as the `postgres` user, since PostgreSQL refuses to run as root.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A cluster of its own, stopped (immediately) and removed on drop.
pub struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The `postgres` user's password over TCP, when the cluster asks for one.
    password: Option<String>,
}

fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("PG_BIN_DIR") {
        return dir.into();
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(Path::file_name)
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions.pop().unwrap_or_else(|| {
        panic!("no PostgreSQL binaries under /usr/lib/postgresql: install postgresql (make test does) or set PG_BIN_DIR")
    })
}

#[allow(unsafe_code)]
fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

impl PgServer {
    /// Creates a cluster (trust authentication, `fsync` on) and starts it.
    pub fn start() -> PgServer {
        PgServer::start_on(super::free_port())
    }

    /// [`PgServer::start`] on a given port.
    pub fn start_on(port: u16) -> PgServer {
        PgServer::create(port, None)
    }

    /// A cluster whose TCP connections must give `password` (SCRAM), as a deployed
    /// server asks.
    pub fn start_with_password(password: &str) -> PgServer {
        PgServer::create(super::free_port(), Some(password))
    }

    fn create(port: u16, password: Option<&str>) -> PgServer {
        let dir = tempfile::tempdir().unwrap();
        let server = PgServer {
            bin: bin_dir(),
            port,
            dir,
            password: password.map(str::to_owned),
        };
        if is_root() {
            server.run(
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(server.dir.path()),
            );
        }
        let data = server.data();
        let mut initdb = vec!["-D", &data, "-U", "postgres", "-E", "UTF8"];
        let password_file = server.dir.path().join("password");
        let password_file = password_file.display().to_string();
        match password {
            None => initdb.push("--auth=trust"),
            Some(password) => {
                std::fs::write(&password_file, password).unwrap();
                initdb.extend([
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--pwfile",
                    &password_file,
                ]);
            }
        }
        server.pg("initdb", &initdb);
        server.start_again();
        server
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, cmd: &mut Command) {
        let out = cmd.stdin(Stdio::null()).output().unwrap();
        assert!(
            out.status.success(),
            "{cmd:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs one of PostgreSQL's programs, as `postgres` when we are root.
    fn pg(&self, program: &str, args: &[&str]) {
        let path = self.bin.join(program);
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        cmd.args(args);
        self.run(&mut cmd);
    }

    /// Starts the server (again) and waits until it takes connections.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log").display().to_string();
        self.pg(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "PostgreSQL did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server: `fast` ends sessions and shuts down cleanly, `immediate`
    /// quits at once as a crash would (recovery from the WAL on the next start).
    pub fn stop(&self, mode: &str) {
        self.pg("pg_ctl", &["-D", &self.data(), "-m", mode, "-w", "stop"]);
    }

    /// A URL of database `db` on it.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// [`PgServer::url`] with the password in it, if the cluster asks for one.
    pub fn url_with_password(&self, db: &str) -> String {
        match &self.password {
            None => self.url(db),
            Some(password) => format!(
                "postgres://postgres:{password}@127.0.0.1:{}/{db}",
                self.port
            ),
        }
    }

    /// Creates database `name`.
    pub async fn create_database(&self, name: &str) {
        let mut conn =
            <sqlx::PgConnection as sqlx::Connection>::connect(&self.url_with_password("postgres"))
                .await
                .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let path = self.bin.join("pg_ctl");
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        let _ = cmd
            .args(["-D", &self.data(), "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
