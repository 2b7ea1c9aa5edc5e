//! Aggregation end to end: tables computed by the pipeline equal a reference computed
//! here from the published events, independently of the aggregator's code.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::{Value, json};
use sqlx::Row;

use crate::helpers::{App, NatsServer, cli, publish_all, wait_until};

const WAIT: Duration = Duration::from_secs(60);
const PROPERTIES: [(&str, Tz); 3] = [
    ("p_utc", chrono_tz::UTC),
    ("p_ny", chrono_tz::America::New_York),
    ("p_kol", chrono_tz::Asia::Kolkata),
];
const TYPES: [&str; 7] = [
    "message.received",
    "message.sent",
    "conversation.started",
    "conversation.resolved",
    "conversation.escalated",
    "response.time_recorded",
    "response.ai_generated",
];

/// One generated event, as the reference sees it.
#[derive(Debug, Clone)]
struct Ev {
    id: String,
    event_type: &'static str,
    property: &'static str,
    ts_ms: i64,
    channel: Option<&'static str>,
    conversation: Option<String>,
    duration_ms: Option<i64>,
}

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Events over 2026-10-30 .. 2026-11-03 UTC: New York leaves DST on 1 November.
fn dataset(n: usize) -> Vec<Ev> {
    let mut rng = Rng(0x5eed_cafe);
    let start = Utc
        .with_ymd_and_hms(2026, 10, 30, 0, 0, 0)
        .unwrap()
        .timestamp_millis();
    let span_s = 4 * 86_400;
    (0..n)
        .map(|i| {
            let (property, _) = PROPERTIES[rng.next(3) as usize];
            let event_type = TYPES[rng.next(TYPES.len() as u64) as usize];
            // Whole seconds on a coarse grid: plenty of timestamp ties.
            let ts_ms = start + (rng.next(span_s) / 60 * 60) as i64 * 1000;
            let channel = [Some("whatsapp"), Some("sms"), None][rng.next(3) as usize];
            let conversation = (rng.next(10) != 0).then(|| format!("c{}", rng.next(60)));
            let duration_ms = match event_type {
                "response.time_recorded" => Some(rng.next(50) as i64 * 1000 + 500),
                "conversation.resolved" if rng.next(2) == 0 => Some(rng.next(7200) as i64 * 1000),
                _ => None,
            };
            Ev {
                id: format!("a{i:05}"),
                event_type,
                property,
                ts_ms,
                channel,
                conversation,
                duration_ms,
            }
        })
        .collect()
}

fn payload(e: &Ev) -> Vec<u8> {
    let mut v = json!({
        "id": e.id,
        "propertyId": e.property,
        "timestamp": DateTime::from_timestamp_millis(e.ts_ms).unwrap().to_rfc3339(),
    });
    let o = v.as_object_mut().unwrap();
    if let Some(c) = e.channel {
        o.insert("channel".into(), c.into());
    }
    if let Some(c) = &e.conversation {
        o.insert("conversationId".into(), c.clone().into());
    }
    if let Some(d) = e.duration_ms {
        o.insert("durationMs".into(), d.into());
    }
    serde_json::to_vec(&v).unwrap()
}

fn tz_of(property: &str) -> Tz {
    PROPERTIES.iter().find(|(p, _)| *p == property).unwrap().1
}

fn hour_key(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .unwrap()
        .format("%Y-%m-%dT%H:00:00Z")
        .to_string()
}

fn local_day(property: &str, ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .unwrap()
        .with_timezone(&tz_of(property))
        .format("%Y-%m-%d")
        .to_string()
}

fn channel(e: &Ev) -> String {
    e.channel.unwrap_or("unknown").to_owned()
}

fn rank(sorted: &[i64], p: usize) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let r = ((p as f64 / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[r.max(1) - 1])
}

fn avg(v: &[i64]) -> Option<i64> {
    (!v.is_empty()).then(|| (v.iter().sum::<i64>() as f64 / v.len() as f64).round() as i64)
}

type Key = (String, String, String);

fn reference_message_counts(events: &[Ev]) -> BTreeMap<(String, String, String, String), i64> {
    let mut out = BTreeMap::new();
    for e in events {
        let direction = match e.event_type {
            "message.received" => "inbound",
            "message.sent" => "outbound",
            _ => continue,
        };
        *out.entry((
            hour_key(e.ts_ms),
            e.property.to_owned(),
            channel(e),
            direction.to_owned(),
        ))
        .or_insert(0) += 1;
    }
    out
}

