//! Rejected messages: kept byte for byte, acked, counted, replayable.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{App, NatsServer, cli, consumer_info, publish_all, samples, wait_until};

const WAIT: Duration = Duration::from_secs(30);

async fn dead_letter_count(app: &App) -> i64 {
    let db = app.db().await;
    let n = db
        .count("SELECT count(*) FROM analytics_dead_letters")
        .await;
    db.close().await;
    n
}

/// Raw bytes as the test database gives them (an array of numbers).
fn bytes(v: &Value) -> Vec<u8> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|b| u8::try_from(b.as_u64().unwrap()).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rejection_reason_is_kept_acked_and_counted() {
    let nats = NatsServer::start();
    let app = App::start(
        &nats.url(),
        "nats:\n  ack_wait_ms: 1000\ningest:\n  flush_interval_ms: 100\n",
    );
    let js = nats.jetstream().await;
    let rejected: Vec<_> = samples()
        .into_iter()
        .filter(|(_, _, e)| e != "stored")
        .collect();
    assert_eq!(rejected.len(), 14);
    let seqs = publish_all(
        &js,
        rejected
            .iter()
            .map(|(s, p, _)| (s.clone(), p.clone()))
            .collect(),
    )
    .await;
    wait_until(WAIT, "14 dead letters", || async {
        dead_letter_count(&app).await == 14
    })
    .await;

    let db = app.db().await;
    let mut per_reason: BTreeMap<&str, f64> = BTreeMap::new();
    for ((subject, payload, reason), seq) in rejected.iter().zip(&seqs) {
        let rows = db
            .records(&format!(
                "SELECT * FROM analytics_dead_letters WHERE stream_sequence = {seq}"
            ))
            .await;
        let row = &rows[0];
        assert_eq!(row["reason"], *reason, "seq {seq}");
        assert_eq!(bytes(&row["payload"]), *payload, "seq {seq}: the raw bytes");
        assert_eq!(row["subject"], *subject);
        assert_eq!(row["stream"], "BUTLER_EVENTS");
        assert!(row["headers"].is_object());
        assert_eq!(row["received_at"].as_str().unwrap().len(), 24);
        *per_reason.entry(reason.as_str()).or_default() += 1.0;
    }
    assert_eq!(per_reason.len(), 11, "every reason code is exercised");
    for (reason, n) in &per_reason {
        let sample = format!(r#"butler_analytics_events_rejected_total{{reason="{reason}"}}"#);
        assert_eq!(app.metric(&sample), *n, "{sample}");
    }
    assert_eq!(app.event_count().await, 0);

    // Acked, not redelivered: once the ack floor reaches the last message nothing can
    // be delivered again.
    let last = *seqs.last().unwrap();
    wait_until(WAIT, "every message acked", || async {
        let info = consumer_info(&js).await;
        info.ack_floor.stream_sequence == last && info.num_ack_pending == 0
    })
    .await;
    let info = consumer_info(&js).await;
    assert_eq!(info.num_ack_pending, 0, "{info:?}");
    assert_eq!(info.num_pending, 0, "{info:?}");
    assert_eq!(info.num_redelivered, 0, "{info:?}");
    assert_eq!(info.ack_floor.stream_sequence, *seqs.last().unwrap());
    assert_eq!(dead_letter_count(&app).await, 14);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_replay_stores_them_once_the_cause_is_fixed() {
    let nats = NatsServer::start();
    let mut app = App::start(&nats.url(), "");
    let js = nats.jetstream().await;
    let picked: Vec<_> = samples()
        .into_iter()
        .filter(|(_, _, e)| e == "invalid_channel" || e == "expired")
        .collect();
    let pigeon_at = picked
        .iter()
        .position(|(_, _, e)| e == "invalid_channel")
        .unwrap();
    let seqs = publish_all(&js, picked.into_iter().map(|(s, p, _)| (s, p)).collect()).await;
    wait_until(WAIT, "2 dead letters", || async {
        dead_letter_count(&app).await == 2
    })
    .await;
    assert!(app.terminate().success());

    let pigeon = (
        "BUTLER_ANALYTICS__INGEST__CHANNELS",
        "[whatsapp, sms, email, webchat, carrier_pigeon]",
    );
    let out = cli(&app.config_path(), &["dead-letters", "replay"], &[pigeon]);
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("dead-letters replay: 2/2 messages (100%)"),
        "{err}"
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("1 stored, 0 already stored, 1 still rejected"),
        "{said}"
    );

    let db = app.db().await;
    let channel = db
        .strings(&format!(
            "SELECT channel FROM analytics_events WHERE id = 'evt_BUTLER_EVENTS_{}'",
            seqs[pigeon_at]
        ))
        .await;
    assert_eq!(channel, ["carrier_pigeon"]);

    let out = cli(&app.config_path(), &["dead-letters", "list", "--json"], &[]);
    let pending: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0]["reason"], "expired");

    // A longer retention fixes the other one; replaying again stores nothing twice.
    let retention = ("BUTLER_ANALYTICS__RETENTION__RAW_EVENTS", "36500");
    let out = cli(
        &app.config_path(),
        &["dead-letters", "replay", "--json"],
        &[pigeon, retention],
    );
    let said: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        said,
        serde_json::json!({"stored": 1, "alreadyStored": 0, "stillRejected": 0})
    );
    let out = cli(
        &app.config_path(),
        &["dead-letters", "list", "--all", "--json"],
        &[],
    );
    let all: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|l| l["replayedEventId"].is_string()));
    assert_eq!(db.count("SELECT count(*) FROM analytics_events").await, 2);
}

