//! Dead letters back through validation, after the cause of their rejection is fixed
//! (a channel added to the config, a longer retention, a corrected publisher).

use butler_events::{IncomingMessage, ValidationRules, validate};
use butler_storage::{DeadLetter, DeadLetterFilter, ReplayOutcome, Storage, StorageError};
use chrono::{DateTime, Utc};

/// Dead letters handled per transaction.
const CHUNK: u32 = 1000;

/// Re-judges the dead letters matching `filter` with today's rules: those that now
/// pass are stored as events (deduplicated by id like any other) and marked replayed;
/// the others keep their row with the reason brought up to date. `progress` is told
/// how many have been handled after each chunk.
///
/// # Errors
/// A database error; the chunks committed before it stay committed.
pub async fn replay_dead_letters(
    storage: &Storage,
    rules: &ValidationRules,
    filter: &DeadLetterFilter,
    progress: &mut dyn FnMut(u64),
) -> Result<ReplayOutcome, StorageError> {
    let mut done = 0;
    let mut total = ReplayOutcome::default();
    let mut after_id = filter.after_id;
    let mut remaining = filter.limit;
    loop {
        let chunk = remaining.map_or(CHUNK, |r| r.min(CHUNK));
        if chunk == 0 {
            break;
        }
        let letters = storage
            .list_dead_letters(&DeadLetterFilter {
                after_id,
                limit: Some(chunk),
                ..filter.clone()
            })
            .await?;
        let Some(last) = letters.last() else { break };
        after_id = Some(last.id);
        remaining = remaining.map(|r| r.saturating_sub(letters.len() as u32));
        let now = Utc::now();
        let mut accepted = Vec::new();
        let mut rejected = Vec::new();
        for letter in &letters {
            match rejudge(letter, rules, now) {
                Ok(event) => accepted.push((letter.id, event)),
                Err(r) => rejected.push((letter.id, r.reason, r.detail)),
            }
        }
        let outcome = storage.commit_replay(&accepted, &rejected).await?;
        total.stored += outcome.stored;
        total.already_stored += outcome.already_stored;
        total.still_rejected += outcome.still_rejected;
        done += letters.len() as u64;
        progress(done);
    }
    Ok(total)
}

fn rejudge(
    letter: &DeadLetter,
    rules: &ValidationRules,
    now: DateTime<Utc>,
) -> Result<butler_events::Event, butler_events::Rejection> {
    let headers: serde_json::Value = serde_json::from_str(&letter.headers_json).unwrap_or_default();
    let msg_id = headers
        .get("Nats-Msg-Id")
        .and_then(|v| v.get(0))
        .and_then(serde_json::Value::as_str);
    let published = letter
        .published_at
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map_or(now, |t| t.with_timezone(&Utc));
    let msg = IncomingMessage {
        subject: &letter.subject,
        payload: &letter.payload,
        msg_id_header: msg_id,
        stream: &letter.stream,
        stream_sequence: letter.stream_sequence,
        published,
    };
    validate(&msg, rules, now)
}
