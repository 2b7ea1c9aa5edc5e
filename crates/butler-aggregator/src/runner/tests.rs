use butler_events::{Event, EventTime, EventType};
use butler_storage::{Storage, StorageOptions};
use chrono::{DateTime, Duration, Utc};

use super::*;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// The job named `name`, which the table of jobs holds.
fn job(name: &str) -> Job {
    Job::parse(name).expect("a job of the table")
}

fn ts(t: DateTime<Utc>) -> String {
    EventTime::from_datetime(&t).to_string()
}

fn instant(text: &str) -> EventTime {
    EventTime::from_datetime(&at(text))
}

fn settings(holder: &str) -> AggregatorSettings {
    AggregatorSettings {
        zones: butler_events::Zones::default(),
        raw_retention: Duration::days(36_500),
        holder: holder.into(),
        lease_ttl: std::time::Duration::from_secs(30),
        rules: crate::SharedRules::default(),
    }
}

fn message(id: &str, ts: &str) -> Event {
    Event::new(
        id,
        EventType::MessageReceived,
        EventTime::from_datetime(&at(ts)),
        "p",
    )
    .with_channel("sms")
}

/// Two handles on one file behave like two processes: separate connections, one lease.
#[tokio::test]
async fn two_processes_never_run_the_same_job_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let first = Storage::open(&StorageOptions::new(&path)).await.unwrap();
    let second = Storage::open(&StorageOptions::new(&path)).await.unwrap();
    let now = Utc::now();
    let lease = "aggregate:hourly_message_counts";
    // Another host's process: it cannot be checked, so only its expiry frees it.
    let other = "host-a.elsewhere:1";
    let half_hour = std::time::Duration::from_secs(1800);
    assert!(
        first
            .acquire_lease(lease, other, half_hour)
            .await
            .unwrap()
            .is_ok()
    );

    let b = Aggregator::new(second.clone(), settings(&crate::lease::this_holder()));
    let err = b
        .run_due(job("hourly_message_counts"), Trigger::Schedule, now)
        .await
        .unwrap_err();
    match &err {
        AggregateError::Busy { job, lease } => {
            assert_eq!(*job, "hourly_message_counts");
            assert_eq!(lease.holder, other);
            assert!(
                lease.expires_at >= ts(now + Duration::minutes(29)),
                "{lease:?}"
            );
            assert_eq!(lease, &first.leases().await.unwrap()[0]);
        }
        other => panic!("{other}"),
    }
    // Another job is not held up.
    assert!(
        b.run_due(job("hourly_response_times"), Trigger::Schedule, now)
            .await
            .is_ok()
    );

    first.release_lease(lease, other).await.unwrap();
    assert!(
        b.run_due(job("hourly_message_counts"), Trigger::Schedule, now)
            .await
            .is_ok()
    );

    // A lease left by a process of another host is taken over once it expires.
    assert!(
        first
            .acquire_lease(lease, other, std::time::Duration::ZERO)
            .await
            .unwrap()
            .is_ok()
    );
    assert!(
        b.run_due(job("hourly_message_counts"), Trigger::Schedule, now)
            .await
            .is_ok()
    );

    // One of this host whose process is gone is taken over at once, unexpired.
    let gone = format!(
        "{}:{}",
        crate::lease::this_holder().rsplit_once(':').unwrap().0,
        u32::MAX - 3
    );
    assert!(
        first
            .acquire_lease(lease, &gone, half_hour)
            .await
            .unwrap()
            .is_ok()
    );
    assert!(
        b.run_due(job("hourly_message_counts"), Trigger::Schedule, now)
            .await
            .is_ok()
    );
    assert!(first.leases().await.unwrap().is_empty(), "given back");
}

/// A run longer than its lease keeps it: the lease is renewed while the run goes on,
/// and another process asking meanwhile finds it held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_is_renewed_while_its_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let storage = Storage::open(&StorageOptions::new(&path)).await.unwrap();
    let mut quick = settings("host-a.elsewhere:1");
    quick.lease_ttl = std::time::Duration::from_millis(300);
    let lease = crate::lease::JobLease::acquire(
        &storage,
        "daily_staff_performance",
        &quick.holder,
        quick.lease_ttl,
        None,
    )
    .await
    .unwrap();
    // Three lease periods later, the lease is still this holder's.
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    let other = Aggregator::new(storage.clone(), settings("host-b.elsewhere:2"));
    let err = other
        .run_due(job("daily_staff_performance"), Trigger::Cli, Utc::now())
        .await
        .unwrap_err();
    assert!(matches!(err, AggregateError::Busy { .. }), "{err}");
    assert!(lease.check("daily_staff_performance").is_ok());
    lease.release().await.unwrap();
    assert!(
        other
            .run_due(job("daily_staff_performance"), Trigger::Cli, Utc::now())
            .await
            .is_ok()
    );
}

