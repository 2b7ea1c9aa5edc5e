-- Butler Analytics schema, version 1.
-- The seed design's tables keep their exact names and columns; tables added by the
-- pipeline are documented in ARCHITECTURE.md ("Tables").

-- Raw events (seed). `timestamp` is always UTC `YYYY-MM-DDTHH:MM:SS.sssZ`, so string
-- order is time order and `date_partition` is the UTC date.
CREATE TABLE analytics_events (
  id TEXT PRIMARY KEY,
  event_type TEXT NOT NULL,
  timestamp TEXT NOT NULL,
  property_id TEXT NOT NULL,
  channel TEXT,
  guest_id TEXT,
  staff_id TEXT,
  conversation_id TEXT,
  task_id TEXT,
  value REAL,
  duration_ms INTEGER,
  metadata JSON,
  date_partition TEXT GENERATED ALWAYS AS (substr(timestamp, 1, 10)) STORED
);
CREATE INDEX idx_events_type_date ON analytics_events(event_type, date_partition);
CREATE INDEX idx_events_property_date ON analytics_events(property_id, date_partition);
CREATE INDEX idx_events_channel ON analytics_events(channel, date_partition);

-- Hourly message counts (seed).
CREATE TABLE agg_message_counts_hourly (
  period_start TEXT NOT NULL,
  property_id TEXT NOT NULL,
  channel TEXT NOT NULL,
  direction TEXT NOT NULL,
  count INTEGER NOT NULL,
  PRIMARY KEY (period_start, property_id, channel, direction)
);

