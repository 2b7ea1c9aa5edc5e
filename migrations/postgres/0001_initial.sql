-- Butler Analytics schema for PostgreSQL, version 1: the tables of the SQLite schema
-- (migrations/0001–0004) with the same names, columns and keys, in PostgreSQL's types:
-- instants timestamptz (milliseconds), local dates date, counts bigint, fractions
-- double precision, JSON jsonb. Tables added by the pipeline are documented in
-- ARCHITECTURE.md ("Tables").

-- Raw events (seed). date_partition is the UTC date of the timestamp.
CREATE TABLE analytics_events (
  id text PRIMARY KEY,
  event_type text NOT NULL,
  "timestamp" timestamptz(3) NOT NULL,
  property_id text NOT NULL,
  channel text,
  guest_id text,
  staff_id text,
  conversation_id text,
  task_id text,
  value double precision,
  duration_ms bigint,
  metadata jsonb,
  date_partition date GENERATED ALWAYS AS (("timestamp" AT TIME ZONE 'UTC')::date) STORED
);
CREATE INDEX idx_events_type_date ON analytics_events (event_type, date_partition);
CREATE INDEX idx_events_property_date ON analytics_events (property_id, date_partition);
CREATE INDEX idx_events_channel ON analytics_events (channel, date_partition);
-- A bucket's events, a window's ragged edges: one property's events in a time range.
CREATE INDEX idx_events_property_time ON analytics_events (property_id, "timestamp");
-- Resolution times look up the earliest conversation.started of a conversation.
CREATE INDEX idx_events_conversation_start
  ON analytics_events (property_id, conversation_id, "timestamp")
  WHERE event_type = 'conversation.started';
-- The report's AI resolution rate reads the resolutions and escalations of a range.
CREATE INDEX idx_events_outcomes
  ON analytics_events (property_id, "timestamp", event_type, conversation_id)
  WHERE event_type IN ('conversation.resolved', 'conversation.escalated');

-- Hourly message counts (seed). period_start is the UTC hour.
CREATE TABLE agg_message_counts_hourly (
  period_start timestamptz NOT NULL,
  property_id text NOT NULL,
  channel text NOT NULL,
  direction text NOT NULL,
  count bigint NOT NULL,
  PRIMARY KEY (period_start, property_id, channel, direction)
);