/// A run's writes go under its lease: a write renews it, and once another process has
/// taken the lease over, a write is refused and changes nothing.
#[tokio::test]
async fn writes_under_a_lease_taken_over_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(&StorageOptions::new(dir.path().join("a.db")))
        .await
        .unwrap();
    let job = job("hourly_message_counts");
    let events = [message("a", "2026-11-25T11:30:00Z")];
    storage.commit_batch(&events, &[]).await.unwrap();
    let stored = storage
        .fetch_agg_events(
            "p",
            instant("2026-11-25T11:00:00.000Z"),
            instant("2026-11-25T12:00:00.000Z"),
            job.event_types(),
        )
        .await
        .unwrap();
    let bucket = PendingBucket {
        property_id: "p".into(),
        period_key: "2026-11-25T11:00:00Z".into(),
        start: instant("2026-11-25T11:00:00.000Z"),
        end: instant("2026-11-25T12:00:00.000Z"),
    };
    let rows = job.compute(&crate::jobs::BucketInput {
        property: "p",
        key: &bucket.period_key,
        events: &stored,
        earliest: &HashMap::new(),
        online_at_start: &std::collections::BTreeSet::new(),
        start_ms: 0,
        end_ms: 0,
        now_ms: 0,
        zone: chrono_tz::UTC,
        rules: &butler_events::business::BusinessRules::default(),
    });
    let write = [(bucket, rows)];
    let now = instant("2026-11-25T12:30:00.000Z");
    let holder = "host-a.elsewhere:1";
    let lease = crate::lease::JobLease::acquire(
        &storage,
        job.name(),
        holder,
        std::time::Duration::from_secs(30),
        None,
    )
    .await
    .unwrap();
    let before = storage.leases().await.unwrap()[0].expires_at.clone();
    let mut fence = lease.fence();
    fence.ttl = std::time::Duration::from_secs(3600);
    storage
        .replace_buckets(job.name(), &write, now, Some(&fence))
        .await
        .unwrap();
    let renewed = storage.leases().await.unwrap()[0].expires_at.clone();
    assert!(renewed > before, "{renewed} after {before}");
    let file = sqlx::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new().filename(storage.path().unwrap()),
    )
    .await
    .unwrap();
    let count = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM agg_message_counts_hourly")
            .fetch_one(&file)
            .await
            .unwrap()
    };
    assert_eq!(count().await, 1);

    let taken = storage
        .take_over_lease(
            &fence.name,
            holder,
            "host-b.elsewhere:2",
            std::time::Duration::from_secs(3600),
        )
        .await
        .unwrap();
    assert!(taken);
    sqlx::query("DELETE FROM agg_message_counts_hourly")
        .execute(&file)
        .await
        .unwrap();
    let err = storage
        .replace_buckets(job.name(), &write, now, Some(&lease.fence()))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::LeaseLost(_)), "{err}");
    assert_eq!(count().await, 0, "nothing written");
    assert_eq!(
        storage.leases().await.unwrap()[0].holder,
        "host-b.elsewhere:2"
    );
}

#[tokio::test]
async fn open_buckets_wait_until_they_close_and_old_buckets_are_never_recomputed() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(&StorageOptions::new(dir.path().join("a.db")))
        .await
        .unwrap();
    let agg = Aggregator::new(
        storage.clone(),
        AggregatorSettings {
            raw_retention: Duration::days(90),
            ..settings("h:1")
        },
    );
    storage
        .commit_batch(&[message("a", "2026-11-25T11:30:00Z")], &[])
        .await
        .unwrap();

    let report = agg
        .run_due(
            job("hourly_message_counts"),
            Trigger::Schedule,
            at("2026-11-25T11:45:00Z"),
        )
        .await
        .unwrap();
    assert_eq!(report.periods_recomputed, 0, "the 11:00 hour is still open");
    let report = agg
        .run_due(
            job("hourly_message_counts"),
            Trigger::Schedule,
            at("2026-11-25T12:00:00Z"),
        )
        .await
        .unwrap();
    assert_eq!(
        (report.periods_recomputed, report.rows_written),
        (1, 1),
        "it closed"
    );
    let report = agg
        .run_due(
            job("hourly_message_counts"),
            Trigger::Schedule,
            at("2026-11-25T13:00:00Z"),
        )
        .await
        .unwrap();
    assert_eq!(report.periods_recomputed, 0, "nothing new");

    // Seen from 91 days later, that hour is past the raw retention: a late event for it
    // queues the bucket, but the run leaves the stored row alone.
    storage
        .commit_batch(&[message("b", "2026-11-25T11:40:00Z")], &[])
        .await
        .unwrap();
    let report = agg
        .run_due(
            job("hourly_message_counts"),
            Trigger::Schedule,
            at("2027-02-24T12:00:00Z"),
        )
        .await
        .unwrap();
    assert_eq!(report.periods_recomputed, 0);
    let statuses = storage.job_statuses().await.unwrap();
    let hourly = statuses
        .iter()
        .find(|s| s.job == "hourly_message_counts")
        .unwrap();
    assert_eq!(hourly.pending_buckets, 0, "the old bucket left the queue");
    assert_eq!(
        hourly.watermark.as_deref(),
        Some("2026-11-25T12:00:00.000Z")
    );
}

