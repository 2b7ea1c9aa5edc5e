//! The aggregate tables' rows, and the slice of an event the roll-ups read. Plain data:
//! the aggregator computes rows, this crate stores them, the query service reads them.

use butler_events::EventType;

/// What a roll-up needs of a stored event.
#[derive(Debug, Clone, PartialEq)]
pub struct AggEvent {
    /// Event id, the tie-break after the timestamp.
    pub id: String,
    /// Event type.
    pub event_type: EventType,
    /// Milliseconds since the epoch, UTC.
    pub timestamp_ms: i64,
    /// Channel, `None` grouping as `unknown`.
    pub channel: Option<String>,
    /// Staff member.
    pub staff_id: Option<String>,
    /// Conversation.
    pub conversation_id: Option<String>,
    /// Rating, confidence, …
    pub value: Option<f64>,
    /// Duration in milliseconds.
    pub duration_ms: Option<i64>,
    /// `metadata.intent` when it is a string.
    pub intent: Option<String>,
}

/// A row of `agg_message_counts_hourly`.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub struct MessageCountRow {
    pub period_start: String,
    pub property_id: String,
    pub channel: String,
    pub direction: String,
    pub count: i64,
}

/// A row of `agg_response_times_hourly`.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub struct ResponseTimeRow {
    pub period_start: String,
    pub property_id: String,
    pub channel: String,
    pub count: i64,
    pub avg_ms: Option<i64>,
    pub p50_ms: Option<i64>,
    pub p95_ms: Option<i64>,
    pub p99_ms: Option<i64>,
    pub max_ms: Option<i64>,
}

/// A row of `agg_conversation_metrics_daily`.
#[derive(Debug, Clone, PartialEq, Default)]
#[allow(missing_docs)]
pub struct ConversationMetricsRow {
    pub period_date: String,
    pub property_id: String,
    pub channel: String,
    pub conversations_started: i64,
    pub conversations_resolved: i64,
    pub conversations_escalated: i64,
    pub avg_first_response_ms: Option<i64>,
    pub p50_first_response_ms: Option<i64>,
    pub p95_first_response_ms: Option<i64>,
    pub avg_resolution_minutes: Option<i64>,
    pub p50_resolution_minutes: Option<i64>,
    pub p95_resolution_minutes: Option<i64>,
    pub ai_handled_count: i64,
    pub ai_escalated_count: i64,
}

/// A row of `agg_staff_performance_daily`.
#[derive(Debug, Clone, PartialEq, Default)]
#[allow(missing_docs)]
pub struct StaffPerformanceRow {
    pub period_date: String,
    pub property_id: String,
    pub staff_id: String,
    pub conversations_handled: i64,
    pub tasks_completed: i64,
    pub avg_response_time_ms: Option<i64>,
    pub satisfaction_avg: Option<f64>,
    pub satisfaction_count: i64,
}

/// A row of `agg_intent_distribution_daily`.
#[derive(Debug, Clone, PartialEq, Default)]
#[allow(missing_docs)]
pub struct IntentDistributionRow {
    pub period_date: String,
    pub property_id: String,
    pub intent: String,
    pub count: i64,
    pub avg_confidence: Option<f64>,
    pub action_taken_count: i64,
    pub escalated_count: i64,
}

/// A row of `agg_satisfaction_weekly`.
#[derive(Debug, Clone, PartialEq, Default)]
#[allow(missing_docs)]
pub struct SatisfactionRow {
    pub period_start: String,
    pub property_id: String,
    pub channel: String,
    pub surveys_sent: i64,
    pub responses_received: i64,
    /// Counts of ratings 1 to 5.
    pub ratings: [i64; 5],
    pub avg_rating: Option<f64>,
    pub nps_score: Option<f64>,
}

/// A row of `agg_monthly_summary`.
#[derive(Debug, Clone, PartialEq, Default)]
#[allow(missing_docs)]
pub struct MonthlySummaryRow {
    pub period_month: String,
    pub property_id: String,
    pub total_conversations: i64,
    pub total_messages: i64,
    pub total_tasks: i64,
    pub ai_resolution_rate: Option<f64>,
    pub avg_satisfaction: Option<f64>,
    pub avg_response_time_minutes: Option<f64>,
    /// JSON array of `{"intent","count"}`.
    pub top_intents: String,
    /// JSON object `{channel: count}`.
    pub channel_breakdown: String,
}

/// The rows of one bucket of one table.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum BucketRows {
    MessageCounts(Vec<MessageCountRow>),
    ResponseTimes(Vec<ResponseTimeRow>),
    ConversationMetrics(Vec<ConversationMetricsRow>),
    StaffPerformance(Vec<StaffPerformanceRow>),
    IntentDistribution(Vec<IntentDistributionRow>),
    Satisfaction(Vec<SatisfactionRow>),
    MonthlySummary(Vec<MonthlySummaryRow>),
}

impl BucketRows {
    /// How many rows.
    pub fn len(&self) -> usize {
        match self {
            BucketRows::MessageCounts(r) => r.len(),
            BucketRows::ResponseTimes(r) => r.len(),
            BucketRows::ConversationMetrics(r) => r.len(),
            BucketRows::StaffPerformance(r) => r.len(),
            BucketRows::IntentDistribution(r) => r.len(),
            BucketRows::Satisfaction(r) => r.len(),
            BucketRows::MonthlySummary(r) => r.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
