-- Butler Analytics PostgreSQL schema, version 4: bounded live state
-- (`retention.live_state`); see the SQLite migration 0007 for the design. Pruning
-- takes an exclusive transaction-level advisory lock and ingest a shared one, so an
-- ingest transaction never reads the horizon from before a prune it then runs beside.
CREATE TABLE live_state_horizon (
  id int PRIMARY KEY CHECK (id = 1),
  pruned_before timestamptz(3)
);
INSERT INTO live_state_horizon (id, pruned_before) VALUES (1, NULL);

ALTER TABLE live_tasks ADD COLUMN last_timestamp timestamptz(3) NOT NULL DEFAULT 'epoch';

CREATE INDEX idx_events_live_conversation ON analytics_events (property_id, conversation_id)
  WHERE event_type IN ('conversation.resolved', 'conversation.closed');
CREATE INDEX idx_events_live_staff ON analytics_events (property_id, staff_id)
  WHERE event_type IN ('staff.logout', 'staff.status_changed');
CREATE INDEX idx_events_live_task ON analytics_events (property_id, task_id)
  WHERE event_type = 'task.completed';

UPDATE live_tasks t SET last_timestamp = m.last
FROM (SELECT property_id, task_id, max("timestamp") AS last FROM analytics_events
      WHERE event_type IN ('task.created', 'task.completed') AND task_id IS NOT NULL
      GROUP BY 1, 2) m
WHERE t.property_id = m.property_id AND t.task_id = m.task_id;
