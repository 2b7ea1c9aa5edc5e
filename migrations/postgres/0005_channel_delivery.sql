-- Butler Analytics schema on PostgreSQL, version 5: message delivery per channel
-- (CONTRACT §8), written by `daily_channel_delivery` from
-- message.sent|delivered|read|failed.
CREATE TABLE agg_channel_delivery_daily (
  period_date date NOT NULL,
  property_id text NOT NULL,
  channel text NOT NULL,
  sent bigint DEFAULT 0,
  delivered bigint DEFAULT 0,
  read bigint DEFAULT 0,
  failed bigint DEFAULT 0,
  PRIMARY KEY (period_date, property_id, channel)
);

CREATE INDEX idx_channel_delivery_series
  ON agg_channel_delivery_daily (property_id, period_date, channel)
  INCLUDE (sent, delivered, read, failed);
