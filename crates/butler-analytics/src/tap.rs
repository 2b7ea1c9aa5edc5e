//! `tap`: the events flowing through the stream, judged by the pipeline's own rules
//! (a rejected one with its dead-letter reason), read by an ordered consumer of its
//! own that the server removes once `tap` stops, so the durable consumer's messages
//! are never taken.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::push::OrderedConfig;
use butler_config::Config;
use butler_consumer::decode::{Decoded, decode};
use butler_events::ValidationRules;
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::cli::TapArgs;

/// Follows the stream until `--limit` messages are shown or Ctrl-C.
///
/// # Errors
/// NATS unreachable, the stream missing, or the consumer refused (the message says
/// which grant the user lacks).
pub async fn tap(config: &Config, args: &TapArgs) -> anyhow::Result<()> {
    // The first connection fails at once, naming the servers, rather than retrying
    // in the background as the pipeline does; later drops reconnect.
    let client = crate::nats::options(&config.nats)
        .await?
        .name("butler-analytics tap")
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(None)
        .connect(crate::nats::servers(&config.nats)?)
        .await
        .map_err(|e| {
            let servers: Vec<&str> = n_servers(config);
            anyhow::anyhow!(
                "config key `nats.url`: cannot connect to {}: {e}",
                servers.join(", ")
            )
        })?;
    let mut js = async_nats::jetstream::new(client.clone());
    js.set_timeout(Duration::from_secs(5));
    let n = &config.nats;
    let mut stream = js.get_stream(&n.stream).await.map_err(|e| {
        anyhow::anyhow!(crate::nats::no_answer(format!(
            "cannot read stream {} (nats.stream): {e}",
            n.stream
        )))
    })?;
    let (deliver_policy, from) = match args.last {
        None => (DeliverPolicy::New, "the next message".to_owned()),
        Some(last) => {
            let last_sequence = stream.info().await?.state.last_sequence;
            let start_sequence = last_sequence.saturating_sub(last.saturating_sub(1)).max(1);
            (
                DeliverPolicy::ByStartSequence { start_sequence },
                format!("sequence {start_sequence}"),
            )
        }
    };
    let filter_subject = match &args.event_type {
        Some(event_type) => format!("{}.{event_type}", n.subject_prefix),
        None => format!("{}.>", n.subject_prefix),
    };
    let consumer = stream
        .create_consumer(OrderedConfig {
            deliver_subject: client.new_inbox(),
            description: Some("butler-analytics tap".into()),
            filter_subject: filter_subject.clone(),
            deliver_policy,
            ..Default::default()
        })
        .await
        .map_err(|e| {
            anyhow::anyhow!(crate::nats::no_answer(format!(
                "cannot follow stream {}: {e}",
                n.stream
            )))
        })?;
    let mut messages = consumer.messages().await.context("following the stream")?;
    // On stderr, so that stdout holds the messages alone.
    eprintln!(
        "following {filter_subject} on stream {} from {from}; Ctrl-C stops",
        n.stream
    );
    let rules = butler_consumer::settings::validation_rules(config);
    let mut out = std::io::stdout().lock();
    let mut shown = 0;
    while args.limit.is_none_or(|limit| shown < limit) {
        let message = tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            next = messages.next() => match next {
                Some(message) => message.context("following the stream")?,
                None => break,
            },
        };
        let judged = judge(&message, &rules);
        if args
            .property
            .as_ref()
            .is_some_and(|p| judged.get("propertyId").and_then(Value::as_str) != Some(p))
        {
            continue;
        }
        if args.json {
            writeln!(out, "{judged}")?;
        } else {
            writeln!(out, "{}", line(&judged))?;
        }
        out.flush()?;
        shown += 1;
    }
    Ok(())
}

/// The servers of `nats.url` as they may be shown: without credentials.
fn n_servers(config: &Config) -> Vec<&str> {
    config
        .nats
        .servers()
        .into_iter()
        .map(|s| s.split('@').next_back().unwrap_or(s))
        .collect()
}

/// One message as the pipeline would judge it now: the event it stores, or the
/// dead letter it keeps with the reason.
fn judge(message: &async_nats::jetstream::Message, rules: &ValidationRules) -> Value {
    let sequence = message.info().map(|i| i.stream_sequence).ok();
    match decode(message, rules, chrono::Utc::now()) {
        Decoded::Event(e) => json!({
            "outcome": "valid",
            "streamSequence": sequence,
            "id": e.id,
            "eventType": e.event_type.as_str(),
            "timestamp": e.timestamp.to_string(),
            "propertyId": e.property_id,
            "channel": e.channel,
            "conversationId": e.conversation_id,
            "guestId": e.guest_id,
            "staffId": e.staff_id,
            "taskId": e.task_id,
            "value": e.value,
            "durationMs": e.duration_ms,
        }),
        Decoded::Rejected(dead) => {
            let payload = String::from_utf8_lossy(&dead.payload).into_owned();
            // The property of a rejected message, where its payload names one, so
            // `--property` shows a hotel's rejected messages too.
            let property = serde_json::from_slice::<Value>(&dead.payload)
                .ok()
                .and_then(|v| {
                    v.get("propertyId")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                });
            json!({
                "outcome": "rejected",
                "streamSequence": sequence,
                "subject": dead.subject,
                "reason": dead.reason.as_str(),
                "detail": dead.detail,
                "propertyId": property,
                "payload": payload,
            })
        }
    }
}

/// The text form of a judged message: one line, the fields a person scans for first.
fn line(judged: &Value) -> String {
    let field = |name: &str| match judged.get(name) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".to_owned(),
        Some(other) => other.to_string(),
    };
    if field("outcome") == "rejected" {
        format!(
            "#{:<8} REJECTED {:<18} {}  {}",
            field("streamSequence"),
            field("reason"),
            field("subject"),
            field("detail")
        )
    } else {
        format!(
            "#{:<8} {}  {:<30} {:<20} {}",
            field("streamSequence"),
            field("timestamp"),
            field("eventType"),
            field("propertyId"),
            field("id")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_shows_an_event_or_the_reason_of_a_rejection() {
        let valid = json!({"outcome": "valid", "streamSequence": 7, "timestamp": "2026-12-07T10:00:00.000Z",
            "eventType": "message.received", "propertyId": "prop_a", "id": "evt_1"});
        assert_eq!(
            line(&valid),
            "#7        2026-12-07T10:00:00.000Z  message.received               prop_a               evt_1"
        );
        let rejected = json!({"outcome": "rejected", "streamSequence": 8, "reason": "invalid_json",
            "subject": "butler.events.message.sent", "detail": "expected value"});
        assert_eq!(
            line(&rejected),
            "#8        REJECTED invalid_json       butler.events.message.sent  expected value"
        );
    }
}