/// A run recomputing more buckets than one write holds writes them all, in several
/// transactions, and leaves the queue empty and the watermark at the last bucket.
#[tokio::test]
async fn a_run_of_more_buckets_than_one_write_holds_writes_every_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(&StorageOptions::new(dir.path().join("a.db")))
        .await
        .unwrap();
    let agg = Aggregator::new(storage.clone(), settings("h:1"));
    let start = at("2026-10-01T00:00:00Z");
    let hours = (WRITE_BUCKETS + WRITE_BUCKETS / 2) as i64;
    let events: Vec<Event> = (0..hours)
        .flat_map(|h| {
            let t = start + Duration::hours(h) + Duration::minutes(7);
            (0..=(h % 3)).map(move |k| message(&format!("e{h}_{k}"), &ts(t)))
        })
        .collect();
    for chunk in events.chunks(1000) {
        storage.commit_batch(chunk, &[]).await.unwrap();
    }
    let now = start + Duration::hours(hours + 1);
    let report = agg
        .run_due(job("hourly_message_counts"), Trigger::Schedule, now)
        .await
        .unwrap();
    assert_eq!(report.periods_recomputed, hours as u64);
    assert_eq!(report.rows_written, hours as u64);
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.path().join("a.db").display()))
        .await
        .unwrap();
    let (rows, total): (i64, i64) =
        sqlx::query_as("SELECT count(*), sum(count) FROM agg_message_counts_hourly")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!((rows, total), (hours, events.len() as i64));
    let statuses = storage.job_statuses().await.unwrap();
    let hourly = statuses
        .iter()
        .find(|s| s.job == "hourly_message_counts")
        .unwrap();
    assert_eq!(hourly.pending_buckets, 0);
    assert_eq!(
        hourly.watermark.as_deref(),
        Some(ts(start + Duration::hours(hours)).as_str())
    );
}

/// A renewal kept waiting for SQLite's write lock longer than the lease lasts still
/// leaves a live lease: its expiry is taken once the statement holds the lock, not
/// when it was asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_kept_waiting_for_the_lock_leaves_a_live_lease() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let storage = Storage::open(&StorageOptions::new(&path)).await.unwrap();
    let lease = "aggregate:hourly_message_counts";
    let holder = "host-a.elsewhere:1";
    let ttl = std::time::Duration::from_millis(500);
    assert!(
        storage
            .acquire_lease(lease, holder, ttl)
            .await
            .unwrap()
            .is_ok()
    );
    // Another writer holds the lock for four lease periods.
    let mut other = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
        "sqlite://{}",
        path.display()
    ))
    .await
    .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    let renewal = tokio::spawn({
        let storage = storage.clone();
        async move { storage.renew_lease(lease, holder, ttl).await }
    });
    tokio::time::sleep(4 * ttl).await;
    assert!(!renewal.is_finished(), "the renewal waits for the lock");
    sqlx::query("COMMIT").execute(&mut other).await.unwrap();
    assert!(renewal.await.unwrap().unwrap(), "still this holder's");
    let expires = storage.leases().await.unwrap()[0].expires_at.clone();
    let now = ts(Utc::now());
    assert!(expires > now, "expires at {expires}, now is {now}");
}

/// The triggers keep the names `agg_job_runs` has always stored and `status` shows.
#[test]
fn triggers_keep_their_stored_names() {
    let names = [
        Trigger::Startup,
        Trigger::Schedule,
        Trigger::Cli,
        Trigger::Admin,
    ]
    .map(Trigger::as_str);
    assert_eq!(names, ["startup", "schedule", "cli", "admin"]);
}
