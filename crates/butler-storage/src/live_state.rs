//! Bounded live state (`retention.live_state`): which rows retention prunes, and which
//! keys ingest rebuilds from raw events because their row may have been pruned.
//!
//! Pruning removes what can no longer count: conversations whose latest lifecycle
//! event resolved or closed them, staff whose latest event left them offline, tasks
//! completed — each only when its latest event is older than the cutoff. Every prune
//! also raises `live_state_horizon.pruned_before` to its cutoff, in the same
//! transaction, so every pruned row's latest event is older than the horizon. Counts
//! stay exact because ingest, for a key without a row, rebuilds the key from its raw
//! events before applying new ones whenever a pruned row could have said otherwise:
//! - a conversation or staff member whose new event is older than the horizon (a
//!   newer event is the latest whatever was pruned);
//! - any task, once anything was pruned (a task's flags do not depend on order).
//!
//! A key without a row has, if anything, a finishing event as its latest stored one
//! (only finished rows are pruned, and any later event would have made a row again),
//! so the rebuild reads the key's finishing events alone — `resolved`/`closed`,
//! `logout`/`status_changed`, `completed` — through partial indexes that hold nothing
//! else, the cheapest to keep at ingest. Raw events are kept `retention.raw_events`
//! days and older events are refused, so a rebuilt conversation or staff member is
//! exact; a task whose events lie further apart than that is rebuilt from those still
//! kept.

use std::collections::BTreeSet;

use butler_events::{Event, EventTime, EventType, LiveEffect};
use chrono::{DateTime, Utc};

use crate::sql::{Dialect, Param, Role, Tx};
use crate::{Storage, StorageError};

/// The PostgreSQL advisory lock pruning takes exclusively and ingest shared, each
/// first in its transaction: an ingest transaction reads the horizon either before a
/// prune starts (and the prune waits for its commit) or after the prune committed.
/// SQLite needs none: each of its write transactions holds the whole file.
pub(crate) const LIVE_STATE_LOCK: i64 = 0x6c69_7665_5f73_7461; // "live_sta"

/// One of the live-state tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LiveTable {
    /// `live_conversations`: the latest lifecycle event of each conversation.
    Conversations,
    /// `live_staff`: the latest `staff.*` event of each staff member.
    Staff,
    /// `live_tasks`: whether each task was created and completed.
    Tasks,
}

impl LiveTable {
    /// Every live-state table, in the order retention prunes them.
    pub const ALL: [LiveTable; 3] = [LiveTable::Conversations, LiveTable::Staff, LiveTable::Tasks];

    /// The table's name, as metrics and logs show it.
    pub fn name(self) -> &'static str {
        match self {
            LiveTable::Conversations => "live_conversations",
            LiveTable::Staff => "live_staff",
            LiveTable::Tasks => "live_tasks",
        }
    }

    /// The column naming a key within a property (in the table and in raw events).
    pub(crate) fn key_column(self) -> &'static str {
        match self {
            LiveTable::Conversations => "conversation_id",
            LiveTable::Staff => "staff_id",
            LiveTable::Tasks => "task_id",
        }
    }

    /// The raw events that can finish a key: all a rebuild needs (see the module's
    /// documentation). Word for word the WHERE clause of the table's partial index on
    /// `analytics_events`, so that SQLite uses it.
    pub(crate) fn event_types_clause(self) -> &'static str {
        match self {
            LiveTable::Conversations => {
                "event_type IN ('conversation.resolved', 'conversation.closed')"
            }
            LiveTable::Staff => "event_type IN ('staff.logout', 'staff.status_changed')",
            LiveTable::Tasks => "event_type = 'task.completed'",
        }
    }

    /// The table whose state an effect changes.
    pub(crate) fn of(effect: LiveEffect) -> LiveTable {
        match effect {
            LiveEffect::Conversation { .. } => LiveTable::Conversations,
            LiveEffect::Staff { .. } => LiveTable::Staff,
            LiveEffect::TaskCreated | LiveEffect::TaskCompleted => LiveTable::Tasks,
        }
    }
}

/// A key of a live-state table: property and conversation, staff or task id.
pub type LiveKey = (String, String);

/// What one window of a table's pruning did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneStep {
    /// Rows deleted.
    pub deleted: u64,
    /// The last key of the window, to start the next one after; `None` at the end.
    pub next: Option<LiveKey>,
}

/// The statements of one prune window (the same on both backends), which the prune
/// wraps with the horizon's update and the lock.
pub(crate) struct PruneSql {
    table: LiveTable,
    /// Whether the window starts after a key (`$1`, `$2`) or at the start.
    resumed: bool,
}

impl PruneSql {
    pub(crate) fn new(table: LiveTable, after: Option<&LiveKey>) -> PruneSql {
        PruneSql {
            table,
            resumed: after.is_some(),
        }
    }

    /// Keys `> ($1, $2)`, or every key (`$1`, `$2` bound to NULL) at the start.
    fn from(&self) -> String {
        if self.resumed {
            format!("(property_id, {}) > ($1, $2)", self.table.key_column())
        } else {
            "CAST($1 AS TEXT) IS NULL AND CAST($2 AS TEXT) IS NULL".to_owned()
        }
    }