/// Replay's selections and outcomes one by one: `--reason`, `--id` and `--limit` pick
/// what is replayed; a letter that fails again for another reason has its reason
/// brought up to date; one whose id is stored meanwhile counts as already stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_selects_by_reason_id_and_limit_and_tells_each_outcome() {
    let nats = NatsServer::start();
    let mut app = App::start(&nats.url(), "");
    let js = nats.jetstream().await;
    let at = |days: i64| (chrono::Utc::now() - chrono::Duration::days(days)).to_rfc3339();
    let msg = |body: Value| {
        (
            "butler.events.message.received".to_owned(),
            serde_json::to_vec(&body).unwrap(),
        )
    };
    let pigeon = |id: &str, days: i64| {
        msg(
            json!({"id": id, "propertyId": "p_dl", "channel": "carrier_pigeon", "timestamp": at(days)}),
        )
    };
    publish_all(
        &js,
        vec![
            pigeon("dl-a", 0),
            pigeon("dl-b", 3),
            pigeon("dl-c", 0),
            msg(json!({"id": "dl-d", "channel": "sms"})),
            // dl-c, valid this time: stored.
            msg(json!({"id": "dl-c", "propertyId": "p_dl", "channel": "sms", "timestamp": at(0)})),
        ],
    )
    .await;
    wait_until(WAIT, "four letters and one event", || async {
        dead_letter_count(&app).await == 4 && app.event_count().await == 1
    })
    .await;
    assert!(app.terminate().success());
    let config = app.config_path();
    let letters = || -> Vec<Value> {
        let out = cli(&config, &["dead-letters", "list", "--json"], &[]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let id_of = |event: &str| {
        letters()
            .into_iter()
            .find(|l| {
                l["payload"]["text"]
                    .as_str()
                    .is_some_and(|p| p.contains(event))
            })
            .map(|l| l["id"].as_i64().unwrap().to_string())
            .unwrap()
    };
    let replay = |args: &[&str], env: &[(&str, &str)]| -> Value {
        let mut all = vec!["dead-letters", "replay", "--json"];
        all.extend_from_slice(args);
        let out = cli(&config, &all, env);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let pigeons = (
        "BUTLER_ANALYTICS__INGEST__CHANNELS",
        "[whatsapp, sms, email, webchat, carrier_pigeon]",
    );
    let outcome = |stored: i64, already: i64, still: i64| json!({"stored": stored, "alreadyStored": already, "stillRejected": still});

    // --reason: only the letter without a property, still rejected.
    assert_eq!(
        replay(&["--reason", "missing_property_id"], &[pigeons]),
        outcome(0, 0, 1)
    );
    // --id: dl-a alone, stored now that its channel is allowed.
    let a = id_of("dl-a");
    assert_eq!(replay(&["--id", &a], &[pigeons]), outcome(1, 0, 0));
    // --limit 1, with a one-day retention: the oldest pending letter (dl-b, three days
    // old) fails again, as expired now; its reason is brought up to date.
    let short = ("BUTLER_ANALYTICS__RETENTION__RAW_EVENTS", "1");
    assert_eq!(
        replay(&["--limit", "1"], &[pigeons, short]),
        outcome(0, 0, 1)
    );
    let b = letters()
        .into_iter()
        .find(|l| {
            l["payload"]["text"]
                .as_str()
                .is_some_and(|p| p.contains("dl-b"))
        })
        .unwrap();
    assert_eq!(b["reason"], "expired", "{b}");
    // The rest: dl-b stored under the default retention, dl-c already stored, the
    // letter without a property still rejected.
    assert_eq!(replay(&[], &[pigeons]), outcome(1, 1, 1));
    assert_eq!(letters().len(), 1, "only the unfixable one is left");
    app.restart();
    assert_eq!(app.event_count().await, 3, "dl-a, dl-b and dl-c, once each");
}
