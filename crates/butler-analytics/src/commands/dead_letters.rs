//! `dead-letters list` and `dead-letters replay`: the rejected messages the database
//! keeps, read or validated again by the same rules as ingest.

use std::io::Write;

use anyhow::bail;
use butler_config::Config;
use butler_consumer::replay::replay_dead_letters;
use butler_consumer::settings::validation_rules;
use butler_events::RejectReason;
use butler_storage::{DeadLetter, DeadLetterFilter, ReplayOutcome, Storage};

use crate::app;
use crate::cli::{DeadLetterListArgs, DeadLetterReplayArgs, DeadLetterSelection};
use crate::output::{Output, json_line};

/// `dead-letters list`: the selected dead letters, oldest first.
pub(super) async fn list(config: &Config, args: &DeadLetterListArgs) -> anyhow::Result<Listed> {
    let storage = app::open_storage(config).await?;
    let letters = storage
        .list_dead_letters(&filter(&args.selection, args.all)?)
        .await?;
    storage.close().await;
    Ok(Listed(letters))
}

/// `dead-letters replay`: the selected dead letters not replayed yet, validated again
/// and stored when they pass, with a progress bar.
pub(super) async fn replay(
    config: &Config,
    args: &DeadLetterReplayArgs,
) -> anyhow::Result<Replayed> {
    let storage = app::open_storage(config).await?;
    let filter = filter(&args.selection, false)?;
    let total = replay_total(&storage, &filter).await?;
    let mut progress = crate::progress::Progress::new("dead-letters replay", "messages", total);
    let outcome = replay_dead_letters(&storage, &validation_rules(config), &filter, &mut |done| {
        progress.set(done)
    })
    .await?;
    progress.finish();
    storage.close().await;
    Ok(Replayed(outcome))
}

/// How many dead letters `filter` selects for a replay (those not replayed yet).
async fn replay_total(storage: &Storage, filter: &DeadLetterFilter) -> anyhow::Result<u64> {
    let selected = if filter.ids.is_empty() {
        storage
            .dead_letter_counts()
            .await?
            .into_iter()
            .filter(|(reason, _)| filter.reason.is_none_or(|r| r.as_str() == reason))
            .map(|(_, n)| n.max(0) as u64)
            .sum()
    } else {
        filter.ids.len() as u64
    };
    Ok(filter
        .limit
        .map_or(selected, |limit| selected.min(u64::from(limit))))
}

/// The storage filter for a selection, with `--reason` checked against the reason codes.
fn filter(
    selection: &DeadLetterSelection,
    include_replayed: bool,
) -> anyhow::Result<DeadLetterFilter> {
    let reason = match &selection.reason {
        None => None,
        Some(code) => match RejectReason::parse(code) {
            Some(reason) => Some(reason),
            None => {
                let codes: Vec<_> = RejectReason::ALL.iter().map(|r| r.as_str()).collect();
                bail!(
                    "--reason {code:?} is not a reason code; use one of {}",
                    codes.join(", ")
                )
            }
        },
    };
    Ok(DeadLetterFilter {
        reason,
        ids: selection.ids.clone(),
        include_replayed,
        after_id: None,
        limit: selection.limit,
    })
}

/// The dead letters `list` found.
pub(super) struct Listed(Vec<DeadLetter>);

impl Output for Listed {
    /// One JSON object per line, so a script can stream a long list.
    fn json(&self, out: &mut dyn Write) -> anyhow::Result<()> {
        for letter in &self.0 {
            json_line(out, &as_json(letter))?;
        }
        Ok(())
    }

    fn text(&self, out: &mut dyn Write) -> anyhow::Result<()> {
        writeln!(
            out,
            "{:>6}  {:<24}  {:<22}  {:>8}  {:<40}  detail",
            "id", "received_at", "reason", "seq", "subject"
        )?;
        for l in &self.0 {
            let state = if l.replayed_at.is_some() {
                " (replayed)"
            } else {
                ""
            };
            writeln!(
                out,
                "{:>6}  {:<24}  {:<22}  {:>8}  {:<40}  {}{state}",
                l.id, l.received_at, l.reason, l.stream_sequence, l.subject, l.detail
            )?;
        }
        writeln!(out, "{} dead letter(s)", self.0.len())?;
        Ok(())
    }
}

/// One dead letter for scripts: the payload as text when it is UTF-8, else as hex, so
/// the exact bytes survive the JSON.
fn as_json(l: &DeadLetter) -> serde_json::Value {
    let headers: serde_json::Value = serde_json::from_str(&l.headers_json).unwrap_or_default();
    let payload = match std::str::from_utf8(&l.payload) {
        Ok(text) => serde_json::json!({ "text": text }),
        Err(_) => {
            serde_json::json!({ "hex": l.payload.iter().map(|b| format!("{b:02x}")).collect::<String>() })
        }
    };
    serde_json::json!({
        "id": l.id,
        "subject": l.subject,
        "stream": l.stream,
        "streamSequence": l.stream_sequence,
        "publishedAt": l.published_at,
        "receivedAt": l.received_at,
        "reason": l.reason,
        "detail": l.detail,
        "headers": headers,
        "payload": payload,
        "replayedAt": l.replayed_at,
        "replayedEventId": l.replayed_event_id,
    })
}

/// What `replay` did with the dead letters it selected.
pub(super) struct Replayed(ReplayOutcome);

impl Output for Replayed {
    fn json(&self, out: &mut dyn Write) -> anyhow::Result<()> {
        json_line(
            out,
            &serde_json::json!({
                "stored": self.0.stored,
                "alreadyStored": self.0.already_stored,
                "stillRejected": self.0.still_rejected,
            }),
        )
    }

    fn text(&self, out: &mut dyn Write) -> anyhow::Result<()> {
        writeln!(
            out,
            "replayed: {} stored, {} already stored, {} still rejected",
            self.0.stored, self.0.already_stored, self.0.still_rejected
        )?;
        Ok(())
    }
}
