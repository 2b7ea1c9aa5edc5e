-- Butler Analytics schema, version 3: running tallies kept by ingest.

-- The dashboard and the report's summary and satisfaction sections need counts and
-- sums of a few event types over arbitrary windows. Ingest adds every new event of
-- those types to its UTC hour here, in the batch's transaction, so a window reads its
-- whole hours from this table and only its ragged edges (under an hour each) from
-- analytics_events. Only the satisfaction types are kept per channel (a null channel
-- as 'unknown'); the others are summed over channels, under '*'.
CREATE TABLE event_tallies_hour (
  property_id TEXT NOT NULL,
  hour TEXT NOT NULL,              -- UTC 'YYYY-MM-DDTHH'
  event_type TEXT NOT NULL,
  channel TEXT NOT NULL,
  events INTEGER NOT NULL,
  value_sum REAL NOT NULL,         -- sum of value where present
  value_count INTEGER NOT NULL,
  duration_sum INTEGER NOT NULL,   -- sum of duration_ms where present
  duration_count INTEGER NOT NULL,
  rating_1 INTEGER NOT NULL,       -- satisfaction.rating_received by value
  rating_2 INTEGER NOT NULL,
  rating_3 INTEGER NOT NULL,
  rating_4 INTEGER NOT NULL,
  rating_5 INTEGER NOT NULL,
  PRIMARY KEY (property_id, hour, event_type, channel)
);

-- Events stored before this version.
INSERT INTO event_tallies_hour
SELECT property_id, substr(timestamp, 1, 13), event_type,
       CASE WHEN event_type IN ('satisfaction.survey_sent', 'satisfaction.rating_received')
            THEN coalesce(channel, 'unknown') ELSE '*' END,
       count(*), total(value), count(value), coalesce(sum(duration_ms), 0), count(duration_ms),
       count(*) FILTER (WHERE event_type = 'satisfaction.rating_received' AND value = 1),
       count(*) FILTER (WHERE event_type = 'satisfaction.rating_received' AND value = 2),
       count(*) FILTER (WHERE event_type = 'satisfaction.rating_received' AND value = 3),
       count(*) FILTER (WHERE event_type = 'satisfaction.rating_received' AND value = 4),
       count(*) FILTER (WHERE event_type = 'satisfaction.rating_received' AND value = 5)
FROM analytics_events
WHERE event_type IN ('conversation.started', 'conversation.resolved', 'conversation.escalated',
  'message.received', 'message.sent', 'response.time_recorded', 'task.created',
  'satisfaction.survey_sent', 'satisfaction.rating_received')
GROUP BY 1, 2, 3, 4;

-- The report's AI resolution rate needs the distinct conversations resolved and
-- escalated in its range; this partial index holds just those events.
CREATE INDEX idx_events_outcomes
  ON analytics_events(property_id, timestamp, event_type, conversation_id)
  WHERE event_type IN ('conversation.resolved', 'conversation.escalated');
