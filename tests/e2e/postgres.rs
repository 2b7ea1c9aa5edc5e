//! PostgreSQL faults, each on a server of the test's own: a restart mid-ingest (clean
//! and as a crash), and a server that is not there yet at start. Every event is
//! stored once, nothing is acked before its commit, and readiness says so meanwhile.

use std::collections::HashSet;
use std::time::Duration;

use crate::helpers::{
    App, Backend, CommitBlocker, NatsServer, PgServer, TestDb, backend, cli, consumer_info,
    free_port, message_events, publish_all, try_consumer_info, wait_until,
};

const WAIT: Duration = Duration::from_secs(120);

async fn stored(url: &str) -> Vec<String> {
    let db = TestDb::postgres(url).await;
    let ids = db.strings("SELECT id FROM analytics_events").await;
    db.close().await;
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_mid_ingest_loses_nothing_and_acks_nothing_uncommitted() {
    if backend() != Backend::Postgres {
        return;
    }
    let pg = PgServer::start();
    pg.create_database("butler").await;
    let url = pg.url("butler");
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    let app = App::start(
        &nats.url(),
        &format!(
            "storage:\n  url: {url}\nnats:\n  ack_wait_ms: 4000\ningest:\n  batch_size: 100\n"
        ),
    );
    let all = message_events("pg", 40_000);
    let mut published = 0;
    for mode in ["fast", "immediate"] {
        let half = published + 20_000;
        publish_all(&js, all[published..half - 10_000].to_vec()).await;
        wait_until(WAIT, "ingest under way", || async {
            stored(&url).await.len() >= published + 1_000
        })
        .await;
        // The rest arrives while another transaction holds commits back, so the stop
        // lands with batches in hand however fast the pipeline is.
        let hold = CommitBlocker::on_postgres(&url).await;
        publish_all(&js, all[half - 10_000..half].to_vec()).await;
        let watcher = TestDb::postgres(&url).await;
        wait_until(WAIT, "a commit waiting for the lock", || async {
            watcher
                .count("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
                .await
                > 0
        })
        .await;
        watcher.close().await;
        pg.stop(mode);
        // The server ended the holding session with the others.
        drop(hold);

        wait_until(
            WAIT,
            "/readyz to say 503 while the server is down",
            || async {
                app.get("/readyz")
                    .is_some_and(|(s, body)| s == 503 && body.contains("database"))
            },
        )
        .await;
        // Nothing acked that was not committed: every message at or below the ack floor
        // seen while the server is down must be stored once it is back (an acked
        // message is never delivered again, so nothing could store it later).
        let mut acked = 0;
        for _ in 0..10 {
            acked = acked.max(consumer_info(&js).await.ack_floor.stream_sequence);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        pg.start_again();
        wait_until(WAIT, "/readyz to say 200 again", || async {
            app.get("/readyz").map(|(s, _)| s) == Some(200)
        })
        .await;
        let now_stored: HashSet<String> = stored(&url).await.into_iter().collect();
        let missing = (0..acked)
            .filter(|i| !now_stored.contains(&format!("pg-{i:06}")))
            .count();
        assert_eq!(
            missing, 0,
            "{mode}: acked up to {acked}, {missing} of them not stored"
        );
        wait_until(WAIT, "every event of the round stored", || async {
            stored(&url).await.len() >= half
        })
        .await;
        published = half;
    }
    wait_until(WAIT, "every message acked", || async {
        try_consumer_info(&js)
            .await
            .is_some_and(|info| info.num_pending == 0 && info.num_ack_pending == 0)
    })
    .await;
    let ids = stored(&url).await;
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(ids.len(), 40_000, "none doubled");
    let expected: HashSet<String> = (0..40_000).map(|i| format!("pg-{i:06}")).collect();
    assert_eq!(unique, expected.iter().collect(), "none lost");
    assert!(app.metric("butler_analytics_ingest_commit_retries_total") >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_not_there_at_start_is_waited_for_and_said() {
    if backend() != Backend::Postgres {
        return;
    }
    let port = free_port();
    let url = format!("postgres://postgres:hunter2@127.0.0.1:{port}/postgres");
    let nats = NatsServer::start();
    let mut app = App::prepare(&nats.url(), &format!("storage:\n  url: {url}\n"), None);
    app.spawn();
    wait_until(WAIT, "the wait to be logged", || async {
        app.log().contains("database unreachable; waiting for it")
    })
    .await;
    assert!(app.is_running());
    assert!(
        app.log().contains("postgres:***@127.0.0.1"),
        "{}",
        app.log()
    );
    assert!(!app.log().contains("hunter2"), "the password never shows");

    let _pg = PgServer::start_on(port);
    app.wait_ready();
    let js = nats.jetstream().await;
    publish_all(&js, message_events("late-pg", 10)).await;
    wait_until(WAIT, "events once the server is there", || async {
        stored(&url).await.len() == 10
    })
    .await;
}

/// The database password kept out of the config, as the compose file passes it: a
/// `storage.url` that names none takes it from libpq's `PGPASSWORD` or a pgpass file
/// (`PGPASSFILE`). A wrong one stops start-up naming the key, and is never printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_password_comes_from_pgpassword_or_a_pgpass_file() {
    if backend() != Backend::Postgres {
        return;
    }
    let pg = PgServer::start_with_password("Ba4-secret");
    pg.create_database("butler").await;
    let url = pg.url("butler");
    assert!(!url.contains("Ba4-secret"));
    let nats = NatsServer::start();
    let mut app = App::prepare(&nats.url(), &format!("storage:\n  url: {url}\n"), None);

    let wrong = cli(
        &app.config_path(),
        &["migrate"],
        &[("PGPASSWORD", "not-the-one")],
    );
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&wrong.stdout),
        String::from_utf8_lossy(&wrong.stderr)
    );
    assert!(!wrong.status.success(), "{said}");
    assert!(said.contains("storage.url"), "{said}");
    assert!(said.contains("password authentication failed"), "{said}");
    assert!(!said.contains("not-the-one"), "{said}");

    let pgpass = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        pgpass.path(),
        format!("127.0.0.1:{}:butler:postgres:Ba4-secret\n", pg.port),
    )
    .unwrap();
    std::fs::set_permissions(
        pgpass.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let from_file = cli(
        &app.config_path(),
        &["migrate"],
        &[("PGPASSFILE", &pgpass.path().display().to_string())],
    );
    assert!(
        from_file.status.success(),
        "{}",
        String::from_utf8_lossy(&from_file.stderr)
    );

    app.set_env("PGPASSWORD", "Ba4-secret");
    app.restart();
    let js = nats.jetstream().await;
    publish_all(&js, message_events("pw", 25)).await;
    let admin = pg.url_with_password("butler");
    wait_until(WAIT, "the events stored", || async {
        stored(&admin).await.len() == 25
    })
    .await;
    assert!(!app.log().contains("Ba4-secret"), "{}", app.log());
}
