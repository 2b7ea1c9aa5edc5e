//! The seven jobs of the seed design: name, bucket width, schedule, and the event types
//! each one reads.

use butler_events::EventType as T;
use butler_storage::aggregates::{AggEvent, BucketRows};

use crate::buckets::Granularity;
use crate::rollups;

/// An aggregation job, named as in the seed design.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)]
pub enum Job {
    HourlyMessageCounts,
    HourlyResponseTimes,
    DailyConversationMetrics,
    DailyStaffPerformance,
    DailyIntentDistribution,
    WeeklySatisfactionTrends,
    MonthlySummary,
}

impl Job {
    /// Every job, in schedule order.
    pub const ALL: [Job; 7] = [
        Job::HourlyMessageCounts,
        Job::HourlyResponseTimes,
        Job::DailyConversationMetrics,
        Job::DailyStaffPerformance,
        Job::DailyIntentDistribution,
        Job::WeeklySatisfactionTrends,
        Job::MonthlySummary,
    ];

    /// The seed's job name, used on the command line, in NATS requests and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Job::HourlyMessageCounts => "hourly_message_counts",
            Job::HourlyResponseTimes => "hourly_response_times",
            Job::DailyConversationMetrics => "daily_conversation_metrics",
            Job::DailyStaffPerformance => "daily_staff_performance",
            Job::DailyIntentDistribution => "daily_intent_distribution",
            Job::WeeklySatisfactionTrends => "weekly_satisfaction_trends",
            Job::MonthlySummary => "monthly_summary",
        }
    }

    /// Parses a job name.
    pub fn parse(name: &str) -> Option<Job> {
        Job::ALL.into_iter().find(|j| j.name() == name)
    }

    /// The bucket width of its table.
    pub fn granularity(self) -> Granularity {
        match self {
            Job::HourlyMessageCounts | Job::HourlyResponseTimes => Granularity::Hour,
            Job::DailyConversationMetrics
            | Job::DailyStaffPerformance
            | Job::DailyIntentDistribution => Granularity::Day,
            Job::WeeklySatisfactionTrends => Granularity::Week,
            Job::MonthlySummary => Granularity::Month,
        }
    }

    /// The seed's cron expression (minute hour day-of-month month day-of-week), in
    /// `aggregation.timezone`. The weekly job runs on Monday, for the ISO week just
    /// closed.
    pub fn default_schedule(self) -> &'static str {
        match self {
            Job::HourlyMessageCounts => "0 * * * *",
            Job::HourlyResponseTimes => "5 * * * *",
            Job::DailyConversationMetrics
            | Job::DailyStaffPerformance
            | Job::DailyIntentDistribution => "0 1 * * *",
            Job::WeeklySatisfactionTrends => "0 2 * * 1",
            Job::MonthlySummary => "0 3 1 * *",
        }
    }

    /// The event types its table is computed from.
    pub fn event_types(self) -> &'static [butler_events::EventType] {
        match self {
            Job::HourlyMessageCounts => &[T::MessageReceived, T::MessageSent],
            Job::HourlyResponseTimes => &[T::ResponseTimeRecorded],
            Job::DailyConversationMetrics => &[
                T::ConversationStarted,
                T::ConversationResolved,
                T::ConversationEscalated,
                T::ResponseTimeRecorded,
                T::ResponseAiGenerated,
            ],
            Job::DailyStaffPerformance => &[
                T::ResponseStaffSent,
                T::TaskCompleted,
                T::ResponseTimeRecorded,
                T::SatisfactionRatingReceived,
            ],
            Job::DailyIntentDistribution => &[
                T::IntentClassified,
                T::IntentActionTaken,
                T::ConversationEscalated,
            ],
            Job::WeeklySatisfactionTrends => {
                &[T::SatisfactionSurveySent, T::SatisfactionRatingReceived]
            }
            Job::MonthlySummary => &[
                T::ConversationStarted,
                T::MessageReceived,
                T::MessageSent,
                T::TaskCreated,
                T::ConversationResolved,
                T::ConversationEscalated,
                T::SatisfactionRatingReceived,
                T::ResponseTimeRecorded,
                T::IntentClassified,
            ],
        }
    }

    /// The rows of one bucket. `earliest_start` is used by the conversation metrics'
    /// resolution times only.
    pub fn compute(
        self,
        property: &str,
        key: &str,
        events: &[AggEvent],
        earliest_start: &std::collections::HashMap<String, i64>,
    ) -> BucketRows {
        match self {
            Job::HourlyMessageCounts => {
                BucketRows::MessageCounts(rollups::message_counts(property, key, events))
            }
            Job::HourlyResponseTimes => {
                BucketRows::ResponseTimes(rollups::response_times(property, key, events))
            }
            Job::DailyConversationMetrics => BucketRows::ConversationMetrics(
                rollups::conversation_metrics(property, key, events, earliest_start),
            ),
            Job::DailyStaffPerformance => {
                BucketRows::StaffPerformance(rollups::staff_performance(property, key, events))
            }
            Job::DailyIntentDistribution => {
                BucketRows::IntentDistribution(rollups::intent_distribution(property, key, events))
            }
            Job::WeeklySatisfactionTrends => {
                BucketRows::Satisfaction(rollups::satisfaction(property, key, events))
            }
            Job::MonthlySummary => {
                BucketRows::MonthlySummary(rollups::monthly_summary(property, key, events))
            }
        }
    }
}
