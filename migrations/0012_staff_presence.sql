-- Butler Analytics schema, version 12: staff presence per local day (CONTRACT §8),
-- written by `daily_staff_presence` from staff.login|logout|status_changed.
CREATE TABLE agg_staff_presence_daily (
  period_date TEXT NOT NULL,
  property_id TEXT NOT NULL,
  staff_id TEXT NOT NULL,
  online_minutes INTEGER DEFAULT 0,
  sessions INTEGER DEFAULT 0,
  PRIMARY KEY (period_date, property_id, staff_id)
);

-- A property's periods read in one range, as for the other tables (version 4).
CREATE INDEX idx_staff_presence_series
  ON agg_staff_presence_daily(property_id, period_date, staff_id, online_minutes, sessions);

-- Whether each staff member was online when a day began: their latest staff event
-- before it. The WHERE clause must stay word for word that of the storage crate's
-- query (`aggregation.rs`).
CREATE INDEX idx_events_staff_presence ON analytics_events(property_id, staff_id, timestamp)
  WHERE event_type IN ('staff.login', 'staff.logout', 'staff.status_changed');
