-- Butler Analytics schema, version 9: the knowledge gaps of CONTRACT §8 — per intent and
-- day, the `intent.confidence_low` and `satisfaction.feedback_received` events naming it.
ALTER TABLE agg_intent_distribution_daily ADD COLUMN low_confidence_count INTEGER DEFAULT 0;
ALTER TABLE agg_intent_distribution_daily ADD COLUMN feedback_count INTEGER DEFAULT 0;

DROP INDEX idx_intent_distribution_series;
CREATE INDEX idx_intent_distribution_series
  ON agg_intent_distribution_daily(property_id, period_date, intent,
    count, avg_confidence, action_taken_count, escalated_count,
    low_confidence_count, feedback_count);

-- The rows already written lack the new counts: the job's next run recomputes every
-- day whose raw events are still kept, as it does for a job new to the database.
UPDATE agg_job_state SET dirty_seq = 0 WHERE job = 'daily_intent_distribution';
