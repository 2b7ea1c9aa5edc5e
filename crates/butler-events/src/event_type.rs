//! The closed set of event types Butler services publish.

use std::fmt;

macro_rules! event_types {
    ($($variant:ident => $name:literal,)*) => {
        /// One of the 25 event types of CONTRACT §1; the subject suffix and the stored
        /// `event_type` column use [`EventType::as_str`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[allow(missing_docs)]
        pub enum EventType {
            $($variant,)*
        }

        impl EventType {
            /// Every type, in the contract's order, for metrics and tests that must
            /// cover them all; a type's discriminant (`t as usize`) is its position
            /// here, so arrays sized `ALL.len()` can be indexed by type.
            pub const ALL: [EventType; [$($name),*].len()] = [$(EventType::$variant,)*];

            /// The dotted name, e.g. `message.received`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventType::$variant => $name,)*
                }
            }

            /// Parses a dotted name; `None` for anything that is not one of the 25.
            pub fn parse(name: &str) -> Option<EventType> {
                match name {
                    $($name => Some(EventType::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

event_types! {
    MessageReceived => "message.received",
    MessageSent => "message.sent",
    MessageDelivered => "message.delivered",
    MessageRead => "message.read",
    MessageFailed => "message.failed",
    ConversationStarted => "conversation.started",
    ConversationEscalated => "conversation.escalated",
    ConversationResolved => "conversation.resolved",
    ConversationClosed => "conversation.closed",
    ResponseAiGenerated => "response.ai_generated",
    ResponseStaffSent => "response.staff_sent",
    ResponseTimeRecorded => "response.time_recorded",
    TaskCreated => "task.created",
    TaskAssigned => "task.assigned",
    TaskCompleted => "task.completed",
    TaskSlaBreached => "task.sla_breached",
    IntentClassified => "intent.classified",
    IntentConfidenceLow => "intent.confidence_low",
    IntentActionTaken => "intent.action_taken",
    SatisfactionSurveySent => "satisfaction.survey_sent",
    SatisfactionRatingReceived => "satisfaction.rating_received",
    SatisfactionFeedbackReceived => "satisfaction.feedback_received",
    StaffLogin => "staff.login",
    StaffLogout => "staff.logout",
    StaffStatusChanged => "staff.status_changed",
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_round_trips_through_its_name() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
        let mut names: Vec<_> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 25);
    }

    #[test]
    fn unknown_names_are_not_types() {
        assert_eq!(EventType::parse("guest.teleported"), None);
        assert_eq!(EventType::parse("message"), None);
        assert_eq!(EventType::parse("MESSAGE.RECEIVED"), None);
    }
}
