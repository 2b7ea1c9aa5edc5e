//! The aggregation jobs — the seed design's seven and §8's — as one table of [`JobSpec`]s: the table each one
//! writes (which gives its name and bucket width), its schedule, the event types it
//! reads and the roll-up that computes it. Everything else reads [`JOBS`] through
//! [`Job`], so adding a job is adding one entry here.

use std::collections::{BTreeSet, HashMap};

use butler_events::EventType as T;
use butler_events::business::BusinessRules;
use butler_events::{EventType, Granularity};
use butler_storage::aggregation::AggEvent;
use butler_storage::tables::{self, AggTable, BucketRows};
use chrono_tz::Tz;

use crate::rollups;

/// What a roll-up reads of one bucket: its property and period key, its events, the
/// earliest starts its job asks for ([`JobSpec::starts`], else empty), the property's
/// zone, and the business rules in force.
#[derive(Debug, Clone, Copy)]
pub struct BucketInput<'a> {
    /// The property.
    pub property: &'a str,
    /// The period key.
    pub key: &'a str,
    /// The events of the bucket of the job's types.
    pub events: &'a [AggEvent],
    /// Earliest starts by id ([`Starts::OfConversations`], [`Starts::OfTasks`]).
    pub earliest: &'a HashMap<String, i64>,
    /// The staff online when the bucket began ([`Starts::OnlineStaff`]).
    pub online_at_start: &'a BTreeSet<String>,
    /// The bucket's first instant, in milliseconds since the epoch.
    pub start_ms: i64,
    /// The first instant after it.
    pub end_ms: i64,
    /// Now: an open bucket counts a state still in force up to here.
    pub now_ms: i64,
    /// The property's zone.
    pub zone: Tz,
    /// Business hours and SLA targets.
    pub rules: &'a BusinessRules,
}

/// The rows of one bucket. One signature for every job, so the runner calls a job
/// without knowing which one it is.
pub type Compute = fn(&BucketInput<'_>) -> BucketRows;

/// How a change in one bucket reaches later buckets of the same property.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Later {
    /// It does not: each bucket is a function of its own events.
    Unaffected,
    /// Later buckets read earlier events (a conversation's or task's earliest start,
    /// on any day): a change queues every later closed bucket of the property.
    ReadEarlier,
    /// Later buckets start from the state earlier ones leave (who is online): as
    /// [`Later::ReadEarlier`], and while the state is in force a closed bucket with
    /// no events of its own is queued too; an open one counts the state up to now.
    CarryState,
}

/// The earliest starts a job's roll-up reads from outside its bucket (any day still
/// stored), keyed by id. Reading them costs a query per bucket, so only the jobs
/// whose times need them ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Starts {
    /// None.
    Unread,
    /// The earliest `conversation.started` of each conversation resolved in the
    /// bucket without a duration.
    OfConversations,
    /// The earliest `task.created` of each task completed in the bucket.
    OfTasks,
    /// The staff online when the bucket began.
    OnlineStaff,
}

/// Everything that makes one aggregation job different from another. The job's name
/// is not repeated here: it is the `job` of its table's declaration in
/// [`butler_storage::tables`], which is that name's one home.
#[derive(Debug)]
pub struct JobSpec {
    /// The table it writes, which names the job and gives its bucket width.
    pub table: &'static AggTable,
    /// The seed's cron expression (minute hour day-of-month month day-of-week), in
    /// `aggregation.timezone`, used unless `aggregation.schedules` overrides it.
    pub default_schedule: &'static str,
    /// The event types its table is computed from: the only raw events it reads.
    pub event_types: &'static [EventType],
    /// The earliest starts [`JobSpec::compute`] reads.
    pub starts: Starts,
    /// How a change in one bucket reaches later ones.
    pub later: Later,
    /// The roll-up of one bucket (see [`Compute`]).
    pub compute: Compute,
}

