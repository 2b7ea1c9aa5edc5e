-- Butler Analytics schema, version 4: a property's periods read in one range.

-- Time series and reports read one property's rows over a range of periods. The seed's
-- primary keys lead with the period, so such a read walked every property's rows of the
-- range and looked each row up for its measures. These indexes lead with the property
-- and carry every measure column the series catalogue reads, so the read is one range
-- of one index. (agg_monthly_summary has a row per property and month: its primary key
-- serves.)
CREATE INDEX idx_message_counts_series
  ON agg_message_counts_hourly(property_id, period_start, channel, direction, count);
CREATE INDEX idx_response_times_series
  ON agg_response_times_hourly(property_id, period_start, channel,
    count, avg_ms, p50_ms, p95_ms, p99_ms, max_ms);
CREATE INDEX idx_conversation_metrics_series
  ON agg_conversation_metrics_daily(property_id, period_date, channel,
    conversations_started, conversations_resolved, conversations_escalated,
    avg_first_response_ms, p50_first_response_ms, p95_first_response_ms,
    avg_resolution_minutes, p50_resolution_minutes, p95_resolution_minutes,
    ai_handled_count, ai_escalated_count);
CREATE INDEX idx_staff_performance_series
  ON agg_staff_performance_daily(property_id, period_date, staff_id,
    conversations_handled, tasks_completed, avg_response_time_ms,
    satisfaction_avg, satisfaction_count);
CREATE INDEX idx_intent_distribution_series
  ON agg_intent_distribution_daily(property_id, period_date, intent,
    count, avg_confidence, action_taken_count, escalated_count);
CREATE INDEX idx_satisfaction_series
  ON agg_satisfaction_weekly(property_id, period_start, channel,
    surveys_sent, responses_received, rating_1, rating_2, rating_3, rating_4, rating_5,
    avg_rating, nps_score);
