-- Butler Analytics schema, version 8: message delivery per channel (CONTRACT §8),
-- written by `daily_channel_delivery` from message.sent|delivered|read|failed.
CREATE TABLE agg_channel_delivery_daily (
  period_date TEXT NOT NULL,
  property_id TEXT NOT NULL,
  channel TEXT NOT NULL,
  sent INTEGER DEFAULT 0,
  delivered INTEGER DEFAULT 0,
  read INTEGER DEFAULT 0,
  failed INTEGER DEFAULT 0,
  PRIMARY KEY (period_date, property_id, channel)
);

-- A property's periods read in one range, as for the other tables (version 4).
CREATE INDEX idx_channel_delivery_series
  ON agg_channel_delivery_daily(property_id, period_date, channel,
    sent, delivered, read, failed);
