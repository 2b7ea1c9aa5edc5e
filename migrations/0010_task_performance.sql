-- Butler Analytics schema, version 10: task performance per day (CONTRACT §8), written
-- by `daily_task_performance` from task.created|assigned|completed|sla_breached.
CREATE TABLE agg_task_performance_daily (
  period_date TEXT NOT NULL,
  property_id TEXT NOT NULL,
  tasks_created INTEGER DEFAULT 0,
  tasks_assigned INTEGER DEFAULT 0,
  tasks_completed INTEGER DEFAULT 0,
  sla_breached INTEGER DEFAULT 0,
  completions_timed INTEGER DEFAULT 0,
  avg_completion_minutes INTEGER,
  p50_completion_minutes INTEGER,
  p95_completion_minutes INTEGER,
  PRIMARY KEY (period_date, property_id)
);

-- A property's periods read in one range, as for the other tables (version 4).
CREATE INDEX idx_task_performance_series
  ON agg_task_performance_daily(property_id, period_date,
    tasks_created, tasks_assigned, tasks_completed, sla_breached, completions_timed,
    avg_completion_minutes, p50_completion_minutes, p95_completion_minutes);

-- A completion's time runs from its task's earliest creation, on any day still stored:
-- the creations alone, by task.
CREATE INDEX idx_events_task_created ON analytics_events(property_id, task_id, timestamp)
  WHERE event_type = 'task.created';
