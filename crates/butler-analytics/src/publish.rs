//! `butler-analytics publish`: events into the stream by hand, for a first try, a demo
//! or a test, without other NATS tools.

use anyhow::{Context, bail};
use butler_config::Config;
use butler_consumer::ConsumerSettings;
use bytes::Bytes;
use serde_json::Value;

use crate::cli::PublishArgs;

/// Publishes the event(s) of `args` through JetStream, waiting for each to be stored
/// in the stream, and prints each one's subject and stream sequence.
///
/// # Errors
/// A malformed line, an unreachable server, or a publish the stream refused.
pub async fn publish(config: &Config, args: &PublishArgs) -> anyhow::Result<()> {
    let prefix = &config.nats.subject_prefix;
    let messages: Vec<(String, Bytes)> = match (&args.file, &args.event_type, &args.payload) {
        (Some(path), _, _) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            text.lines()
                .enumerate()
                .filter(|(_, line)| !line.trim().is_empty())
                .map(|(n, line)| {
                    parse_line(line, prefix)
                        .with_context(|| format!("{}:{}", path.display(), n + 1))
                })
                .collect::<anyhow::Result<_>>()?
        }
        (None, Some(event_type), Some(payload)) => {
            vec![(
                format!("{prefix}.{event_type}"),
                Bytes::from(payload.clone()),
            )]
        }
        _ => bail!("give an event type and a payload, or --file"),
    };

    let client = crate::nats::connect(&config.nats, "butler-analytics publish").await?;
    let js = async_nats::jetstream::new(client.clone());
    let settings = ConsumerSettings::from_config(config);
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        butler_consumer::jetstream::ensure_stream(&js, &settings),
    )
    .await
    .with_context(|| {
        crate::nats::no_answer(format!(
            "no answer from NATS at {} within 10 s",
            config.nats.url
        ))
    })?
    .map_err(|e| {
        anyhow::anyhow!(crate::nats::no_answer(format!(
            "stream {}: {e}",
            settings.stream
        )))
    })?;
    let mut stored = Vec::new();
    for (subject, payload) in messages {
        let ack = js
            .publish(subject.clone(), payload)
            .await
            .with_context(|| format!("publishing on {subject}"))?
            .await
            .with_context(|| {
                crate::nats::no_answer(format!("the stream did not store the message on {subject}"))
            })?;
        if args.json {
            stored.push(serde_json::json!({
                "subject": subject,
                "stream": ack.stream,
                "sequence": ack.sequence,
                "duplicate": ack.duplicate,
            }));
        } else {
            println!("{subject}\tstream {} seq {}", ack.stream, ack.sequence);
        }
    }
    client.flush().await?;
    if args.json {
        println!("{}", serde_json::json!({ "published": stored }));
    }
    Ok(())
}

/// One line of a publish file: the subject and the exact bytes to send.
fn parse_line(line: &str, prefix: &str) -> anyhow::Result<(String, Bytes)> {
    let value: Value = serde_json::from_str(line).context("not a JSON line")?;
    if let (Some(subject), Some(payload)) = (
        value.get("subject").and_then(Value::as_str),
        value.get("payload"),
    ) {
        let body = match payload {
            Value::String(raw) => raw.clone().into_bytes(),
            other => serde_json::to_vec(other)?,
        };
        return Ok((subject.to_owned(), Bytes::from(body)));
    }
    let Some(event_type) = value.get("eventType").and_then(Value::as_str) else {
        bail!("a line needs either subject and payload, or an eventType");
    };
    Ok((
        format!("{prefix}.{event_type}"),
        Bytes::from(line.to_owned()),
    ))
}
