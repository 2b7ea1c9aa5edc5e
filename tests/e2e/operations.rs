//! What an operator meets: backups under load, a full disk, a database the pipeline
//! must not touch, NATS not there yet.

use std::collections::HashSet;
use std::time::Duration;

use crate::helpers::{
    App, Backend, NatsServer, TestDb, backend, cli, consumer_info, free_port, message_events,
    publish_all, wait_until,
};

const WAIT: Duration = Duration::from_secs(90);

async fn ids(db: TestDb) -> HashSet<String> {
    let ids = db.strings("SELECT id FROM analytics_events").await;
    db.close().await;
    ids.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_holds_every_row_committed_before_it_started() {
    let nats = NatsServer::start();
    let app = App::start(&nats.url(), "ingest:\n  batch_size: 200\n");
    let js = nats.jetstream().await;
    publish_all(&js, message_events("b", 40_000)).await;
    wait_until(WAIT, "ingest under way", || async {
        app.event_count().await >= 2000
    })
    .await;
    let target = tempfile::tempdir().unwrap();
    let copy = target.path().join("backup.db");
    if app.on_postgres() {
        // PostgreSQL has backups of its own; the command says which, and writes nothing.
        let out = cli(&app.config_path(), &["backup", copy.to_str().unwrap()], &[]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("pg_dump"), "{err}");
        assert!(!copy.exists());
        return;
    }
    let before = ids(app.db().await).await;
    let out = cli(&app.config_path(), &["backup", copy.to_str().unwrap()], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let in_copy = ids(TestDb::sqlite(&copy).await).await;
    assert!(
        before.is_subset(&in_copy),
        "{} committed before the backup, {} in it",
        before.len(),
        in_copy.len()
    );
    let pool = sqlx::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&copy)
            .read_only(true),
    )
    .await
    .unwrap();
    let check: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(check, "ok");
    // Never over an existing file.
    let again = cli(&app.config_path(), &["backup", copy.to_str().unwrap()], &[]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));
    wait_until(WAIT, "ingest finished meanwhile", || async {
        app.event_count().await == 40_000
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_acks_and_ingest_resumes_when_space_returns() {
    if backend() == Backend::Postgres {
        // storage.max_size_bytes limits the SQLite file; a PostgreSQL server that
        // stops taking writes is the PostgreSQL fault tests' subject.
        return;
    }
    let nats = NatsServer::start();
    let app = App::start(
        &nats.url(),
        "nats:\n  ack_wait_ms: 60000\nstorage:\n  max_size_bytes: 4194304\n",
    );
    let js = nats.jetstream().await;
    // Another process fills the file past the pipeline's limit.
    let ballast = sqlx::sqlite::SqliteConnectOptions::new().filename(app.db_path());
    let mut ballast = sqlx::ConnectOptions::connect(&ballast).await.unwrap();
    sqlx::query("CREATE TABLE test_ballast (b BLOB)")
        .execute(&mut ballast)
        .await
        .unwrap();
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 80) \
         INSERT INTO test_ballast SELECT randomblob(65536) FROM n",
    )
    .execute(&mut ballast)
    .await
    .unwrap();

    publish_all(&js, message_events("f", 3000)).await;
    wait_until(WAIT, "the failing writes to show", || async {
        app.metric("butler_analytics_storage_write_failing") == 1.0
    })
    .await;
    let (status, body) = app.get("/readyz").unwrap();
    assert_eq!(status, 503);
    assert!(body.contains("database"), "{body}");
    assert!(app.metric("butler_analytics_ingest_commit_retries_total") >= 1.0);
    assert_eq!(app.event_count().await, 0, "nothing committed");
    let info = consumer_info(&js).await;
    assert_eq!(info.ack_floor.stream_sequence, 0, "nothing acked: {info:?}");

    // Space returns: the ballast goes, its pages are free for the pipeline again.
    sqlx::query("DROP TABLE test_ballast")
        .execute(&mut ballast)
        .await
        .unwrap();
    wait_until(WAIT, "ingest to resume by itself", || async {
        app.event_count().await == 3000
    })
    .await;
    wait_until(WAIT, "ready again", || async {
        app.get("/readyz").map(|(s, _)| s) == Some(200)
    })
    .await;
    assert_eq!(app.metric("butler_analytics_storage_write_failing"), 0.0);
    wait_until(WAIT, "every message acked", || async {
        consumer_info(&js).await.num_ack_pending == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_or_newer_database_stops_the_start_and_is_left_untouched() {
    if backend() == Backend::Postgres {
        return a_newer_postgres_database_stops_the_start_and_is_left_untouched().await;
    }
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt.db");
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(&corrupt, &garbage).unwrap();
    let config = dir.path().join("c.yaml");
    std::fs::write(
        &config,
        format!("storage:\n  path: {}\n", corrupt.display()),
    )
    .unwrap();
    let out = cli(&config, &["migrate"], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("storage.path") && err.contains("not a database"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&corrupt).unwrap(),
        garbage,
        "nothing overwritten"
    );

    // A database migrated by a newer version.
    let newer = dir.path().join("newer.db");
    std::fs::write(&config, format!("storage:\n  path: {}\n", newer.display())).unwrap();
    let out = cli(&config, &["migrate", "--json"], &[]);
    assert!(out.status.success(), "{out:?}");
    let said: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(said["upToDate"], true, "{said}");
    assert!(
        said["database"]
            .as_str()
            .is_some_and(|d| d.contains("newer.db")),
        "{said}"
    );
    let pool =
        sqlx::SqlitePool::connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(&newer))
            .await
            .unwrap();
    sqlx::query("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (9999, 'from the future', 1, x'00', 0)")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let before = std::fs::read(&newer).unwrap();
    let out = cli(&config, &["migrate"], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("9999"), "{err}");
    assert_eq!(std::fs::read(&newer).unwrap(), before, "nothing changed");
}

/// A PostgreSQL database migrated by a newer version: the start stops, naming the
/// version it does not know, and the schema stays as it was.
async fn a_newer_postgres_database_stops_the_start_and_is_left_untouched() {
    let db = butler_storage::testing::TempPostgres::create().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.yaml");
    std::fs::write(&config, format!("storage:\n  url: {}\n", db.url())).unwrap();
    assert!(cli(&config, &["migrate"], &[]).status.success());
    let test_db = TestDb::postgres(db.url()).await;
    let TestDb::Postgres(pool) = &test_db else {
        unreachable!()
    };
    sqlx::query("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (9999, 'from the future', true, '\\x00', 0)")
        .execute(pool)
        .await
        .unwrap();
    let schema = "SELECT table_name::text || '.' || column_name::text FROM information_schema.columns \
                  WHERE table_schema = 'public' ORDER BY 1";
    let before = test_db.strings(schema).await;
    let out = cli(&config, &["migrate"], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("9999") && err.contains("storage.url"), "{err}");
    assert!(!err.contains("password"), "{err}");
    assert_eq!(test_db.strings(schema).await, before, "nothing changed");
    test_db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_unreachable_at_start_is_retried_and_said() {
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let mut app = App::prepare(&url, "", None);
    app.spawn();
    wait_until(WAIT, "the endpoint to answer", || async {
        app.get("/healthz").map(|(s, _)| s) == Some(200)
    })
    .await;
    let (status, body) = app.get("/readyz").unwrap();
    assert_eq!(status, 503);
    assert!(body.contains("nats"), "{body}");
    assert!(app.is_running());

    let nats = NatsServer::on_port(port);
    app.wait_ready();
    let js = nats.jetstream().await;
    publish_all(&js, message_events("u", 10)).await;
    wait_until(WAIT, "events after NATS came up", || async {
        app.event_count().await == 10
    })
    .await;
}

/// A flood of rejected messages costs the pipeline no memory per message. Measured
/// after a warm-up of 130,000, by which the allocator's arenas have done their
/// growing, its resident memory may grow by a fixed 24 MiB over the
/// next 120,000, plus what the ingest writer's SQLite page cache can still take: the
/// pages the database grew by, up to the cache's configured 64 MiB (`cache_size`),
/// each 4 KiB page with its header. On PostgreSQL the cache is the server's. Keeping
/// each dead letter in memory (some 400 bytes of message and row) fails it; a leak
/// below about 200 bytes a message would pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_invalid_events_keeps_memory_flat() {
    const WARM: usize = 130_000;
    const FLOOD: usize = 120_000;
    let nats = NatsServer::start();
    let mut app = App::prepare(&nats.url(), "", None);
    // glibc keeps freed batch memory in up to 8 arenas per core, one per thread that
    // happened to allocate, so without a cap the same run ends 30 MB apart depending
    // on the scheduler; two arenas make the figure the pipeline's own.
    app.set_env("MALLOC_ARENA_MAX", "2");
    app.restart();
    let js = nats.jetstream().await;
    let junk = |n: usize, from: usize| -> Vec<(String, Vec<u8>)> {
        (from..from + n)
            .map(|i| {
                let body = match i % 4 {
                    0 => format!("{{not json {i}"),
                    1 => format!(r#"{{"propertyId":"p","channel":"pigeon-{i}"}}"#),
                    2 => format!(r#"{{"propertyId":"p","durationMs":-{i}}}"#),
                    _ => format!(r#"{{"eventType":"guest.teleported","n":{i}}}"#),
                };
                ("butler.events.message.sent".to_owned(), body.into_bytes())
            })
            .collect()
    };
    let dead_letters = || async {
        let db = app.db().await;
        let n = db
            .count("SELECT count(*) FROM analytics_dead_letters")
            .await;
        db.close().await;
        n
    };
    // The database's pages (in the file or still in its write-ahead log): the most
    // the page cache can hold.
    let database_kib = || async {
        if app.on_postgres() {
            return 0;
        }
        let db = app.db().await;
        let bytes = db
            .count("SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()")
            .await;
        db.close().await;
        u64::try_from(bytes).unwrap() / 1024
    };
    publish_all(&js, junk(WARM, 0)).await;
    wait_until(WAIT, "the first dead letters", || async {
        dead_letters().await == WARM as i64
    })
    .await;
    let (warm, warm_db) = (app.rss_kib(), database_kib().await);
    publish_all(&js, junk(FLOOD, WARM)).await;
    wait_until(WAIT, "every dead letter", || async {
        dead_letters().await == (WARM + FLOOD) as i64
    })
    .await;
    let (after, after_db) = (app.rss_kib(), database_kib().await);
    let cache_kib = |db_kib: u64| db_kib.min(64 * 1024);
    let page_cache_kib = cache_kib(after_db).saturating_sub(cache_kib(warm_db)) * 11 / 10;
    let allowance = 24 * 1024 + page_cache_kib;
    println!(
        "pipeline RSS: {warm} KiB after {WARM} rejected events, {after} KiB after {}; \
         database {warm_db} KiB then {after_db} KiB; allowance {allowance} KiB",
        WARM + FLOOD
    );
    assert!(warm > 0 && after > 0);
    assert!(
        after < warm + allowance,
        "RSS grew from {warm} KiB to {after} KiB over {FLOOD} rejected events, \
         more than the allowance of {allowance} KiB"
    );
    assert_eq!(app.event_count().await, 0);
}

/// An operator moves a SQLite deployment to PostgreSQL: every row copied, the counts
/// compared, and the aggregate tables the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_deployment_moves_to_postgres_with_every_row() {
    if backend() != Backend::Sqlite {
        return;
    }
    let nats = NatsServer::start();
    let mut app = App::start(&nats.url(), &crate::aggregation::config());
    let js = nats.jetstream().await;
    crate::aggregation::publish_dataset(&js, &crate::aggregation::dataset(1500)).await;
    publish_all(&js, message_events("m", 50)).await;
    wait_until(WAIT, "every event stored", || async {
        app.event_count().await == 1550
    })
    .await;
    assert!(app.terminate().success());
    crate::aggregation::backfill_week(&app.config_path());

    let pg = butler_storage::testing::TempPostgres::create().await;
    let out = cli(
        &app.config_path(),
        &["migrate-data", "--to", pg.url(), "--json"],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("analytics_events: 1550/1550 rows (100%)"),
        "{err}"
    );
    let said: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tables = said["tables"].as_array().unwrap();
    assert!(
        tables.contains(
            &serde_json::json!({"table": "analytics_events", "sqlite": 1550, "postgres": 1550})
        ),
        "{said}"
    );
    assert!(
        tables.iter().all(|t| t["sqlite"] == t["postgres"]),
        "{said}"
    );

    let copied = crate::aggregation::aggregate_tables_of(TestDb::postgres(pg.url()).await).await;
    assert!(
        copied.iter().all(|(_, rows)| !rows.is_empty()),
        "every table has rows"
    );
    assert_eq!(copied, crate::aggregation::aggregate_tables(&app).await);
    let copy = TestDb::postgres(pg.url()).await;
    assert_eq!(
        copy.count("SELECT count(*) FROM analytics_events").await,
        1550
    );
    copy.close().await;

    // Into a database that holds events already: refused.
    let again = cli(&app.config_path(), &["migrate-data", "--to", pg.url()], &[]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("empty"));
}

/// `status --json` on a stopped pipeline: every job with its schedule and next run,
/// dead letters by reason, and the consumer's lag as NATS tells it — or why not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_answers_with_the_pipeline_stopped() {
    let mut nats = NatsServer::start();
    let mut app = App::start(&nats.url(), "");
    let js = nats.jetstream().await;
    publish_all(&js, message_events("st", 4)).await;
    publish_all(
        &js,
        vec![(
            "butler.events.message.received".into(),
            br#"{"id":"bad","propertyId":"p","channel":"pigeon"}"#.to_vec(),
        )],
    )
    .await;
    wait_until(WAIT, "stored and rejected", || async {
        app.event_count().await == 4
            && consumer_info(&js).await.num_ack_pending == 0
            && consumer_info(&js).await.num_pending == 0
    })
    .await;
    assert!(app.terminate().success());
    // Waiting while the pipeline is down.
    publish_all(&js, message_events("later", 3)).await;

    let status = |app: &App| {
        let out = cli(&app.config_path(), &["status", "--json"], &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let s = status(&app);
    let jobs = s["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 10, "{s}");
    assert!(
        jobs.iter()
            .all(|j| j["schedule"].is_string() && j["nextRunAt"].is_string()),
        "{s}"
    );
    assert_eq!(s["deadLetters"]["invalid_channel"], 1, "{s}");
    assert_eq!(s["consumer"]["pending"], 3, "{s}");
    assert_eq!(s["consumer"]["ackPending"], 0, "{s}");
    assert!(s["sizeBytes"].as_u64().unwrap() > 0, "{s}");

    // NATS gone too: the database's part still answers, the lag says why it is missing.
    nats.kill();
    let s = status(&app);
    assert_eq!(s["jobs"].as_array().unwrap().len(), 10);
    assert!(s["consumer"]["pending"].is_null(), "{s}");
    assert!(s["consumer"]["error"].is_string(), "{s}");
    let out = cli(&app.config_path(), &["status"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("consumer") && text.contains("unknown"),
        "{text}"
    );
}

/// Every log line names its instance (`service.instance`), so the logs of several
/// instances stay apart once collected together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_log_line_names_its_instance() {
    let nats = NatsServer::start();
    let mut app = App::start(&nats.url(), "service:\n  instance: east-1\n");
    let js = nats.jetstream().await;
    publish_all(&js, message_events("inst", 3)).await;
    wait_until(WAIT, "stored", || async { app.event_count().await == 3 }).await;
    assert!(app.terminate().success());
    let log = app.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 3, "{log}");
    assert!(lines.iter().all(|l| l.starts_with("[east-1] ")), "{log}");
}

/// `LOG_FORMAT=json`: every line one JSON object with its level, message and instance,
/// the start-up line's fields among them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_format_json_writes_one_object_per_line() {
    let nats = NatsServer::start();
    let mut app = App::prepare(&nats.url(), "service:\n  instance: west-2\n", None);
    app.set_env("LOG_FORMAT", "json");
    app.restart();
    publish_all(&nats.jetstream().await, message_events("json", 3)).await;
    wait_until(WAIT, "stored", || async { app.event_count().await == 3 }).await;
    assert!(app.terminate().success());
    let log = app.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines.len() >= 3, "{log}");
    for line in &lines {
        assert_eq!(line["pipeline_instance"], "west-2", "{line}");
        assert!(
            line["level"].is_string() && line["timestamp"].is_string(),
            "{line}"
        );
    }
    let start = lines
        .iter()
        .find(|l| l["fields"]["message"] == "butler-analytics running")
        .unwrap_or_else(|| panic!("{log}"));
    assert_eq!(start["fields"]["instance"], "west-2", "{start}");
    assert!(start["fields"]["metrics"].is_string(), "{start}");
    assert!(
        lines.iter().any(|l| l["fields"]["message"] == "stopped"),
        "{log}"
    );
}

/// Retention end to end: `cleanup` by hand deletes what a shorter retention puts past
/// its cutoff, with the tallies of those hours; the scheduled cleanup does the same by
/// itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_by_hand_and_on_its_schedule_deletes_what_is_past_retention() {
    let nats = NatsServer::start();
    let mut app = App::start(
        &nats.url(),
        "retention:\n  raw_events: 36500\nservice:\n  aggregator: false\n",
    );
    let days_ago = |d: i64| (chrono::Utc::now() - chrono::Duration::days(d)).to_rfc3339();
    let event = |id: &str, d: i64| {
        (
            "butler.events.message.received".to_owned(),
            serde_json::to_vec(&serde_json::json!({
                "id": id, "propertyId": "p_ret", "channel": "sms", "timestamp": days_ago(d)
            }))
            .unwrap(),
        )
    };
    publish_all(
        &nats.jetstream().await,
        vec![
            event("old-1", 40),
            event("old-2", 20),
            event("new-1", 2),
            event("new-2", 0),
        ],
    )
    .await;
    wait_until(WAIT, "stored", || async { app.event_count().await == 4 }).await;
    assert!(app.terminate().success());
    let db = app.db().await;
    let ids = || async {
        db.strings("SELECT id FROM analytics_events ORDER BY id")
            .await
    };
    let tallied = || async {
        db.count("SELECT CAST(coalesce(sum(events), 0) AS BIGINT) FROM event_tallies_hour")
            .await
    };
    assert_eq!(tallied().await, 4);

    // By hand, with a 30-day retention: the 40-day-old event goes, with its tally.
    let thirty = ("BUTLER_ANALYTICS__RETENTION__RAW_EVENTS", "30");
    let out = cli(&app.config_path(), &["cleanup", "--json"], &[thirty]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(said["deleted"]["analytics_events"], 1, "{said}");
    assert_eq!(ids().await, ["new-1", "new-2", "old-2"]);
    assert_eq!(tallied().await, 3);

    // On its schedule, with a 10-day retention: the 20-day-old one goes by itself.
    let config = std::fs::read_to_string(app.config_path())
        .unwrap()
        .replace("raw_events: 36500", "raw_events: 10")
        .replace("aggregator: false", "aggregator: true")
        + "aggregation:\n  schedules: {retention_cleanup: '*/2 * * * * *'}\n";
    std::fs::write(app.config_path(), config).unwrap();
    app.restart();
    // The run deletes the events, then their hours' tallies.
    wait_until(WAIT, "the scheduled cleanup", || async {
        ids().await == ["new-1", "new-2"] && tallied().await == 2
    })
    .await;
    db.close().await;
}

/// Bounded live state end to end: `cleanup` prunes the conversations resolved, staff
/// offline and tasks completed longer ago than `retention.live_state`, never what
/// still counts; late events of pruned keys then leave the dashboard's counts as they
/// would have been without pruning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_prunes_finished_live_state_and_the_counts_stay_exact() {
    let nats = NatsServer::start();
    let mut app = App::start(
        &nats.url(),
        "retention:\n  raw_events: 36500\ncache:\n  enabled: false\nservice:\n  aggregator: false\n",
    );
    let js = nats.jetstream().await;
    let days_ago = |d: i64| (chrono::Utc::now() - chrono::Duration::days(d)).to_rfc3339();
    let event = |id: &str, kind: &str, d: i64, extra: serde_json::Value| {
        let mut body = serde_json::json!({
            "id": id, "propertyId": "p_live", "timestamp": days_ago(d), "channel": "sms"
        });
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        (
            format!("butler.events.{kind}"),
            serde_json::to_vec(&body).unwrap(),
        )
    };
    let c = |id: &str| serde_json::json!({"conversationId": id, "guestId": "g"});
    let s = serde_json::json!({"staffId": "s1"});
    let t = serde_json::json!({"taskId": "t1"});
    publish_all(
        &js,
        vec![
            event("a1", "conversation.started", 30, c("c_done")),
            event("a2", "conversation.resolved", 20, c("c_done")),
            event("b1", "conversation.started", 20, c("c_open")),
            event("f1", "conversation.started", 3, c("c_recent")),
            event("f2", "conversation.closed", 2, c("c_recent")),
            event("s1", "staff.login", 14, s.clone()),
            event("s2", "staff.logout", 12, s.clone()),
            event("t1", "task.created", 16, t.clone()),
            event("t2", "task.completed", 15, t.clone()),
        ],
    )
    .await;
    wait_until(WAIT, "stored", || async { app.event_count().await == 9 }).await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let counts = || async {
        let reply = crate::helpers::request(
            &client,
            "analytics.query.dashboard",
            r#"{"propertyId": "p_live"}"#,
        )
        .await;
        let d: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
        (
            d["activeConversations"].as_i64(),
            d["staffOnline"].as_i64(),
            d["pendingTasks"].as_i64(),
        )
    };
    assert_eq!(counts().await, (Some(1), Some(0), Some(0)));
    assert!(app.terminate().success());

    let out = cli(&app.config_path(), &["cleanup", "--json"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The seven-day default: the recent closed conversation and the open one stay.
    for (table, n) in [
        ("live_conversations", 1),
        ("live_staff", 1),
        ("live_tasks", 1),
    ] {
        assert_eq!(said["deleted"][table], n, "{table}: {said}");
    }
    let db = app.db().await;
    assert_eq!(
        db.strings("SELECT conversation_id FROM live_conversations ORDER BY 1")
            .await,
        ["c_open", "c_recent"]
    );
    db.close().await;

    // Late events of the pruned keys, each older than what pruned them: an escalation
    // before the resolution, a login before the logout, and a second creation of the
    // completed task.
    app.restart();
    publish_all(
        &js,
        vec![
            event("a3", "conversation.escalated", 25, c("c_done")),
            event("s3", "staff.login", 13, s),
            event("t3", "task.created", 1, t),
        ],
    )
    .await;
    wait_until(WAIT, "the late events stored", || async {
        app.event_count().await == 12
    })
    .await;
    assert_eq!(counts().await, (Some(1), Some(0), Some(0)));
}

/// Without `service.instance` the instance is the host name as gethostname(2) gives it
/// (`uname -n`): read from uname(2), which the shipped unit's `ProcSubset=pid` leaves
/// alone, not from `/proc/sys/kernel/hostname`, which it hides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_instance_is_the_host_name_by_default() {
    let nats = NatsServer::start();
    let app = App::start(&nats.url(), "");
    let out = std::process::Command::new("uname")
        .arg("-n")
        .output()
        .unwrap();
    let host = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(!host.is_empty());
    let log = app.log();
    assert!(
        log.contains(&format!("[{host}] ")) && log.contains(&format!(" instance={host} ")),
        "{log}"
    );
}

/// Under the shipped systemd unit, `ProcSubset=pid` hides `/proc/sys`, where the host
/// name is also read from: the unit's /proc is made here the way systemd makes it (a
/// mount namespace with /proc mounted `subset=pid`; this machine's PID 1 is not
/// systemd, so `systemd-run` cannot), and the instance is still the host name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_instance_is_the_host_name_under_the_units_proc_subset() {
    let nats = NatsServer::start();
    let app = App::prepare(&nats.url(), "", None);
    let host = String::from_utf8(
        std::process::Command::new("uname")
            .arg("-n")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_owned();
    let log = tempfile::NamedTempFile::new().unwrap();
    let script = format!(
        "mount -t proc -o subset=pid proc /proc && test ! -e /proc/sys/kernel/hostname && \
         exec {bin} --config {config} run",
        bin = crate::helpers::pipeline_bin().display(),
        config = app.config_path().display(),
    );
    let mut unit = std::process::Command::new("unshare")
        .args([
            "--mount",
            "--pid",
            "--fork",
            "--mount-proc",
            "--kill-child=SIGTERM",
        ])
        .args(["sh", "-c", &script])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .expect("unshare (util-linux) runs the pipeline as the unit would");
    let logged = || std::fs::read_to_string(log.path()).unwrap_or_default();
    wait_until(
        WAIT,
        "the pipeline running under ProcSubset=pid",
        || async { logged().contains("butler-analytics running") },
    )
    .await;
    let _ = unit.kill();
    let _ = unit.wait();
    let text = logged();
    assert!(
        text.contains(&format!("[{host}] ")) && text.contains(&format!(" instance={host} ")),
        "{text}"
    );
}
