-- Butler Analytics schema on PostgreSQL, version 9: staff presence per local day
-- (CONTRACT §8), written by `daily_staff_presence` from
-- staff.login|logout|status_changed.
CREATE TABLE agg_staff_presence_daily (
  period_date date NOT NULL,
  property_id text NOT NULL,
  staff_id text NOT NULL,
  online_minutes bigint DEFAULT 0,
  sessions bigint DEFAULT 0,
  PRIMARY KEY (period_date, property_id, staff_id)
);

CREATE INDEX idx_staff_presence_series
  ON agg_staff_presence_daily (property_id, period_date, staff_id)
  INCLUDE (online_minutes, sessions);

-- Whether each staff member was online when a day began: their latest staff event
-- before it.
CREATE INDEX idx_events_staff_presence ON analytics_events (property_id, staff_id, "timestamp")
  WHERE event_type IN ('staff.login', 'staff.logout', 'staff.status_changed');
