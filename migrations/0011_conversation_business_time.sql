-- Butler Analytics schema, version 11: CONTRACT §8's columns of the daily conversation
-- metrics — conversations any event names, first responses and resolutions timed in
-- business time against the first-response target, and conversations the assistant
-- resolved alone.
ALTER TABLE agg_conversation_metrics_daily ADD COLUMN conversations_active INTEGER DEFAULT 0;
ALTER TABLE agg_conversation_metrics_daily ADD COLUMN first_responses INTEGER DEFAULT 0;
ALTER TABLE agg_conversation_metrics_daily ADD COLUMN avg_first_response_business_ms INTEGER;
ALTER TABLE agg_conversation_metrics_daily ADD COLUMN p50_first_response_business_ms INTEGER;
ALTER TABLE agg_conversation_metrics_daily ADD COLUMN p95_first_response_business_ms INTEGER;
ALTER TABLE agg_conversation_metrics_daily ADD COLUMN first_response_sla_met INTEGER DEFAULT 0;
ALTER TABLE agg_conversation_metrics_daily ADD COLUMN resolutions_timed INTEGER DEFAULT 0;
ALTER TABLE agg_conversation_metrics_daily ADD COLUMN avg_resolution_business_minutes INTEGER;
ALTER TABLE agg_conversation_metrics_daily ADD COLUMN ai_resolved_count INTEGER DEFAULT 0;

DROP INDEX idx_conversation_metrics_series;
CREATE INDEX idx_conversation_metrics_series
  ON agg_conversation_metrics_daily(property_id, period_date, channel,
    conversations_started, conversations_resolved, conversations_escalated,
    avg_first_response_ms, p50_first_response_ms, p95_first_response_ms,
    avg_resolution_minutes, p50_resolution_minutes, p95_resolution_minutes,
    ai_handled_count, ai_escalated_count, conversations_active, first_responses,
    avg_first_response_business_ms, p50_first_response_business_ms,
    p95_first_response_business_ms, first_response_sla_met, resolutions_timed,
    avg_resolution_business_minutes, ai_resolved_count);

-- The rows already written lack the new columns: the job's next run recomputes every
-- day whose raw events are still kept, as it does for a job new to the database.
UPDATE agg_job_state SET dirty_seq = 0 WHERE job = 'daily_conversation_metrics';