    /// The window's last key: the key `$3` places after its start (after, offset).
    pub(crate) fn window_end(&self) -> String {
        let (name, key) = (self.table.name(), self.table.key_column());
        format!(
            "SELECT property_id, {key} FROM {name} WHERE {from} \
             ORDER BY property_id, {key} LIMIT 1 OFFSET $3",
            from = self.from(),
        )
    }

    /// Deletes the window's rows that can no longer count and whose latest event is
    /// older than `$5` (after, last key or NULLs when the window runs to the end,
    /// cutoff).
    pub(crate) fn delete(&self, to_the_end: bool) -> String {
        let (name, key) = (self.table.name(), self.table.key_column());
        let to = if to_the_end {
            "CAST($3 AS TEXT) IS NULL AND CAST($4 AS TEXT) IS NULL".to_owned()
        } else {
            format!("(property_id, {key}) <= ($3, $4)")
        };
        let finished = match self.table {
            LiveTable::Conversations => "NOT active",
            LiveTable::Staff => "NOT online",
            LiveTable::Tasks => "completed",
        };
        format!(
            "DELETE FROM {name} WHERE {from} AND {to} AND {finished} AND last_timestamp < $5",
            from = self.from(),
        )
    }
}

/// The keys of `new` events whose rows ingest must look for and, when absent, rebuild
/// from raw events (see the module's documentation). Nothing before any pruning.
pub(crate) fn suspects<'e>(
    new: &[&'e Event],
    horizon: Option<EventTime>,
) -> BTreeSet<(LiveTable, &'e str, &'e str)> {
    let Some(horizon) = horizon else {
        return BTreeSet::new();
    };
    new.iter()
        .filter_map(|e| {
            let table = LiveTable::of(e.live_effect?);
            let key = match table {
                LiveTable::Conversations if e.timestamp < horizon => e.conversation_id.as_deref(),
                LiveTable::Staff if e.timestamp < horizon => e.staff_id.as_deref(),
                LiveTable::Tasks => e.task_id.as_deref(),
                _ => None,
            }?;
            Some((table, e.property_id.as_str(), key))
        })
        .collect()
}

/// A raw event of a suspect key, read back to rebuild its state.
pub(crate) struct StoredEvent {
    pub(crate) id: String,
    pub(crate) event_type: String,
    pub(crate) timestamp: DateTime<Utc>,
    pub(crate) metadata: Option<String>,
}

impl StoredEvent {
    /// The event as ingest applied it, with what live state needs; `None` for a type
    /// this version does not know.
    pub(crate) fn into_event(self, table: LiveTable, property: &str, key: &str) -> Option<Event> {
        let event_type = EventType::parse(&self.event_type)?;
        let mut event = Event::new(
            self.id,
            event_type,
            EventTime::from_datetime(&self.timestamp),
            property,
        );
        event.metadata = self.metadata;
        let event = match table {
            LiveTable::Conversations => event.with_conversation(key),
            LiveTable::Staff => event.with_staff(key),
            LiveTable::Tasks => event.with_task(key),
        };
        Some(event.with_stored_live_effect())
    }
}

impl Storage {
    /// Prunes one window of `window` keys of `table`, after `after` (from the start
    /// when `None`): deletes the rows that can no longer count whose latest event is
    /// older than `cutoff`, and raises the horizon to `cutoff` in the same
    /// transaction. Called window after window until `next` is `None`, so that each
    /// transaction is short whatever the table's size.
    ///
    /// # Errors
    /// Any database error; the windows pruned before it stay pruned.
    pub async fn prune_live_state(
        &self,
        table: LiveTable,
        cutoff: DateTime<Utc>,
        after: Option<&LiveKey>,
        window: u32,
    ) -> Result<PruneStep, StorageError> {
        let sql = PruneSql::new(table, after);
        let cutoff = EventTime::from_datetime(&cutoff);
        let (after_property, after_key) = after.cloned().unzip();
        let (after_property, after_key) = (after_property.as_deref(), after_key.as_deref());
        let mut tx = self.backend.begin(Role::Write).await?;
        lock_exclusively(&mut tx).await?;
        tx.execute(
            "UPDATE live_state_horizon SET pruned_before = CASE WHEN pruned_before IS NULL \
             OR pruned_before < $1 THEN $1 ELSE pruned_before END WHERE id = 1",
            &[Param::Time(cutoff)],
        )
        .await?;
        let window_end = [
            Param::OptText(after_property),
            Param::OptText(after_key),
            Param::Int(i64::from(window.max(1)) - 1),
        ];
        let last = tx
            .fetch_optional(sql.window_end(), &window_end, |r| {
                Ok((r.text(0)?, r.text(1)?))
            })
            .await?;
        let (last_property, last_key) = last.clone().unzip();
        let delete = [
            Param::OptText(after_property),
            Param::OptText(after_key),
            Param::OptText(last_property.as_deref()),
            Param::OptText(last_key.as_deref()),
            Param::Time(cutoff),
        ];
        let deleted = tx.execute(sql.delete(last.is_none()), &delete).await?;
        tx.commit().await?;
        Ok(PruneStep {
            deleted,
            next: last,
        })
    }
}

/// Takes [`LIVE_STATE_LOCK`] exclusively for the rest of the transaction.
async fn lock_exclusively(tx: &mut Tx) -> Result<(), StorageError> {
    if tx.dialect() == Dialect::Postgres {
        tx.execute(
            "SELECT pg_advisory_xact_lock($1)",
            &[Param::Int(LIVE_STATE_LOCK)],
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
