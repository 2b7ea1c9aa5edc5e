//! Several instances on one database and one durable consumer, a NATS cluster, and
//! faults beside them (CONTRACT §6). Each test ends with the exact set of events
//! stored once and aggregate tables equal to those of one undisturbed instance.

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;

use crate::aggregation::{Ev, aggregate_tables, config, dataset, payload, settle};
use crate::helpers::{
    App, NatsCluster, NatsServer, publish_all, request, try_consumer_info, wait_until,
};

const WAIT: Duration = Duration::from_secs(120);

/// Events of each test: a few tens of thousands, over four days of three properties.
const EVENTS: usize = 20_000;

/// Aggregate tables: (table, rows in one order).
type Tables = Vec<(&'static str, Vec<Vec<Value>>)>;

/// The messages of `events`, each on its event type's subject.
fn messages(events: &[Ev]) -> Vec<(String, Vec<u8>)> {
    events
        .iter()
        .map(|e| (format!("butler.events.{}", e.event_type), payload(e)))
        .collect()
}

/// The aggregate tables one undisturbed instance computes from `events`, on a NATS
/// server and a database of its own.
async fn undisturbed(events: &[Ev]) -> Tables {
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    publish_all(&js, messages(events)).await;
    let mut app = App::start(&nats.url(), &config());
    wait_until(WAIT, "the undisturbed run stored everything", || async {
        app.event_count().await == events.len() as i64
    })
    .await;
    assert!(app.terminate().success());
    settle(&app.config_path());
    aggregate_tables(&app).await
}

/// Asserts that `app`'s database holds each of `events` exactly once.
async fn assert_each_event_once(app: &App, events: &[Ev]) {
    let db = app.db().await;
    let ids = db.strings("SELECT id FROM analytics_events").await;
    db.close().await;
    assert_eq!(ids.len(), events.len(), "none doubled");
    let stored: HashSet<String> = ids.into_iter().collect();
    let expected: HashSet<String> = events.iter().map(|e| e.id.clone()).collect();
    assert_eq!(stored, expected, "none lost");
}

/// Waits until the durable consumer has nothing pending or unacked.
async fn wait_drained(js: &async_nats::jetstream::Context) {
    wait_until(WAIT, "every message acked", || async {
        try_consumer_info(js)
            .await
            .is_some_and(|info| info.num_pending == 0 && info.num_ack_pending == 0)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_one_killed_mid_ingest_store_each_event_once() {
    let events = dataset(EVENTS);
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    // Small batches and a short ack wait: many commits for the kill to land between,
    // and the killed instance's messages soon redelivered to the others.
    let extra = format!(
        "nats:\n  ack_wait_ms: 2000\ningest:\n  batch_size: 50\n{}",
        config()
    );
    let first = App::start(&nats.url(), &extra);
    let shared = format!("{}{extra}", first.shared_storage());
    let mut second = App::start(&nats.url(), &shared);
    let mut third = App::start(&nats.url(), &shared);
    let all = messages(&events);
    publish_all(&js, all[..5_000].to_vec()).await;
    wait_until(WAIT, "ingest under way", || async {
        first.event_count().await >= 500
    })
    .await;
    // The rest arrives while the commits of all three are held back; the kill
    // follows the release at once, while hundreds of commits remain to do.
    let mut lock = first.hold_commits().await;
    publish_all(&js, all[5_000..].to_vec()).await;
    lock.release().await;
    second.kill9();
    let at_kill = first.event_count().await;
    assert!(
        at_kill < EVENTS as i64,
        "the kill came too late to test anything ({at_kill} stored)"
    );

    wait_until(WAIT, "every event stored", || async {
        first.event_count().await >= EVENTS as i64
    })
    .await;
    wait_drained(&js).await;
    assert_each_event_once(&first, &events).await;

    // Restarted later, it joins the others; queries are spread over the queue group.
    second.restart();
    let client = async_nats::connect(nats.url()).await.unwrap();
    for _ in 0..60 {
        request(
            &client,
            "analytics.query.dashboard",
            r#"{"propertyId":"p_utc","asOf":"2026-11-02T12:00:00Z"}"#,
        )
        .await;
    }
    let served = || {
        [&first, &second, &third]
            .iter()
            .map(|app| {
                app.metric(
                    "butler_analytics_query_requests_total{endpoint=\"analytics.query.dashboard\"}",
                )
            })
            .collect::<Vec<f64>>()
    };
    wait_until(WAIT, "60 requests counted", || async {
        served().iter().sum::<f64>() == 60.0
    })
    .await;
    let served = served();
    assert!(
        served.iter().filter(|n| **n > 0.0).count() >= 2,
        "requests spread over the instances: {served:?}"
    );

    for app in [&mut second, &mut third] {
        assert!(app.terminate().success());
    }
    let mut first = first;
    assert!(first.terminate().success());
    settle(&first.config_path());
    assert_eq!(aggregate_tables(&first).await, undisturbed(&events).await);
}

/// Publishes `events` through a cluster whose servers may die meanwhile: each batch
/// is sent again until every message of it is acked, with the event's id as
/// `Nats-Msg-Id`, so that the stream keeps one copy of a message sent twice. A round
/// that fails or stalls (a client can stay stuck on the connection its server lost)
/// is sent again on a fresh connection, as a publisher would; three minutes without
/// a batch through fails the test.
async fn publish_through_faults(cluster: &NatsCluster, events: &[Ev]) {
    let mut js = async_nats::jetstream::new(cluster.client().await);
    for batch in events.chunks(500) {
        let deadline = std::time::Instant::now() + Duration::from_secs(180);
        loop {
            let round = tokio::time::timeout(Duration::from_secs(20), publish_round(&js, batch));
            if round.await == Ok(true) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the cluster took no batch for three minutes"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            js = async_nats::jetstream::new(cluster.client().await);
        }
    }
}

/// Sends one batch; whether every message of it was acked.
async fn publish_round(js: &async_nats::jetstream::Context, batch: &[Ev]) -> bool {
    let mut acks = Vec::with_capacity(batch.len());
    for e in batch {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", e.id.as_str());
        let subject = format!("butler.events.{}", e.event_type);
        match js
            .publish_with_headers(subject, headers, Bytes::from(payload(e)))
            .await
        {
            Ok(ack) => acks.push(ack),
            Err(_) => return false,
        }
    }
    let mut acked = true;
    for ack in acks {
        acked &= ack.await.is_ok();
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_leader_killed_mid_ingest_loses_nothing() {
    let events = dataset(EVENTS);
    let mut cluster = NatsCluster::start();
    let js = cluster.jetstream().await;
    let extra = format!(
        "nats:\n  stream_replicas: 3\n  ack_wait_ms: 2000\ningest:\n  batch_size: 50\n{}",
        config()
    );
    // The pipeline creates the stream, in three replicas.
    let mut app = App::start(&cluster.url(), &extra);
    // Every server learns of the new stream within a moment.
    wait_until(WAIT, "the stream known to the cluster", || async {
        js.get_stream("BUTLER_EVENTS").await.is_ok()
    })
    .await;
    let mut stream = js.get_stream("BUTLER_EVENTS").await.unwrap();
    assert_eq!(stream.info().await.unwrap().config.num_replicas, 3);
    publish_through_faults(&cluster, &events[..5_000]).await;
    wait_until(WAIT, "ingest under way", || async {
        app.event_count().await >= 500
    })
    .await;
    let mut lock = app.hold_commits().await;
    let leader = cluster.stream_leader(&js).await;
    cluster.servers[leader].kill();
    // The rest is published while the cluster elects another leader.
    publish_through_faults(&cluster, &events[5_000..]).await;
    lock.release().await;
    let at_release = app.event_count().await;
    assert!(
        at_release < EVENTS as i64,
        "the fault came too late to test anything ({at_release} stored)"
    );
    wait_until(WAIT, "every event stored", || async {
        app.event_count().await >= EVENTS as i64
    })
    .await;
    wait_drained(&js).await;
    cluster.servers[leader].restart();
    assert_each_event_once(&app, &events).await;
    assert!(app.terminate().success());
    settle(&app.config_path());
    assert_eq!(aggregate_tables(&app).await, undisturbed(&events).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_aggregators_due_at_once_run_each_job_one_at_a_time() {
    let events = dataset(EVENTS);
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    publish_all(&js, messages(&events)).await;
    let mut ingest = App::start(&nats.url(), &config());
    wait_until(WAIT, "every event stored", || async {
        ingest.event_count().await == EVENTS as i64
    })
    .await;
    assert!(ingest.terminate().success());

    // Two instances with aggregators, started together: each start runs every due
    // job at once, so both want the same jobs at the same moment.
    let both = format!(
        "{}{}",
        ingest.shared_storage(),
        config().replace("aggregator: false", "aggregator: true")
    );
    let mut one = App::prepare(&nats.url(), &both, None);
    let mut two = App::prepare(&nats.url(), &both, None);
    one.spawn();
    two.spawn();
    one.wait_ready();
    two.wait_ready();
    let db = ingest.db().await;
    wait_until(WAIT, "every job's start-up run", || async {
        db.count(
            "SELECT count(DISTINCT job) FROM agg_job_runs WHERE trigger = 'startup' AND error IS NULL",
        )
        .await
            == 10
    })
    .await;
    assert_eq!(
        db.count("SELECT count(*) FROM agg_pending_buckets").await,
        0,
        "nothing left to recompute"
    );
    // No two runs of one job overlap.
    let runs = db
        .rows("SELECT job, started_at, finished_at FROM agg_job_runs")
        .await;
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    for (i, a) in runs.iter().enumerate() {
        for b in &runs[i + 1..] {
            let apart = text(&a[2]) <= text(&b[1]) || text(&b[2]) <= text(&a[1]);
            assert!(
                a[0] != b[0] || apart,
                "runs of one job overlap: {a:?} and {b:?}"
            );
        }
    }
    db.close().await;
    assert!(one.terminate().success());
    assert!(two.terminate().success());
    settle(&ingest.config_path());
    assert_eq!(aggregate_tables(&ingest).await, undisturbed(&events).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cut_mid_commit_loses_nothing() {
    let events = dataset(EVENTS);
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    let mut app = App::start(
        &nats.url(),
        &format!("ingest:\n  batch_size: 50\n{}", config()),
    );
    let Some(url) = app.postgres_url().map(str::to_owned) else {
        // A connection to cut is PostgreSQL's; SQLite has none.
        return;
    };
    let all = messages(&events);
    publish_all(&js, all[..5_000].to_vec()).await;
    wait_until(WAIT, "ingest under way", || async {
        app.event_count().await >= 500
    })
    .await;
    // The next commit waits on the held row; its connection is then cut.
    let mut lock = app.hold_commits().await;
    publish_all(&js, all[5_000..].to_vec()).await;
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    let waiting = "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
                   AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()";
    wait_until(WAIT, "a commit waiting on the held row", || async {
        !sqlx::query_scalar::<_, i32>(waiting)
            .fetch_all(&admin)
            .await
            .unwrap()
            .is_empty()
    })
    .await;
    let cut: Vec<bool> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT pg_terminate_backend(pid) FROM ({waiting}) AS w"
    )))
    .fetch_all(&admin)
    .await
    .unwrap();
    assert!(cut.iter().all(|c| *c) && !cut.is_empty());
    admin.close().await;
    let before = app.event_count().await;
    lock.release().await;
    assert!(
        before < EVENTS as i64,
        "the cut came too late to test anything"
    );
    wait_until(WAIT, "every event stored", || async {
        app.event_count().await >= EVENTS as i64
    })
    .await;
    wait_drained(&js).await;
    assert_each_event_once(&app, &events).await;
    assert!(app.log().contains("terminat"), "the cut is logged");
    assert!(app.terminate().success());
    settle(&app.config_path());
    assert_eq!(aggregate_tables(&app).await, undisturbed(&events).await);
}