fn reference_response_times(events: &[Ev]) -> BTreeMap<Key, Vec<Option<i64>>> {
    let mut groups: BTreeMap<Key, Vec<i64>> = BTreeMap::new();
    for e in events
        .iter()
        .filter(|e| e.event_type == "response.time_recorded")
    {
        groups
            .entry((hour_key(e.ts_ms), e.property.to_owned(), channel(e)))
            .or_default()
            .push(e.duration_ms.unwrap());
    }
    groups
        .into_iter()
        .map(|(k, mut v)| {
            v.sort();
            let row = vec![
                Some(v.len() as i64),
                avg(&v),
                rank(&v, 50),
                rank(&v, 95),
                rank(&v, 99),
                v.last().copied(),
            ];
            (k, row)
        })
        .collect()
}

fn reference_conversation_metrics(events: &[Ev]) -> BTreeMap<Key, Vec<Option<i64>>> {
    let mut earliest_start: HashMap<(&str, &str), i64> = HashMap::new();
    for e in events
        .iter()
        .filter(|e| e.event_type == "conversation.started")
    {
        if let Some(c) = &e.conversation {
            let slot = earliest_start.entry((e.property, c)).or_insert(e.ts_ms);
            *slot = (*slot).min(e.ts_ms);
        }
    }
    let mut buckets: BTreeMap<Key, Vec<&Ev>> = BTreeMap::new();
    for e in events {
        buckets
            .entry((
                local_day(e.property, e.ts_ms),
                e.property.to_owned(),
                channel(e),
            ))
            .or_default()
            .push(e);
    }
    let mut out = BTreeMap::new();
    for (key, evs) in buckets {
        let count = |t: &str| evs.iter().filter(|e| e.event_type == t).count() as i64;
        let mut first: BTreeMap<&str, (i64, &str, i64)> = BTreeMap::new();
        let mut firsts = Vec::new();
        for e in evs
            .iter()
            .filter(|e| e.event_type == "response.time_recorded")
        {
            let d = e.duration_ms.unwrap();
            match &e.conversation {
                None => firsts.push(d),
                Some(c) => {
                    let cand = (e.ts_ms, e.id.as_str(), d);
                    let slot = first.entry(c).or_insert(cand);
                    if (cand.0, cand.1) < (slot.0, slot.1) {
                        *slot = cand;
                    }
                }
            }
        }
        firsts.extend(first.values().map(|v| v.2));
        firsts.sort();
        let mut resolutions: Vec<i64> = evs
            .iter()
            .filter(|e| e.event_type == "conversation.resolved")
            .filter_map(|e| {
                e.duration_ms.or_else(|| {
                    let s = *earliest_start.get(&(e.property, e.conversation.as_deref()?))?;
                    (s <= e.ts_ms).then_some(e.ts_ms - s)
                })
            })
            .collect();
        resolutions.sort();
        let minutes = |ms: i64| (ms as f64 / 60_000.0).round() as i64;
        let ai: BTreeSet<&str> = evs
            .iter()
            .filter(|e| e.event_type == "response.ai_generated")
            .filter_map(|e| e.conversation.as_deref())
            .collect();
        let escalated: BTreeSet<&str> = evs
            .iter()
            .filter(|e| e.event_type == "conversation.escalated")
            .filter_map(|e| e.conversation.as_deref())
            .collect();
        let (started, resolved, esc) = (
            count("conversation.started"),
            count("conversation.resolved"),
            count("conversation.escalated"),
        );
        if started + resolved + esc == 0 && firsts.is_empty() && ai.is_empty() {
            continue;
        }
        let resolution_avg = (!resolutions.is_empty()).then(|| {
            (resolutions.iter().sum::<i64>() as f64 / resolutions.len() as f64 / 60_000.0).round()
                as i64
        });
        out.insert(
            key,
            vec![
                Some(started),
                Some(resolved),
                Some(esc),
                avg(&firsts),
                rank(&firsts, 50),
                rank(&firsts, 95),
                resolution_avg,
                rank(&resolutions, 50).map(minutes),
                rank(&resolutions, 95).map(minutes),
                Some(ai.len() as i64),
                Some(ai.intersection(&escalated).count() as i64),
            ],
        );
    }
    out
}