/// Every job, in schedule order: the one table the rest of the crate reads. The
/// weekly job runs on Monday, for the ISO week just closed.
pub static JOBS: &[JobSpec] = &[
    JobSpec {
        table: &tables::MESSAGE_COUNTS_HOURLY,
        default_schedule: "0 * * * *",
        event_types: &[T::MessageReceived, T::MessageSent],
        starts: Starts::Unread,
        later: Later::Unaffected,
        compute: |b| BucketRows::of(rollups::message_counts(b.property, b.key, b.events)),
    },
    JobSpec {
        table: &tables::RESPONSE_TIMES_HOURLY,
        default_schedule: "5 * * * *",
        event_types: &[T::ResponseTimeRecorded],
        starts: Starts::Unread,
        later: Later::Unaffected,
        compute: |b| BucketRows::of(rollups::response_times(b.property, b.key, b.events)),
    },
    JobSpec {
        table: &tables::CONVERSATION_METRICS_DAILY,
        default_schedule: "0 1 * * *",
        // Every type: `conversations_active` counts the conversations any event names.
        event_types: &EventType::ALL,
        starts: Starts::OfConversations,
        later: Later::ReadEarlier,
        compute: |b| BucketRows::of(rollups::conversation_metrics(b)),
    },
    JobSpec {
        table: &tables::STAFF_PERFORMANCE_DAILY,
        default_schedule: "0 1 * * *",
        event_types: &[
            T::ResponseStaffSent,
            T::TaskCompleted,
            T::ResponseTimeRecorded,
            T::SatisfactionRatingReceived,
        ],
        starts: Starts::Unread,
        later: Later::Unaffected,
        compute: |b| BucketRows::of(rollups::staff_performance(b.property, b.key, b.events)),
    },
    JobSpec {
        table: &tables::INTENT_DISTRIBUTION_DAILY,
        default_schedule: "0 1 * * *",
        event_types: &[
            T::IntentClassified,
            T::IntentActionTaken,
            T::ConversationEscalated,
            T::IntentConfidenceLow,
            T::SatisfactionFeedbackReceived,
        ],
        starts: Starts::Unread,
        later: Later::Unaffected,
        compute: |b| BucketRows::of(rollups::intent_distribution(b.property, b.key, b.events)),
    },
    JobSpec {
        table: &tables::CHANNEL_DELIVERY_DAILY,
        default_schedule: "0 1 * * *",
        event_types: &[
            T::MessageSent,
            T::MessageDelivered,
            T::MessageRead,
            T::MessageFailed,
        ],
        starts: Starts::Unread,
        later: Later::Unaffected,
        compute: |b| BucketRows::of(rollups::channel_delivery(b.property, b.key, b.events)),
    },
    JobSpec {
        table: &tables::TASK_PERFORMANCE_DAILY,
        default_schedule: "0 1 * * *",
        event_types: &[
            T::TaskCreated,
            T::TaskAssigned,
            T::TaskCompleted,
            T::TaskSlaBreached,
        ],
        starts: Starts::OfTasks,
        later: Later::ReadEarlier,
        compute: |b| {
            BucketRows::of(rollups::task_performance(
                b.property, b.key, b.events, b.earliest,
            ))
        },
    },
    JobSpec {
        table: &tables::STAFF_PRESENCE_DAILY,
        default_schedule: "0 1 * * *",
        event_types: &[T::StaffLogin, T::StaffLogout, T::StaffStatusChanged],
        starts: Starts::OnlineStaff,
        later: Later::CarryState,
        compute: |b| BucketRows::of(rollups::staff_presence(b)),
    },
    JobSpec {
        table: &tables::SATISFACTION_WEEKLY,
        default_schedule: "0 2 * * 1",
        event_types: &[T::SatisfactionSurveySent, T::SatisfactionRatingReceived],
        starts: Starts::Unread,
        later: Later::Unaffected,
        compute: |b| BucketRows::of(rollups::satisfaction(b.property, b.key, b.events)),
    },
    JobSpec {
        table: &tables::MONTHLY_SUMMARY,
        default_schedule: "0 3 1 * *",
        event_types: &[
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
        starts: Starts::Unread,
        later: Later::Unaffected,
        compute: |b| BucketRows::of(rollups::monthly_summary(b.property, b.key, b.events)),
    },
];

/// An aggregation job: a handle on its entry of [`JOBS`], small and `Copy`, so it can
/// be carried through runs, caches and schedules while the table stays the one
/// definition. It is made only from [`JOBS`] ([`Job::all`], [`Job::parse`]), so
/// two handles are the same job exactly when they point at the same entry.
#[derive(Clone, Copy)]
pub struct Job(&'static JobSpec);

impl Job {
    /// Every job, in schedule order.
    pub fn all() -> impl ExactSizeIterator<Item = Job> + Clone {
        JOBS.iter().map(Job)
    }

    /// Parses a job name, as given on the command line, in config keys and in NATS
    /// requests; `None` for a name that is not a job.
    pub fn parse(name: &str) -> Option<Job> {
        Job::all().find(|j| j.name() == name)
    }

    /// The table it writes.
    pub fn table(self) -> &'static AggTable {
        self.0.table
    }

    /// The seed's job name, used on the command line, in NATS requests and metrics.
    #[allow(
        clippy::misnamed_getters,
        reason = "the job's name, which its table's declaration holds, not the table's"
    )]
    pub fn name(self) -> &'static str {
        self.0.table.job
    }

    /// The lease a run of this job holds: what status shows and a second instance
    /// finds taken.
    pub fn lease_name(self) -> String {
        lease_name(self.name())
    }

    /// The bucket width of its table.
    pub fn granularity(self) -> Granularity {
        self.0.table.granularity
    }

    /// The seed's cron expression, in `aggregation.timezone`.
    pub fn default_schedule(self) -> &'static str {
        self.0.default_schedule
    }

    /// The event types its table is computed from.
    pub fn event_types(self) -> &'static [EventType] {
        self.0.event_types
    }

    /// The earliest starts [`Job::compute`] reads.
    pub fn starts(self) -> Starts {
        self.0.starts
    }

    /// How a change in one of its buckets reaches later ones.
    pub fn later(self) -> Later {
        self.0.later
    }

    /// The rows of one bucket; `input.earliest` holds the starts [`Job::starts`]
    /// names.
    pub fn compute(self, input: &BucketInput<'_>) -> BucketRows {
        (self.0.compute)(input)
    }
}