-- Hourly response times (added: the seed's hourly_response_times job had no table).
CREATE TABLE agg_response_times_hourly (
  period_start timestamptz NOT NULL,
  property_id text NOT NULL,
  channel text NOT NULL,
  count bigint NOT NULL,
  avg_ms bigint,
  p50_ms bigint,
  p95_ms bigint,
  p99_ms bigint,
  max_ms bigint,
  PRIMARY KEY (period_start, property_id, channel)
);

-- Daily conversation metrics (seed); period_date is the property's local date.
CREATE TABLE agg_conversation_metrics_daily (
  period_date date NOT NULL,
  property_id text NOT NULL,
  channel text NOT NULL,
  conversations_started bigint DEFAULT 0,
  conversations_resolved bigint DEFAULT 0,
  conversations_escalated bigint DEFAULT 0,
  avg_first_response_ms bigint,
  p50_first_response_ms bigint,
  p95_first_response_ms bigint,
  avg_resolution_minutes bigint,
  p50_resolution_minutes bigint,
  p95_resolution_minutes bigint,
  ai_handled_count bigint DEFAULT 0,
  ai_escalated_count bigint DEFAULT 0,
  PRIMARY KEY (period_date, property_id, channel)
);

-- Daily staff performance (seed).
CREATE TABLE agg_staff_performance_daily (
  period_date date NOT NULL,
  property_id text NOT NULL,
  staff_id text NOT NULL,
  conversations_handled bigint DEFAULT 0,
  tasks_completed bigint DEFAULT 0,
  avg_response_time_ms bigint,
  satisfaction_avg double precision,
  satisfaction_count bigint DEFAULT 0,
  PRIMARY KEY (period_date, property_id, staff_id)
);

-- Daily intent distribution (seed).
CREATE TABLE agg_intent_distribution_daily (
  period_date date NOT NULL,
  property_id text NOT NULL,
  intent text NOT NULL,
  count bigint DEFAULT 0,
  avg_confidence double precision,
  action_taken_count bigint DEFAULT 0,
  escalated_count bigint DEFAULT 0,
  PRIMARY KEY (period_date, property_id, intent)
);

-- Weekly satisfaction trends (seed); period_start is the ISO week's local Monday.
CREATE TABLE agg_satisfaction_weekly (
  period_start date NOT NULL,
  property_id text NOT NULL,
  channel text NOT NULL,
  surveys_sent bigint DEFAULT 0,
  responses_received bigint DEFAULT 0,
  rating_1 bigint DEFAULT 0,
  rating_2 bigint DEFAULT 0,
  rating_3 bigint DEFAULT 0,
  rating_4 bigint DEFAULT 0,
  rating_5 bigint DEFAULT 0,
  avg_rating double precision,
  nps_score double precision,
  PRIMARY KEY (period_start, property_id, channel)
);

-- Monthly summary (seed); period_month is the local month, YYYY-MM.
CREATE TABLE agg_monthly_summary (
  period_month text NOT NULL CHECK (period_month ~ '^[0-9]{4}-[0-9]{2}$'),
  property_id text NOT NULL,
  total_conversations bigint DEFAULT 0,
  total_messages bigint DEFAULT 0,
  total_tasks bigint DEFAULT 0,
  ai_resolution_rate double precision,
  avg_satisfaction double precision,
  avg_response_time_minutes double precision,
  top_intents jsonb,
  channel_breakdown jsonb,
  PRIMARY KEY (period_month, property_id)
);

-- A property's series or report section is one range of one index, measures
-- included.
CREATE INDEX idx_message_counts_series
  ON agg_message_counts_hourly (property_id, period_start, channel, direction) INCLUDE (count);
CREATE INDEX idx_response_times_series
  ON agg_response_times_hourly (property_id, period_start, channel)
  INCLUDE (count, avg_ms, p50_ms, p95_ms, p99_ms, max_ms);
CREATE INDEX idx_conversation_metrics_series
  ON agg_conversation_metrics_daily (property_id, period_date, channel)
  INCLUDE (conversations_started, conversations_resolved, conversations_escalated,
    avg_first_response_ms, p50_first_response_ms, p95_first_response_ms,
    avg_resolution_minutes, p50_resolution_minutes, p95_resolution_minutes,
    ai_handled_count, ai_escalated_count);
CREATE INDEX idx_staff_performance_series
  ON agg_staff_performance_daily (property_id, period_date, staff_id)
  INCLUDE (conversations_handled, tasks_completed, avg_response_time_ms,
    satisfaction_avg, satisfaction_count);
CREATE INDEX idx_intent_distribution_series
  ON agg_intent_distribution_daily (property_id, period_date, intent)
  INCLUDE (count, avg_confidence, action_taken_count, escalated_count);
CREATE INDEX idx_satisfaction_series
  ON agg_satisfaction_weekly (property_id, period_start, channel)
  INCLUDE (surveys_sent, responses_received, rating_1, rating_2, rating_3, rating_4,
    rating_5, avg_rating, nps_score);

-- Rejected messages, kept byte for byte; one row per stream message.
CREATE TABLE analytics_dead_letters (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  subject text NOT NULL,
  stream text NOT NULL,
  stream_sequence bigint NOT NULL,
  published_at timestamptz(3),
  payload bytea NOT NULL,
  headers jsonb NOT NULL,
  reason text NOT NULL,
  detail text NOT NULL,
  received_at timestamptz(3) NOT NULL,
  replayed_at timestamptz(3),
  replayed_event_id text,
  UNIQUE (stream, stream_sequence)
);
CREATE INDEX idx_dead_letters_reason ON analytics_dead_letters (reason, received_at);

-- Live state for the dashboard, kept by ingest. "Latest" is by event timestamp, then
-- event id.
CREATE TABLE live_conversations (
  property_id text NOT NULL,
  conversation_id text NOT NULL,
  last_event_type text NOT NULL,
  last_timestamp timestamptz(3) NOT NULL,
  last_event_id text NOT NULL,
  active boolean NOT NULL,
  PRIMARY KEY (property_id, conversation_id)
);
CREATE INDEX idx_live_conversations_active ON live_conversations (property_id) WHERE active;

CREATE TABLE live_staff (
  property_id text NOT NULL,
  staff_id text NOT NULL,
  last_event_type text NOT NULL,
  last_timestamp timestamptz(3) NOT NULL,
  last_event_id text NOT NULL,
  online boolean NOT NULL,
  PRIMARY KEY (property_id, staff_id)
);
CREATE INDEX idx_live_staff_online ON live_staff (property_id) WHERE online;

CREATE TABLE live_tasks (
  property_id text NOT NULL,
  task_id text NOT NULL,
  created boolean NOT NULL DEFAULT false,
  completed boolean NOT NULL DEFAULT false,
  PRIMARY KEY (property_id, task_id)
);
CREATE INDEX idx_live_tasks_pending ON live_tasks (property_id) WHERE created AND NOT completed;

-- Late-data bookkeeping: each (property, UTC hour) that received new events, with the
-- change sequence of the batch that last touched it.
CREATE TABLE agg_dirty_hours (
  property_id text NOT NULL,
  hour_start timestamptz NOT NULL,
  change_seq bigint NOT NULL,
  PRIMARY KEY (property_id, hour_start)
);
CREATE INDEX idx_dirty_hours_seq ON agg_dirty_hours (change_seq);

-- The change sequence, advanced once per committed batch. Its row lock is held to the
-- end of each batch's transaction, so sequences commit in order.
CREATE TABLE ingest_change_counter (
  id integer PRIMARY KEY CHECK (id = 1),
  last_seq bigint NOT NULL
);
INSERT INTO ingest_change_counter (id, last_seq) VALUES (1, 0);

-- Running tallies per (property, UTC hour, event type, channel), kept by ingest.
CREATE TABLE event_tallies_hour (
  property_id text NOT NULL,
  hour text NOT NULL,              -- UTC 'YYYY-MM-DDTHH'
  event_type text NOT NULL,
  channel text NOT NULL,
  events bigint NOT NULL,
  value_sum double precision NOT NULL,
  value_count bigint NOT NULL,
  duration_sum bigint NOT NULL,
  duration_count bigint NOT NULL,
  rating_1 bigint NOT NULL,
  rating_2 bigint NOT NULL,
  rating_3 bigint NOT NULL,
  rating_4 bigint NOT NULL,
  rating_5 bigint NOT NULL,
  PRIMARY KEY (property_id, hour, event_type, channel)
);

-- One row per job: how far it has read the dirty hours, and how its runs went.
CREATE TABLE agg_job_state (
  job text PRIMARY KEY,
  dirty_seq bigint NOT NULL DEFAULT 0,
  last_run_at timestamptz(3),
  last_success_at timestamptz(3),
  last_error text,
  watermark timestamptz(3)
);

-- Buckets a job must recompute once they have closed.
CREATE TABLE agg_pending_buckets (
  job text NOT NULL,
  property_id text NOT NULL,
  period_key text NOT NULL,
  bucket_start timestamptz(3) NOT NULL,
  bucket_end timestamptz(3) NOT NULL,
  PRIMARY KEY (job, property_id, period_key)
);
CREATE INDEX idx_pending_buckets_end ON agg_pending_buckets (job, bucket_end);

-- Every run of every job.
CREATE TABLE agg_job_runs (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  job text NOT NULL,
  trigger text NOT NULL,
  started_at timestamptz(3) NOT NULL,
  finished_at timestamptz(3) NOT NULL,
  periods_recomputed bigint NOT NULL,
  rows_written bigint NOT NULL,
  duration_ms bigint NOT NULL,
  error text
);
CREATE INDEX idx_job_runs_job ON agg_job_runs (job, id);

-- A lease per job, so that two processes on one database never run a job at once.
CREATE TABLE agg_job_leases (
  job text PRIMARY KEY,
  holder text NOT NULL,
  expires_at timestamptz(3) NOT NULL
);