-- Hourly response times (added: the seed's hourly_response_times job had no table).
CREATE TABLE agg_response_times_hourly (
  period_start TEXT NOT NULL,
  property_id TEXT NOT NULL,
  channel TEXT NOT NULL,
  count INTEGER NOT NULL,
  avg_ms INTEGER,
  p50_ms INTEGER,
  p95_ms INTEGER,
  p99_ms INTEGER,
  max_ms INTEGER,
  PRIMARY KEY (period_start, property_id, channel)
);

-- Daily conversation metrics (seed).
CREATE TABLE agg_conversation_metrics_daily (
  period_date TEXT NOT NULL,
  property_id TEXT NOT NULL,
  channel TEXT NOT NULL,
  conversations_started INTEGER DEFAULT 0,
  conversations_resolved INTEGER DEFAULT 0,
  conversations_escalated INTEGER DEFAULT 0,
  avg_first_response_ms INTEGER,
  p50_first_response_ms INTEGER,
  p95_first_response_ms INTEGER,
  avg_resolution_minutes INTEGER,
  p50_resolution_minutes INTEGER,
  p95_resolution_minutes INTEGER,
  ai_handled_count INTEGER DEFAULT 0,
  ai_escalated_count INTEGER DEFAULT 0,
  PRIMARY KEY (period_date, property_id, channel)
);

-- Daily staff performance (seed).
CREATE TABLE agg_staff_performance_daily (
  period_date TEXT NOT NULL,
  property_id TEXT NOT NULL,
  staff_id TEXT NOT NULL,
  conversations_handled INTEGER DEFAULT 0,
  tasks_completed INTEGER DEFAULT 0,
  avg_response_time_ms INTEGER,
  satisfaction_avg REAL,
  satisfaction_count INTEGER DEFAULT 0,
  PRIMARY KEY (period_date, property_id, staff_id)
);

-- Daily intent distribution (seed).
CREATE TABLE agg_intent_distribution_daily (
  period_date TEXT NOT NULL,
  property_id TEXT NOT NULL,
  intent TEXT NOT NULL,
  count INTEGER DEFAULT 0,
  avg_confidence REAL,
  action_taken_count INTEGER DEFAULT 0,
  escalated_count INTEGER DEFAULT 0,
  PRIMARY KEY (period_date, property_id, intent)
);

-- Weekly satisfaction trends (seed); period_start is the ISO week's Monday.
CREATE TABLE agg_satisfaction_weekly (
  period_start TEXT NOT NULL,
  property_id TEXT NOT NULL,
  channel TEXT NOT NULL,
  surveys_sent INTEGER DEFAULT 0,
  responses_received INTEGER DEFAULT 0,
  rating_1 INTEGER DEFAULT 0,
  rating_2 INTEGER DEFAULT 0,
  rating_3 INTEGER DEFAULT 0,
  rating_4 INTEGER DEFAULT 0,
  rating_5 INTEGER DEFAULT 0,
  avg_rating REAL,
  nps_score REAL,
  PRIMARY KEY (period_start, property_id, channel)
);

-- Monthly summary (seed).
CREATE TABLE agg_monthly_summary (
  period_month TEXT NOT NULL,
  property_id TEXT NOT NULL,
  total_conversations INTEGER DEFAULT 0,
  total_messages INTEGER DEFAULT 0,
  total_tasks INTEGER DEFAULT 0,
  ai_resolution_rate REAL,
  avg_satisfaction REAL,
  avg_response_time_minutes REAL,
  top_intents JSON,
  channel_breakdown JSON,
  PRIMARY KEY (period_month, property_id)
);

-- Rejected messages, kept byte for byte so that nothing is lost and an operator can
-- replay them after a fix. One row per stream message: a redelivered message that is
-- rejected again does not add a second row.
CREATE TABLE analytics_dead_letters (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  subject TEXT NOT NULL,
  stream TEXT NOT NULL,
  stream_sequence INTEGER NOT NULL,
  published_at TEXT,
  payload BLOB NOT NULL,
  headers JSON NOT NULL,
  reason TEXT NOT NULL,
  detail TEXT NOT NULL,
  received_at TEXT NOT NULL,
  replayed_at TEXT,
  replayed_event_id TEXT,
  UNIQUE (stream, stream_sequence)
);
CREATE INDEX idx_dead_letters_reason ON analytics_dead_letters(reason, received_at);

-- Live state for the dashboard, maintained by ingest: the latest lifecycle event of
-- each conversation, the latest staff.* event of each staff member, and whether each
-- task was created and completed. "Latest" is by event timestamp, then event id.
CREATE TABLE live_conversations (
  property_id TEXT NOT NULL,
  conversation_id TEXT NOT NULL,
  last_event_type TEXT NOT NULL,
  last_timestamp TEXT NOT NULL,
  last_event_id TEXT NOT NULL,
  active INTEGER NOT NULL,
  PRIMARY KEY (property_id, conversation_id)
) WITHOUT ROWID;
CREATE INDEX idx_live_conversations_active ON live_conversations(property_id, active);

CREATE TABLE live_staff (
  property_id TEXT NOT NULL,
  staff_id TEXT NOT NULL,
  last_event_type TEXT NOT NULL,
  last_timestamp TEXT NOT NULL,
  last_event_id TEXT NOT NULL,
  online INTEGER NOT NULL,
  PRIMARY KEY (property_id, staff_id)
) WITHOUT ROWID;
CREATE INDEX idx_live_staff_online ON live_staff(property_id, online);

CREATE TABLE live_tasks (
  property_id TEXT NOT NULL,
  task_id TEXT NOT NULL,
  created INTEGER NOT NULL DEFAULT 0,
  completed INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (property_id, task_id)
) WITHOUT ROWID;
CREATE INDEX idx_live_tasks_pending ON live_tasks(property_id, created, completed);

-- Late-data bookkeeping: every UTC hour of every property that received new events,
-- stamped with the ingest change sequence of the batch that last touched it. Each
-- aggregation job remembers the highest sequence it has folded in, and recomputes the
-- buckets covering hours stamped above it.
CREATE TABLE agg_dirty_hours (
  property_id TEXT NOT NULL,
  hour_start TEXT NOT NULL,
  change_seq INTEGER NOT NULL,
  PRIMARY KEY (property_id, hour_start)
) WITHOUT ROWID;
CREATE INDEX idx_dirty_hours_seq ON agg_dirty_hours(change_seq);

-- A single-row counter: the change sequence, advanced once per committed batch.
CREATE TABLE ingest_change_counter (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  last_seq INTEGER NOT NULL
);
INSERT INTO ingest_change_counter (id, last_seq) VALUES (1, 0);
