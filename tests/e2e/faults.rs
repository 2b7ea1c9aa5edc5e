//! Faults during ingest: a killed pipeline, a restarted NATS server, a busy database,
//! a shutdown. Nothing acked is lost; nothing is stored twice.

use std::collections::HashSet;
use std::time::Duration;

use crate::helpers::{
    App, NatsServer, consumer_info, message_events, publish_all, try_consumer_info, wait_until,
};

const WAIT: Duration = Duration::from_secs(120);

async fn stored_ids(app: &App) -> HashSet<String> {
    let db = app.db().await;
    let ids = db.strings("SELECT id FROM analytics_events").await;
    db.close().await;
    ids.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_ingest_then_restart_stores_exactly_50000() {
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    let all = message_events("k", 50_000);
    publish_all(&js, all[..20_000].to_vec()).await;
    let mut app = App::start(
        &nats.url(),
        // Small batches: many commits, so the kill lands between two of them.
        "nats:\n  ack_wait_ms: 2000\ningest:\n  batch_size: 20\n",
    );
    wait_until(WAIT, "ingest under way", || async {
        app.event_count().await >= 1000
    })
    .await;
    // The rest arrives while another writer holds the pipeline's commits back, so
    // batches are delivered and cannot be acked; the kill comes then, whatever the
    // machine's speed, and the lock goes with it.
    let mut lock = app.hold_commits().await;
    publish_all(&js, all[20_000..].to_vec()).await;
    wait_until(WAIT, "deliveries waiting on the held commit", || async {
        consumer_info(&js).await.num_ack_pending > 0
    })
    .await;
    app.kill9();
    lock.release().await;
    let at_kill = app.event_count().await;
    assert!(
        at_kill < 50_000,
        "the kill came too late to test anything ({at_kill} stored)"
    );
    // Messages delivered to the killed process and never acked: the restarted one
    // can only store them by a redelivery.
    let unacked = consumer_info(&js).await.num_ack_pending;
    assert!(unacked > 0, "no delivery was in flight at the kill");

    app.restart();
    wait_until(WAIT, "50,000 events", || async {
        app.event_count().await >= 50_000
    })
    .await;
    wait_until(WAIT, "every message acked", || async {
        try_consumer_info(&js)
            .await
            .is_some_and(|info| info.num_pending == 0 && info.num_ack_pending == 0)
    })
    .await;
    let ids = stored_ids(&app).await;
    let expected: HashSet<String> = (0..50_000).map(|i| format!("k-{i:06}")).collect();
    assert_eq!(ids, expected, "none lost");
    assert_eq!(app.event_count().await, 50_000, "none doubled");
    derived_state_matches_the_events(&app).await;
}

/// What ingest keeps beside the events — hour tallies, the dirty hours the
/// aggregator reads — holds exactly what the stored events imply:
/// a batch committed twice, or half of one, would show here.
async fn derived_state_matches_the_events(app: &App) {
    let db = app.db().await;
    let per_type = |sql: &'static str| {
        let db = &db;
        async move {
            let mut rows: Vec<(String, i64)> = db
                .rows(sql)
                .await
                .into_iter()
                .map(|r| (r[0].as_str().unwrap().to_owned(), r[1].as_i64().unwrap()))
                .collect();
            rows.sort();
            rows
        }
    };
    let raw =
        per_type("SELECT event_type, count(*) FROM analytics_events GROUP BY event_type").await;
    let tallied = per_type(
        "SELECT event_type, CAST(sum(events) AS BIGINT) FROM event_tallies_hour GROUP BY event_type",
    )
    .await;
    assert!(!raw.is_empty());
    assert_eq!(
        tallied, raw,
        "the hour tallies count every stored event once"
    );
    let hours = db
        .count(
            "SELECT count(*) FROM (SELECT DISTINCT property_id, hour FROM event_tallies_hour) AS t",
        )
        .await;
    let dirty = db
        .count("SELECT count(*) FROM (SELECT DISTINCT property_id, hour_start FROM agg_dirty_hours) AS t")
        .await;
    assert_eq!(dirty, hours, "a dirty hour for each hour with events");
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restart_mid_ingest_loses_nothing() {
    let mut nats = NatsServer::start();
    let js = nats.jetstream().await;
    let all = message_events("n", 30_000);
    publish_all(&js, all[..10_000].to_vec()).await;
    let app = App::start(
        &nats.url(),
        "nats:\n  ack_wait_ms: 2000\ningest:\n  batch_size: 20\n",
    );
    wait_until(WAIT, "ingest under way", || async {
        app.event_count().await >= 500
    })
    .await;
    // Hold commits back while the rest arrives, so whatever the pipeline fetches of it
    // is still uncommitted when NATS dies, however fast commits are.
    let mut lock = app.hold_commits().await;
    publish_all(&js, all[10_000..].to_vec()).await;
    wait_until(WAIT, "messages fetched and held uncommitted", || async {
        consumer_info(&js).await.delivered.stream_sequence as i64 > app.event_count().await
    })
    .await;
    nats.kill();
    let at_kill = app.event_count().await;
    assert!(
        at_kill <= 10_000,
        "nothing of the rest commits under the lock"
    );
    lock.release().await;
    // With NATS gone, the batches in hand commit; their acks cannot be sent.
    wait_until(WAIT, "the batches in hand committed", || async {
        app.event_count().await > at_kill
    })
    .await;
    nats.restart();
    wait_until(WAIT, "30,000 events after the restart", || async {
        app.event_count().await >= 30_000
    })
    .await;
    let ids = stored_ids(&app).await;
    assert_eq!(ids.len(), 30_000);
    let expected: HashSet<String> = (0..30_000).map(|i| format!("n-{i:06}")).collect();
    assert_eq!(ids, expected, "none lost");
    let js = nats.jetstream().await;
    wait_until(WAIT, "every message acked", || async {
        try_consumer_info(&js)
            .await
            .is_some_and(|info| info.num_pending == 0 && info.num_ack_pending == 0)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_consumer_is_recreated_and_nothing_is_lost_or_doubled() {
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    publish_all(&js, message_events("d", 20_000)).await;
    let app = App::start(&nats.url(), "ingest:\n  batch_size: 200\n");
    wait_until(WAIT, "ingest under way", || async {
        app.event_count().await >= 500
    })
    .await;
    let stream = js.get_stream("BUTLER_EVENTS").await.unwrap();
    // Older nats-server releases (2.9 among them) can fail a consumer deletion with
    // "directory not empty" while the consumer writes its state (nats-server#7886): an
    // operator tries again, and so does the test, until the consumer is gone.
    let mut attempts = 0;
    while let Err(err) = stream.delete_consumer("analytics-pipeline").await {
        attempts += 1;
        let gone = try_consumer_info(&js).await.is_none();
        assert!(attempts < 20, "the consumer could not be deleted: {err}");
        if gone {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_until(WAIT, "the pull subscription to be rebuilt", || async {
        app.metric("butler_analytics_ingest_stream_restarts_total") >= 1.0
    })
    .await;
    // The new consumer starts from the beginning of the stream: dedup absorbs it.
    wait_until(WAIT, "every message acked by the new consumer", || async {
        try_consumer_info(&js).await.is_some_and(|info| {
            info.num_pending == 0
                && info.num_ack_pending == 0
                && info.ack_floor.stream_sequence == 20_000
        })
    })
    .await;
    assert_eq!(stored_ids(&app).await.len(), 20_000);
    assert!(
        app.metric(r#"butler_analytics_events_duplicate_total{event_type="message.received"}"#)
            > 0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_reader_and_a_brief_write_lock_lose_nothing() {
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    let mut app = App::start(
        &nats.url(),
        "ingest:\n  batch_size: 200\nstorage:\n  busy_timeout_ms: 500\n",
    );

    // A dashboard holding a read transaction (one snapshot) for the whole ingest.
    let mut reader = Snapshot::begin(&app).await;
    assert_eq!(reader.count().await, 0);

    let all = message_events("r", 20_000);
    publish_all(&js, all[..10_000].to_vec()).await;
    wait_until(WAIT, "ingest under way", || async {
        app.event_count().await >= 1000
    })
    .await;

    // Another process holds the pipeline's commits back for two seconds, longer than
    // its busy timeout: on SQLite its commits fail busy and are retried, on
    // PostgreSQL they wait.
    let mut writer = app.hold_commits().await;
    // The second half arrives while the lock is held, so a commit has to wait for it.
    publish_all(&js, all[10_000..].to_vec()).await;
    wait_until(WAIT, "a commit to feel the lock", || async {
        if app.on_postgres() {
            let db = app.db().await;
            let waiting = db
                .count("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
                .await;
            db.close().await;
            waiting > 0
        } else {
            app.metric("butler_analytics_ingest_commit_retries_total") >= 1.0
        }
    })
    .await;
    writer.release().await;

    wait_until(WAIT, "20,000 events", || async {
        app.event_count().await >= 20_000
    })
    .await;
    assert_eq!(
        reader.count().await,
        0,
        "the reader kept its snapshot throughout"
    );
    reader.end().await;
    assert_eq!(stored_ids(&app).await.len(), 20_000);
    assert!(app.is_running(), "no crash");
    if !app.on_postgres() {
        assert!(
            app.metric("butler_analytics_ingest_commit_retries_total") >= 1.0,
            "the lock was felt and retried"
        );
    }
    assert_eq!(app.get("/healthz").map(|(s, _)| s), Some(200));
}

/// SIGTERM or SIGINT mid-ingest: exit 0 by the clean path, every acked event stored,
/// and nothing delivered left unacked (the ack floor reaches the last delivery).
async fn a_signal_mid_ingest_stops_cleanly(signal: libc::c_int) {
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    // No ids: each event's id is evt_BUTLER_EVENTS_<stream sequence>.
    let payload = br#"{"propertyId":"prop_term","channel":"email"}"#.to_vec();
    let messages = |n: usize| -> Vec<(String, Vec<u8>)> {
        (0..n)
            .map(|_| ("butler.events.message.received".to_owned(), payload.clone()))
            .collect()
    };
    let mut seqs = publish_all(&js, messages(10_000)).await;
    let mut app = App::start(
        &nats.url(),
        "ingest:\n  batch_size: 250\nstorage:\n  busy_timeout_ms: 30000\n",
    );
    wait_until(WAIT, "ingest under way", || async {
        app.event_count().await >= 1000
    })
    .await;
    // The signal comes while batches are in hand and their commit waits for another
    // writer, however fast ingest is: the shutdown must commit them, not drop them.
    let mut lock = app.hold_commits().await;
    seqs.extend(publish_all(&js, messages(20_000)).await);
    wait_until(WAIT, "messages fetched and held uncommitted", || async {
        consumer_info(&js).await.delivered.stream_sequence as i64 > app.event_count().await
    })
    .await;
    let at_signal = app.event_count().await;
    app.signal(signal);
    wait_until(WAIT, "the shutdown to begin", || async {
        app.log().contains("shutting down: committing and acking")
    })
    .await;
    lock.release().await;
    let status = app.wait_exit(signal);
    assert_eq!(status.code(), Some(0), "{}", app.log());
    assert!(
        app.event_count().await > at_signal,
        "the batch in hand at the signal was committed"
    );

    // Every message the pipeline took in hand was committed and acked: what is stored
    // is exactly what was acked. Left unacked (and redelivered later) are only the
    // messages still on their way from the server, at most one pull batch. The last
    // acks were flushed before the exit; the server may still be reading them from
    // the closed connection when the test asks, so the test waits for them.
    let stored = app.event_count().await as u64;
    let mut info = consumer_info(&js).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while stored != info.delivered.stream_sequence - info.num_ack_pending as u64
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
        info = consumer_info(&js).await;
    }
    let floor = info.ack_floor.stream_sequence;
    assert!(floor >= 1000, "{info:?}");
    let delivered = info.delivered.stream_sequence;
    assert_eq!(
        stored,
        delivered - info.num_ack_pending as u64,
        "stored = delivered - unacked: {info:?}"
    );
    assert!(info.num_ack_pending <= 250, "{info:?}");
    let ids = stored_ids(&app).await;
    for seq in seqs.iter().filter(|s| **s <= floor) {
        assert!(
            ids.contains(&format!("evt_BUTLER_EVENTS_{seq}")),
            "acked sequence {seq} is not stored"
        );
    }
    let log = app.log();
    assert!(
        log.contains("shutting down: committing and acking"),
        "{log}"
    );
    assert!(log.contains("stopped"), "{log}");
    assert!(!log.contains("uncommitted batch"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_ingest_exits_zero_with_every_acked_event_stored() {
    a_signal_mid_ingest_stops_cleanly(libc::SIGTERM).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_mid_ingest_exits_zero_with_every_acked_event_stored() {
    a_signal_mid_ingest_stops_cleanly(libc::SIGINT).await;
}

/// A read transaction on one snapshot of the pipeline's database.
enum Snapshot {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl Snapshot {
    async fn begin(app: &App) -> Snapshot {
        match app.postgres_url() {
            Some(url) => {
                let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url)
                    .await
                    .unwrap();
                sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ")
                    .execute(&mut conn)
                    .await
                    .unwrap();
                Snapshot::Postgres(conn)
            }
            None => {
                let options = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(app.db_path())
                    .read_only(true);
                let mut conn = sqlx::ConnectOptions::connect(&options).await.unwrap();
                sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
                Snapshot::Sqlite(conn)
            }
        }
    }

    async fn count(&mut self) -> i64 {
        let sql = "SELECT count(*) FROM analytics_events";
        match self {
            Snapshot::Sqlite(conn) => sqlx::query_scalar(sql).fetch_one(conn).await.unwrap(),
            Snapshot::Postgres(conn) => sqlx::query_scalar(sql).fetch_one(conn).await.unwrap(),
        }
    }

    async fn end(self) {
        match self {
            Snapshot::Sqlite(mut conn) => {
                sqlx::query("COMMIT").execute(&mut conn).await.unwrap();
            }
            Snapshot::Postgres(mut conn) => {
                sqlx::query("COMMIT").execute(&mut conn).await.unwrap();
            }
        }
    }
}

/// SIGTERM while the commit of the batch in hand cannot go through (another writer
/// holds the database and never lets go): the process exits once `shutdown.grace_s`
/// has passed, leaving that batch unacked and unstored, and the next process stores
/// every event once, hour tallies included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_held_past_the_shutdown_grace_is_left_to_the_next_process() {
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    let mut app = App::start(
        &nats.url(),
        "shutdown:\n  grace_s: 1\nnats:\n  ack_wait_ms: 2000\ningest:\n  batch_size: 100\n",
    );
    publish_all(&js, message_events("g", 1000)).await;
    wait_until(WAIT, "the first thousand stored", || async {
        app.event_count().await == 1000
    })
    .await;
    let mut lock = app.hold_commits().await;
    publish_all(&js, message_events("h", 500)).await;
    wait_until(WAIT, "messages fetched and held uncommitted", || async {
        consumer_info(&js).await.delivered.stream_sequence > 1000
    })
    .await;
    app.signal(libc::SIGTERM);
    // The lock is never released while the process runs: only the grace ends it.
    let status = app.wait_exit(libc::SIGTERM);
    let log = app.log();
    assert!(
        log.contains("uncommitted batch after shutdown.grace_s") && log.contains("grace_s=1"),
        "{log}"
    );
    assert_eq!(status.code(), Some(0), "{log}");
    lock.release().await;
    assert_eq!(
        app.event_count().await,
        1000,
        "the held batch was not stored"
    );
    let info = consumer_info(&js).await;
    assert!(
        info.num_ack_pending > 0,
        "the held batch is unacked: {info:?}"
    );

    app.restart();
    wait_until(WAIT, "every event stored", || async {
        app.event_count().await == 1500
    })
    .await;
    let expected: HashSet<String> = (0..1000)
        .map(|i| format!("g-{i:06}"))
        .chain((0..500).map(|i| format!("h-{i:06}")))
        .collect();
    assert_eq!(stored_ids(&app).await, expected);
    let db = app.db().await;
    let tallied = db
        .count("SELECT CAST(sum(events) AS BIGINT) FROM event_tallies_hour")
        .await;
    db.close().await;
    assert_eq!(tallied, 1500, "each event tallied once");
}