async fn table(
    app: &App,
    sql: &'static str,
    keys: usize,
) -> BTreeMap<Vec<String>, Vec<Option<i64>>> {
    let db = app.db().await;
    let rows = sqlx::query(sql).fetch_all(&db).await.unwrap();
    rows.iter()
        .map(|r| {
            let key = (0..keys).map(|i| r.get::<String, _>(i)).collect();
            let values = (keys..r.len())
                .map(|i| r.get::<Option<i64>, _>(i))
                .collect();
            (key, values)
        })
        .collect()
}

fn config() -> String {
    "retention:\n  raw_events: 36500\naggregation:\n  property_timezones: {p_ny: America/New_York, p_kol: Asia/Kolkata}\nservice:\n  aggregator: false\n"
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfilled_tables_equal_an_independent_reference_and_reruns_change_nothing() {
    let nats = NatsServer::start();
    let mut app = App::start(&nats.url(), &config());
    let js = nats.jetstream().await;
    let events = dataset(4000);
    let mut messages: Vec<(String, Vec<u8>)> = events
        .iter()
        .map(|e| (format!("butler.events.{}", e.event_type), payload(e)))
        .collect();
    // Redeliveries and republished duplicates must not count twice.
    messages.extend(
        events
            .iter()
            .step_by(37)
            .map(|e| (format!("butler.events.{}", e.event_type), payload(e))),
    );
    publish_all(&js, messages).await;
    wait_until(WAIT, "4000 stored events", || async {
        app.event_count().await == 4000
    })
    .await;
    assert!(app.terminate().success());

    let aggregate = || {
        let out = cli(
            &app.config_path(),
            &[
                "aggregate",
                "--job",
                "all",
                "--from",
                "2026-10-29",
                "--to",
                "2026-11-05",
            ],
            &[],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    aggregate();

    let want: BTreeMap<Vec<String>, Vec<Option<i64>>> = reference_message_counts(&events)
        .into_iter()
        .map(|((h, p, c, d), n)| (vec![h, p, c, d], vec![Some(n)]))
        .collect();
    let got = table(&app, "SELECT period_start, property_id, channel, direction, count FROM agg_message_counts_hourly", 4).await;
    assert_eq!(got, want, "agg_message_counts_hourly");

    let want: BTreeMap<Vec<String>, Vec<Option<i64>>> = reference_response_times(&events)
        .into_iter()
        .map(|((h, p, c), v)| (vec![h, p, c], v))
        .collect();
    let got = table(
        &app,
        "SELECT period_start, property_id, channel, count, avg_ms, p50_ms, p95_ms, p99_ms, max_ms FROM agg_response_times_hourly",
        3,
    )
    .await;
    assert_eq!(got, want, "agg_response_times_hourly");

    let want: BTreeMap<Vec<String>, Vec<Option<i64>>> = reference_conversation_metrics(&events)
        .into_iter()
        .map(|((d, p, c), v)| (vec![d, p, c], v))
        .collect();
    let conversation_sql = "SELECT period_date, property_id, channel, conversations_started, conversations_resolved, \
         conversations_escalated, avg_first_response_ms, p50_first_response_ms, p95_first_response_ms, \
         avg_resolution_minutes, p50_resolution_minutes, p95_resolution_minutes, ai_handled_count, \
         ai_escalated_count FROM agg_conversation_metrics_daily";
    let got = table(&app, conversation_sql, 3).await;
    assert_eq!(got, want, "agg_conversation_metrics_daily");
    assert!(
        got.keys().any(|k| k[0] == "2026-11-01" && k[1] == "p_ny"),
        "the 25-hour day is there"
    );

    // Idempotence: a second run over the same range leaves every table as it was.
    let snapshot = |app: &App| {
        let path = app.db_path();
        async move {
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .connect_with(
                    sqlx::sqlite::SqliteConnectOptions::new()
                        .filename(path)
                        .read_only(true),
                )
                .await
                .unwrap();
            let mut all = Vec::new();
            for t in [
                "agg_message_counts_hourly",
                "agg_response_times_hourly",
                "agg_conversation_metrics_daily",
                "agg_staff_performance_daily",
                "agg_intent_distribution_daily",
                "agg_satisfaction_weekly",
                "agg_monthly_summary",
            ] {
                let rows: Vec<Value> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT json_array(*) FROM (SELECT * FROM {t} ORDER BY 1, 2, 3)"
                )))
                .fetch_all(&pool)
                .await
                .unwrap_or_default()
                .into_iter()
                .map(|s: String| serde_json::from_str(&s).unwrap())
                .collect();
                all.push((t, rows));
            }
            all
        }
    };
    let before = snapshot(&app).await;
    aggregate();
    assert_eq!(snapshot(&app).await, before, "a rerun changes nothing");
    app.restart();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_events_are_reflected_by_the_next_scheduled_run_recomputing_only_their_bucket() {
    let nats = NatsServer::start();
    let app = App::start(
        &nats.url(),
        "aggregation:\n  schedules: {hourly_message_counts: '*/2 * * * * *'}\n",
    );
    let js = nats.jetstream().await;
    let hour = Utc::now() - chrono::Duration::hours(3);
    let at = |min: u32| {
        let t = Utc.with_ymd_and_hms(
            chrono::Datelike::year(&hour),
            chrono::Datelike::month(&hour),
            chrono::Datelike::day(&hour),
            chrono::Timelike::hour(&hour),
            min,
            0,
        );
        t.unwrap().to_rfc3339()
    };
    let msg = |id: &str, min: u32| {
        (
            "butler.events.message.received".to_owned(),
            serde_json::to_vec(
                &json!({"id": id, "propertyId": "p_late", "channel": "sms", "timestamp": at(min)}),
            )
            .unwrap(),
        )
    };
    let count = || async {
        let db = app.db().await;
        sqlx::query_scalar::<_, i64>(
            "SELECT count FROM agg_message_counts_hourly WHERE property_id = 'p_late'",
        )
        .fetch_optional(&db)
        .await
        .unwrap()
    };
    publish_all(&js, vec![msg("l1", 5), msg("l2", 10)]).await;
    wait_until(WAIT, "the scheduled run to count 2", || async {
        count().await == Some(2)
    })
    .await;

    publish_all(&js, vec![msg("l3", 15), msg("l4", 59)]).await;
    wait_until(
        WAIT,
        "the next scheduled run to count the late events",
        || async { count().await == Some(4) },
    )
    .await;

    let db = app.db().await;
    let runs: Vec<(String, i64)> = sqlx::query_as(
        "SELECT trigger, periods_recomputed FROM agg_job_runs WHERE job = 'hourly_message_counts' AND periods_recomputed > 0",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert!(
        runs.iter()
            .all(|(trigger, periods)| trigger == "schedule" && *periods == 1),
        "{runs:?}"
    );
    assert!(runs.len() >= 2, "{runs:?}");
    assert!(
        app.metric(r#"butler_analytics_aggregation_runs_total{job="hourly_message_counts"}"#)
            >= 2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_makes_up_the_runs_missed_while_down() {
    let nats = NatsServer::start();
    let mut app = App::start(&nats.url(), "service:\n  aggregator: false\n");
    let js = nats.jetstream().await;
    let when = (Utc::now() - chrono::Duration::days(2)).to_rfc3339();
    let body = serde_json::to_vec(&json!({"id": "m1", "propertyId": "p_down", "timestamp": when}))
        .unwrap();
    publish_all(
        &js,
        vec![("butler.events.conversation.started".into(), body)],
    )
    .await;
    wait_until(WAIT, "the event stored", || async {
        app.event_count().await == 1
    })
    .await;
    assert!(app.terminate().success());

    // The same database, now with the aggregator on and schedules far away.
    let config = std::fs::read_to_string(app.config_path())
        .unwrap()
        .replace("aggregator: false", "aggregator: true");
    std::fs::write(app.config_path(), config).unwrap();
    app.restart();
    let db = app.db().await;
    wait_until(WAIT, "the start-up run to write the daily row", || async {
        sqlx::query_scalar::<_, i64>("SELECT conversations_started FROM agg_conversation_metrics_daily WHERE property_id = 'p_down'")
            .fetch_optional(&db)
            .await
            .unwrap()
            == Some(1)
    })
    .await;
    let monthly: Option<i64> = sqlx::query_scalar(
        "SELECT total_conversations FROM agg_monthly_summary WHERE property_id = 'p_down'",
    )
    .fetch_optional(&db)
    .await
    .unwrap();
    let month_closed = chrono::Datelike::month(&(Utc::now() - chrono::Duration::days(2)))
        != chrono::Datelike::month(&Utc::now());
    assert_eq!(
        monthly,
        month_closed.then_some(1),
        "an open month is not written before it closes"
    );
}