impl PartialEq for Job {
    fn eq(&self, other: &Job) -> bool {
        std::ptr::eq(self.0, other.0)
    }
}

impl Eq for Job {}

impl std::hash::Hash for Job {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::ptr::hash(self.0, state);
    }
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The lease of the job named `job`.
pub(crate) fn lease_name(job: &str) -> String {
    format!("aggregate:{job}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each table is written by exactly one job, the one its declaration names, and
    /// each job computes rows of the table it writes.
    #[test]
    fn every_table_has_its_job() {
        for table in tables::AGG_TABLES {
            let job = Job::parse(table.job).unwrap();
            assert_eq!(job.table().name, table.name);
            let rows = job.compute(&BucketInput {
                property: "p",
                key: "k",
                events: &[],
                earliest: &HashMap::new(),
                online_at_start: &BTreeSet::new(),
                start_ms: 0,
                end_ms: 86_400_000,
                now_ms: 86_400_000,
                zone: chrono_tz::UTC,
                rules: &BusinessRules::default(),
            });
            assert_eq!(rows.table.name, table.name);
        }
        assert_eq!(Job::all().len(), tables::AGG_TABLES.len());
    }

    /// Every default schedule is the contract's (§3), and a cron expression.
    #[test]
    fn default_schedules_are_the_contracts() {
        let schedules: Vec<(&str, &str)> = Job::all()
            .map(|job| (job.name(), job.default_schedule()))
            .collect();
        assert_eq!(
            schedules,
            [
                ("hourly_message_counts", "0 * * * *"),
                ("hourly_response_times", "5 * * * *"),
                ("daily_conversation_metrics", "0 1 * * *"),
                ("daily_staff_performance", "0 1 * * *"),
                ("daily_intent_distribution", "0 1 * * *"),
                ("daily_channel_delivery", "0 1 * * *"),
                ("daily_task_performance", "0 1 * * *"),
                ("daily_staff_presence", "0 1 * * *"),
                ("weekly_satisfaction_trends", "0 2 * * 1"),
                ("monthly_summary", "0 3 1 * *"),
            ]
        );
        for (job, schedule) in schedules {
            assert!(schedule.parse::<croner::Cron>().is_ok(), "{job}");
        }
    }
}
