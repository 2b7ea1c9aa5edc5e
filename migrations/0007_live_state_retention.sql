-- Butler Analytics schema, version 7: bounded live state (`retention.live_state`).
-- Retention prunes conversations resolved or closed, staff offline and tasks completed
-- longer ago than that. `live_state_horizon.pruned_before` is the latest cutoff any
-- pruning used: every pruned row's latest event is older. An event older than it, for a
-- key without a row, may belong to a pruned key, so ingest rebuilds that key's state
-- from its raw events before applying the event; a task event always may, since a
-- task's flags do not depend on the order of its events. A key without a row has, if
-- anything, a finishing event as its latest (only finished rows are pruned, and any
-- later event would have made a row again), so the indexes below hold the finishing
-- events alone.
CREATE TABLE live_state_horizon (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  pruned_before TEXT
);
INSERT INTO live_state_horizon (id, pruned_before) VALUES (1, NULL);

-- The latest timestamp among a task's events: when it was completed, for pruning.
ALTER TABLE live_tasks ADD COLUMN last_timestamp TEXT NOT NULL DEFAULT '1970-01-01T00:00:00.000Z';

-- One key's finishing events. The WHERE clauses must stay word for word those of the
-- storage crate's rebuild queries (`live_state.rs`).
CREATE INDEX idx_events_live_conversation ON analytics_events(property_id, conversation_id)
  WHERE event_type IN ('conversation.resolved', 'conversation.closed');
CREATE INDEX idx_events_live_staff ON analytics_events(property_id, staff_id)
  WHERE event_type IN ('staff.logout', 'staff.status_changed');
CREATE INDEX idx_events_live_task ON analytics_events(property_id, task_id)
  WHERE event_type = 'task.completed';

UPDATE live_tasks SET last_timestamp = coalesce((
  SELECT max(e.timestamp) FROM analytics_events e
  WHERE e.property_id = live_tasks.property_id AND e.task_id = live_tasks.task_id
    AND e.event_type IN ('task.created', 'task.completed')), last_timestamp);
