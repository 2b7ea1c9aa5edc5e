//! Rejected messages: kept byte for byte, acked, counted, replayable.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

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
