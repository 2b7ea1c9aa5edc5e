//! The seven jobs of the seed design: the table each one writes (which gives its name
//! and bucket width), its schedule, and the event types it reads.

use butler_events::EventType as T;
use butler_events::Granularity;
use butler_storage::aggregation::AggEvent;
use butler_storage::tables::{self, AggTable, BucketRows};

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

    /// The table it writes.
    pub fn table(self) -> &'static AggTable {
        match self {
            Job::HourlyMessageCounts => &tables::MESSAGE_COUNTS_HOURLY,
            Job::HourlyResponseTimes => &tables::RESPONSE_TIMES_HOURLY,
            Job::DailyConversationMetrics => &tables::CONVERSATION_METRICS_DAILY,
            Job::DailyStaffPerformance => &tables::STAFF_PERFORMANCE_DAILY,
            Job::DailyIntentDistribution => &tables::INTENT_DISTRIBUTION_DAILY,
            Job::WeeklySatisfactionTrends => &tables::SATISFACTION_WEEKLY,
            Job::MonthlySummary => &tables::MONTHLY_SUMMARY,
        }
    }

    /// The seed's job name, used on the command line, in NATS requests and metrics.
    #[allow(
        clippy::misnamed_getters,
        reason = "the job's name, which its table's declaration holds, not the table's"
    )]
    pub fn name(self) -> &'static str {
        self.table().job
    }

    /// Parses a job name.
    pub fn parse(name: &str) -> Option<Job> {
        Job::ALL.into_iter().find(|j| j.name() == name)
    }

    /// The bucket width of its table.
    pub fn granularity(self) -> Granularity {
        self.table().granularity
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
                BucketRows::of(rollups::message_counts(property, key, events))
            }
            Job::HourlyResponseTimes => {
                BucketRows::of(rollups::response_times(property, key, events))
            }
            Job::DailyConversationMetrics => BucketRows::of(rollups::conversation_metrics(
                property,
                key,
                events,
                earliest_start,
            )),
            Job::DailyStaffPerformance => {
                BucketRows::of(rollups::staff_performance(property, key, events))
            }
            Job::DailyIntentDistribution => {
                BucketRows::of(rollups::intent_distribution(property, key, events))
            }
            Job::WeeklySatisfactionTrends => {
                BucketRows::of(rollups::satisfaction(property, key, events))
            }
            Job::MonthlySummary => BucketRows::of(rollups::monthly_summary(property, key, events)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each table is written by exactly the job its declaration names.
    #[test]
    fn every_table_has_its_job() {
        for table in tables::AGG_TABLES {
            let job = Job::parse(table.job).unwrap();
            assert_eq!(job.table().name, table.name);
        }
        assert_eq!(Job::ALL.len(), tables::AGG_TABLES.len());
    }
}
