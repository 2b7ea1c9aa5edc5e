//! The ingest statements. sqlx runs every statement on SQLite's worker thread, and
//! each one is a round trip between threads; on a busy machine those hand-offs, not
//! SQLite, set the pace. So each statement takes a whole batch at once, bound as one
//! JSON array of rows that `json_each` unpacks inside SQLite: a batch costs the same
//! handful of statements whatever its size.

/// Turns a batch of rows into the JSON array the statements below take.
pub(crate) fn json_rows<T: serde::Serialize>(rows: &[T]) -> Result<String, crate::StorageError> {
    serde_json::to_string(rows)
        .map_err(|e| crate::StorageError::Database(sqlx::Error::Encode(Box::new(e))))
}

/// Which ids of a batch are stored already; `?1` is the batch as a JSON array of
/// rows whose first element is the id. Asked before the insert, inside the same write
/// transaction: usually none is, so no row crosses back from SQLite's worker thread.
pub(crate) const STORED_IDS: &str = "SELECT e.id FROM json_each(?1) AS j \
    CROSS JOIN analytics_events AS e ON e.id = (j.value ->> 0)";

/// `INSERT OR IGNORE` of a batch given as a JSON array of rows, in the column order
/// below; in array order, so of two rows with one id the first is stored.
pub(crate) const INSERT_EVENTS: &str = "INSERT OR IGNORE INTO analytics_events (id, \
    event_type, timestamp, property_id, channel, guest_id, staff_id, conversation_id, task_id, \
    value, duration_ms, metadata) \
    SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3, j.value ->> 4, \
    j.value ->> 5, j.value ->> 6, j.value ->> 7, j.value ->> 8, j.value ->> 9, j.value ->> 10, \
    j.value ->> 11 FROM json_each(?1) AS j ORDER BY j.key";

/// Stamps `[[property, hour], …]` (`?1`) dirty with change sequence `?2`.
pub(crate) const UPSERT_DIRTY_HOURS: &str = "INSERT INTO agg_dirty_hours (property_id, hour_start, \
    change_seq) SELECT j.value ->> 0, j.value ->> 1, ?2 FROM json_each(?1) AS j WHERE true \
    ON CONFLICT (property_id, hour_start) DO UPDATE SET change_seq = excluded.change_seq";

/// Latest lifecycle event per conversation, from `[[property, conversation, type,
/// timestamp, id, active], …]`; the newer event (timestamp, then id) wins, in whatever
/// order they come.
pub(crate) const UPSERT_LIVE_CONVERSATIONS: &str = "INSERT INTO live_conversations (property_id, \
    conversation_id, last_event_type, last_timestamp, last_event_id, active) \
    SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3, j.value ->> 4, j.value ->> 5 \
    FROM json_each(?1) AS j WHERE true \
    ON CONFLICT (property_id, conversation_id) DO UPDATE SET \
    last_event_type = excluded.last_event_type, last_timestamp = excluded.last_timestamp, \
    last_event_id = excluded.last_event_id, active = excluded.active \
    WHERE (excluded.last_timestamp, excluded.last_event_id) > \
    (live_conversations.last_timestamp, live_conversations.last_event_id)";

/// Latest `staff.*` event per staff member, as for conversations.
pub(crate) const UPSERT_LIVE_STAFF: &str = "INSERT INTO live_staff (property_id, staff_id, \
    last_event_type, last_timestamp, last_event_id, online) \
    SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3, j.value ->> 4, j.value ->> 5 \
    FROM json_each(?1) AS j WHERE true \
    ON CONFLICT (property_id, staff_id) DO UPDATE SET \
    last_event_type = excluded.last_event_type, last_timestamp = excluded.last_timestamp, \
    last_event_id = excluded.last_event_id, online = excluded.online \
    WHERE (excluded.last_timestamp, excluded.last_event_id) > \
    (live_staff.last_timestamp, live_staff.last_event_id)";

/// Whether each task was created and completed, from `[[property, task, created,
/// completed], …]`; a flag once set stays set.
pub(crate) const UPSERT_LIVE_TASKS: &str = "INSERT INTO live_tasks (property_id, task_id, created, \
    completed) SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3 \
    FROM json_each(?1) AS j WHERE true \
    ON CONFLICT (property_id, task_id) DO UPDATE SET \
    created = max(created, excluded.created), completed = max(completed, excluded.completed)";

