-- Butler Analytics schema, version 2: aggregation bookkeeping.

-- A bucket's recompute reads one property's events in one time range; this index makes
-- that read proportional to the bucket, not to the table.
CREATE INDEX idx_events_property_time ON analytics_events(property_id, timestamp);

-- Resolution times look up the earliest conversation.started of a conversation on any
-- day; a partial index keeps that lookup small and costs nothing for other events.
CREATE INDEX idx_events_conversation_start
  ON analytics_events(property_id, conversation_id, timestamp)
  WHERE event_type = 'conversation.started';

-- One row per job: how far it has read the dirty hours, and how its runs went.
CREATE TABLE agg_job_state (
  job TEXT PRIMARY KEY,
  dirty_seq INTEGER NOT NULL DEFAULT 0,
  last_run_at TEXT,
  last_success_at TEXT,
  last_error TEXT,
  watermark TEXT
);

-- Buckets a job must recompute once they have closed: fed from agg_dirty_hours and by
-- backfills, emptied as the buckets are written.
CREATE TABLE agg_pending_buckets (
  job TEXT NOT NULL,
  property_id TEXT NOT NULL,
  period_key TEXT NOT NULL,
  bucket_start TEXT NOT NULL,
  bucket_end TEXT NOT NULL,
  PRIMARY KEY (job, property_id, period_key)
) WITHOUT ROWID;
CREATE INDEX idx_pending_buckets_end ON agg_pending_buckets(job, bucket_end);

-- Every run of every job, for `analytics.admin.status` and for operators.
CREATE TABLE agg_job_runs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  job TEXT NOT NULL,
  trigger TEXT NOT NULL,
  started_at TEXT NOT NULL,
  finished_at TEXT NOT NULL,
  periods_recomputed INTEGER NOT NULL,
  rows_written INTEGER NOT NULL,
  duration_ms INTEGER NOT NULL,
  error TEXT
);
CREATE INDEX idx_job_runs_job ON agg_job_runs(job, id);

-- A lease per job, so that two processes on one database never run a job at once.
CREATE TABLE agg_job_leases (
  job TEXT PRIMARY KEY,
  holder TEXT NOT NULL,
  expires_at TEXT NOT NULL
);