/// Adds `[[property, hour, type, channel, events, value_sum, value_count, duration_sum,
/// duration_count, rating_1 … rating_5], …]` to the hour tallies.
pub(crate) const UPSERT_TALLIES: &str = "INSERT INTO event_tallies_hour (property_id, hour, \
    event_type, channel, events, value_sum, value_count, duration_sum, duration_count, \
    rating_1, rating_2, rating_3, rating_4, rating_5) \
    SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3, j.value ->> 4, \
    j.value ->> 5, j.value ->> 6, j.value ->> 7, j.value ->> 8, j.value ->> 9, j.value ->> 10, \
    j.value ->> 11, j.value ->> 12, j.value ->> 13 FROM json_each(?1) AS j WHERE true \
    ON CONFLICT (property_id, hour, event_type, channel) DO UPDATE SET \
    events = events + excluded.events, value_sum = value_sum + excluded.value_sum, \
    value_count = value_count + excluded.value_count, \
    duration_sum = duration_sum + excluded.duration_sum, \
    duration_count = duration_count + excluded.duration_count, \
    rating_1 = rating_1 + excluded.rating_1, rating_2 = rating_2 + excluded.rating_2, \
    rating_3 = rating_3 + excluded.rating_3, rating_4 = rating_4 + excluded.rating_4, \
    rating_5 = rating_5 + excluded.rating_5";

/// One window's tallies for property `?1`: raw head `[?2, ?3)`, whole hours
/// `[?4, ?5)`, raw tail `[?6, ?7)`.
pub(crate) const WINDOW_TALLIES: &str = "\
    WITH raw AS (SELECT event_type, channel, value, duration_ms \
      FROM analytics_events INDEXED BY idx_events_property_time \
      WHERE property_id = ?1 AND timestamp >= ?2 AND timestamp < ?3 \
      UNION ALL \
      SELECT event_type, channel, value, duration_ms \
      FROM analytics_events INDEXED BY idx_events_property_time \
      WHERE property_id = ?1 AND timestamp >= ?6 AND timestamp < ?7), \
    parts AS ( \
      SELECT event_type, \
        CASE WHEN event_type IN ('satisfaction.survey_sent', 'satisfaction.rating_received') \
             THEN coalesce(channel, 'unknown') ELSE '*' END AS channel, \
        1 AS events, coalesce(value, 0.0) AS value_sum, value IS NOT NULL AS value_count, \
        coalesce(duration_ms, 0) AS duration_sum, duration_ms IS NOT NULL AS duration_count, \
        event_type = 'satisfaction.rating_received' AND value = 1 AS rating_1, \
        event_type = 'satisfaction.rating_received' AND value = 2 AS rating_2, \
        event_type = 'satisfaction.rating_received' AND value = 3 AS rating_3, \
        event_type = 'satisfaction.rating_received' AND value = 4 AS rating_4, \
        event_type = 'satisfaction.rating_received' AND value = 5 AS rating_5 \
      FROM raw \
      WHERE event_type IN ('conversation.started', 'conversation.resolved', 'conversation.escalated', \
          'message.received', 'message.sent', 'response.time_recorded', 'task.created', \
          'satisfaction.survey_sent', 'satisfaction.rating_received') \
      UNION ALL \
      SELECT event_type, channel, events, value_sum, value_count, duration_sum, duration_count, \
        rating_1, rating_2, rating_3, rating_4, rating_5 FROM event_tallies_hour \
      WHERE property_id = ?1 AND hour >= ?4 AND hour < ?5) \
    SELECT event_type, channel, sum(events), total(value_sum), sum(value_count), sum(duration_sum), \
      sum(duration_count), sum(rating_1), sum(rating_2), sum(rating_3), sum(rating_4), sum(rating_5) \
    FROM parts GROUP BY event_type, channel ORDER BY event_type, channel";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_become_one_json_array_of_rows() {
        let rows = [("a", Some(1.5), None::<i64>), ("b", None, Some(7))];
        assert_eq!(
            json_rows(&rows).unwrap(),
            r#"[["a",1.5,null],["b",null,7]]"#
        );
    }
}
