//! The definitions of CONTRACT §3, as functions from one bucket's events to its rows.
//! Each function sees the events of one property whose timestamps fall in the bucket,
//! and emits a row only where the bucket has an event that the row counts. The
//! formulas they share with the dashboard and the report are in
//! [`butler_events::formulas`].

use std::collections::{BTreeMap, BTreeSet, HashMap};

use butler_events::EventType as T;
use butler_events::formulas::{Ratings, ai_resolution_rate, mean, minutes, nearest_rank, round};
use butler_storage::aggregation::AggEvent;
use butler_storage::tables::{
    ChannelDeliveryRow, ConversationMetricsRow, IntentDistributionRow, JsonText, MessageCountRow,
    MonthlySummaryRow, ResponseTimeRow, SatisfactionRow, StaffPerformanceRow, TaskPerformanceRow,
};

/// A null channel groups as `unknown`.
fn channel(e: &AggEvent) -> &str {
    e.channel.as_deref().unwrap_or("unknown")
}

/// `agg_message_counts_hourly`.
pub fn message_counts(property: &str, key: &str, events: &[AggEvent]) -> Vec<MessageCountRow> {
    let mut counts: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for e in events {
        let direction = match e.event_type {
            T::MessageReceived => "inbound",
            T::MessageSent => "outbound",
            _ => continue,
        };
        *counts.entry((channel(e), direction)).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|((channel, direction), count)| MessageCountRow {
            period_start: key.to_owned(),
            property_id: property.to_owned(),
            channel: channel.to_owned(),
            direction: direction.to_owned(),
            count,
        })
        .collect()
}

/// `agg_response_times_hourly`.
pub fn response_times(property: &str, key: &str, events: &[AggEvent]) -> Vec<ResponseTimeRow> {
    let mut by_channel: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for e in events {
        if let (T::ResponseTimeRecorded, Some(ms)) = (e.event_type, e.duration_ms) {
            by_channel.entry(channel(e)).or_default().push(ms);
        }
    }
    by_channel
        .into_iter()
        .map(|(channel, mut ms)| {
            ms.sort_unstable();
            ResponseTimeRow {
                period_start: key.to_owned(),
                property_id: property.to_owned(),
                channel: channel.to_owned(),
                count: ms.len() as i64,
                avg_ms: mean(ms.iter().map(|v| *v as f64)).map(round),
                p50_ms: nearest_rank(&ms, 50),
                p95_ms: nearest_rank(&ms, 95),
                p99_ms: nearest_rank(&ms, 99),
                max_ms: ms.last().copied(),
            }
        })
        .collect()
}

/// `agg_conversation_metrics_daily`. `earliest_start` maps a conversationId to the
/// timestamp of its earliest stored `conversation.started` (any day, any channel).
pub fn conversation_metrics(
    property: &str,
    key: &str,
    events: &[AggEvent],
    earliest_start: &HashMap<String, i64>,
) -> Vec<ConversationMetricsRow> {
    let mut by_channel: BTreeMap<&str, Vec<&AggEvent>> = BTreeMap::new();
    for e in events {
        by_channel.entry(channel(e)).or_default().push(e);
    }
    let mut rows = Vec::new();
    for (channel, events) in by_channel {
        let mut row = ConversationMetricsRow {
            period_date: key.to_owned(),
            property_id: property.to_owned(),
            channel: channel.to_owned(),
            ..Default::default()
        };
        // First response per conversation: earliest by (timestamp, id); an event
        // without a conversation stands for itself.
        let mut first: HashMap<&str, &AggEvent> = HashMap::new();
        let mut first_ms: Vec<i64> = Vec::new();
        let mut resolution_ms: Vec<i64> = Vec::new();
        let mut ai_handled: BTreeSet<&str> = BTreeSet::new();
        let mut escalated: BTreeSet<&str> = BTreeSet::new();
        for e in &events {
            match e.event_type {
                T::ConversationStarted => row.conversations_started += 1,
                T::ConversationEscalated => {
                    row.conversations_escalated += 1;
                    if let Some(c) = &e.conversation_id {
                        escalated.insert(c);
                    }
                }
                T::ConversationResolved => {
                    row.conversations_resolved += 1;
                    let from_start = || {
                        let c = e.conversation_id.as_ref()?;
                        let start = *earliest_start.get(c)?;
                        (start <= e.timestamp_ms).then(|| e.timestamp_ms - start)
                    };
                    if let Some(ms) = e.duration_ms.or_else(from_start) {
                        resolution_ms.push(ms);
                    }
                }
                T::ResponseTimeRecorded => {
                    let Some(ms) = e.duration_ms else { continue };
                    match &e.conversation_id {
                        None => first_ms.push(ms),
                        Some(c) => {
                            let slot = first.entry(c).or_insert(e);
                            if (e.timestamp_ms, &e.id) < (slot.timestamp_ms, &slot.id) {
                                *slot = e;
                            }
                        }
                    }
                }
                T::ResponseAiGenerated => {
                    if let Some(c) = &e.conversation_id {
                        ai_handled.insert(c);
                    }
                }
                _ => {}
            }
        }
        first_ms.extend(first.values().filter_map(|e| e.duration_ms));
        first_ms.sort_unstable();
        resolution_ms.sort_unstable();
        row.avg_first_response_ms = mean(first_ms.iter().map(|v| *v as f64)).map(round);
        row.p50_first_response_ms = nearest_rank(&first_ms, 50);
        row.p95_first_response_ms = nearest_rank(&first_ms, 95);
        let whole_minutes = |ms: i64| round(minutes(ms as f64));
        row.avg_resolution_minutes =
            mean(resolution_ms.iter().map(|v| *v as f64)).map(|m| round(minutes(m)));
        row.p50_resolution_minutes = nearest_rank(&resolution_ms, 50).map(whole_minutes);
        row.p95_resolution_minutes = nearest_rank(&resolution_ms, 95).map(whole_minutes);
        row.ai_handled_count = ai_handled.len() as i64;
        row.ai_escalated_count = ai_handled.intersection(&escalated).count() as i64;
        let counts_something =
            row.conversations_started + row.conversations_resolved + row.conversations_escalated
                > 0
                || !first_ms.is_empty()
                || row.ai_handled_count > 0;
        if counts_something {
            rows.push(row);
        }
    }
    rows
}

/// `agg_staff_performance_daily`.
pub fn staff_performance(
    property: &str,
    key: &str,
    events: &[AggEvent],
) -> Vec<StaffPerformanceRow> {
    #[derive(Default)]
    struct Acc<'a> {
        conversations: BTreeSet<&'a str>,
        tasks: i64,
        response_ms: Vec<f64>,
        ratings: Ratings,
    }
    let mut by_staff: BTreeMap<&str, Acc> = BTreeMap::new();
    for e in events {
        let Some(staff) = e.staff_id.as_deref() else {
            continue;
        };
        match e.event_type {
            T::ResponseStaffSent => {
                if let Some(c) = &e.conversation_id {
                    by_staff.entry(staff).or_default().conversations.insert(c);
                }
            }
            T::TaskCompleted => by_staff.entry(staff).or_default().tasks += 1,
            T::ResponseTimeRecorded => {
                if let Some(ms) = e.duration_ms {
                    by_staff
                        .entry(staff)
                        .or_default()
                        .response_ms
                        .push(ms as f64);
                }
            }
            T::SatisfactionRatingReceived => {
                if let Some(v) = e.value {
                    by_staff.entry(staff).or_default().ratings.add(v);
                }
            }
            _ => {}
        }
    }
    by_staff
        .into_iter()
        .map(|(staff, acc)| StaffPerformanceRow {
            period_date: key.to_owned(),
            property_id: property.to_owned(),
            staff_id: staff.to_owned(),
            conversations_handled: acc.conversations.len() as i64,
            tasks_completed: acc.tasks,
            avg_response_time_ms: mean(acc.response_ms.iter().copied()).map(round),
            satisfaction_avg: acc.ratings.mean(),
            satisfaction_count: acc.ratings.responses(),
        })
        .collect()
}

/// `agg_intent_distribution_daily`, with §8's knowledge gaps: an intent the assistant
/// was unsure of has its row even on a day it was never classified.
pub fn intent_distribution(
    property: &str,
    key: &str,
    events: &[AggEvent],
) -> Vec<IntentDistributionRow> {
    #[derive(Default)]
    struct Acc {
        count: i64,
        confidences: Vec<f64>,
        actions: i64,
        escalations: i64,
        low_confidence: i64,
        feedback: i64,
    }
    let mut by_intent: BTreeMap<&str, Acc> = BTreeMap::new();
    for e in events {
        let Some(intent) = e.intent.as_deref() else {
            continue;
        };
        match e.event_type {
            T::IntentClassified => {
                let acc = by_intent.entry(intent).or_default();
                acc.count += 1;
                acc.confidences.extend(e.value);
            }
            T::IntentActionTaken => by_intent.entry(intent).or_default().actions += 1,
            T::ConversationEscalated => by_intent.entry(intent).or_default().escalations += 1,
            T::IntentConfidenceLow => by_intent.entry(intent).or_default().low_confidence += 1,
            T::SatisfactionFeedbackReceived => by_intent.entry(intent).or_default().feedback += 1,
            _ => {}
        }
    }
    by_intent
        .into_iter()
        .map(|(intent, acc)| IntentDistributionRow {
            period_date: key.to_owned(),
            property_id: property.to_owned(),
            intent: intent.to_owned(),
            count: acc.count,
            avg_confidence: mean(acc.confidences.iter().copied()),
            action_taken_count: acc.actions,
            escalated_count: acc.escalations,
            low_confidence_count: acc.low_confidence,
            feedback_count: acc.feedback,
        })
        .collect()
}

/// `agg_channel_delivery_daily` (§8): each channel's messages sent, delivered, read
/// and failed. The counts are of the day's events, not matched message to message.
pub fn channel_delivery(property: &str, key: &str, events: &[AggEvent]) -> Vec<ChannelDeliveryRow> {
    let mut by_channel: BTreeMap<&str, ChannelDeliveryRow> = BTreeMap::new();
    for e in events {
        let delivery = [
            T::MessageSent,
            T::MessageDelivered,
            T::MessageRead,
            T::MessageFailed,
        ];
        if !delivery.contains(&e.event_type) {
            continue;
        }
        let row = by_channel
            .entry(channel(e))
            .or_insert_with(|| ChannelDeliveryRow {
                period_date: key.to_owned(),
                property_id: property.to_owned(),
                channel: channel(e).to_owned(),
                ..Default::default()
            });
        match e.event_type {
            T::MessageSent => row.sent += 1,
            T::MessageDelivered => row.delivered += 1,
            T::MessageRead => row.read += 1,
            _ => row.failed += 1,
        }
    }
    by_channel.into_values().collect()
}

/// `agg_task_performance_daily` (§8). `earliest_creation` maps a taskId to the
/// timestamp of its earliest stored `task.created` (any day, any channel): a
/// completion is timed from it when it is at or before the completion; the
/// completion's own durationMs is not used.
pub fn task_performance(
    property: &str,
    key: &str,
    events: &[AggEvent],
    earliest_creation: &HashMap<String, i64>,
) -> Vec<TaskPerformanceRow> {
    let mut row = TaskPerformanceRow {
        period_date: key.to_owned(),
        property_id: property.to_owned(),
        ..Default::default()
    };
    let mut completion_ms: Vec<i64> = Vec::new();
    for e in events {
        match e.event_type {
            T::TaskCreated => row.tasks_created += 1,
            T::TaskAssigned => row.tasks_assigned += 1,
            T::TaskSlaBreached => row.sla_breached += 1,
            T::TaskCompleted => {
                row.tasks_completed += 1;
                let created = e.task_id.as_ref().and_then(|t| earliest_creation.get(t));
                if let Some(created) = created.filter(|c| **c <= e.timestamp_ms) {
                    completion_ms.push(e.timestamp_ms - created);
                }
            }
            _ => {}
        }
    }
    if row.tasks_created + row.tasks_assigned + row.tasks_completed + row.sla_breached == 0 {
        return Vec::new();
    }
    completion_ms.sort_unstable();
    let whole_minutes = |ms: i64| round(minutes(ms as f64));
    row.completions_timed = completion_ms.len() as i64;
    row.avg_completion_minutes =
        mean(completion_ms.iter().map(|v| *v as f64)).map(|m| round(minutes(m)));
    row.p50_completion_minutes = nearest_rank(&completion_ms, 50).map(whole_minutes);
    row.p95_completion_minutes = nearest_rank(&completion_ms, 95).map(whole_minutes);
    vec![row]
}

/// `agg_satisfaction_weekly`.
pub fn satisfaction(property: &str, key: &str, events: &[AggEvent]) -> Vec<SatisfactionRow> {
    let mut by_channel: BTreeMap<&str, (i64, Ratings)> = BTreeMap::new();
    for e in events {
        match e.event_type {
            T::SatisfactionSurveySent => by_channel.entry(channel(e)).or_default().0 += 1,
            T::SatisfactionRatingReceived => {
                if let Some(v) = e.value {
                    by_channel.entry(channel(e)).or_default().1.add(v);
                }
            }
            _ => {}
        }
    }
    by_channel
        .into_iter()
        .map(|(channel, (surveys, ratings))| {
            let [rating_1, rating_2, rating_3, rating_4, rating_5] = ratings.0;
            SatisfactionRow {
                period_start: key.to_owned(),
                property_id: property.to_owned(),
                channel: channel.to_owned(),
                surveys_sent: surveys,
                responses_received: ratings.responses(),
                rating_1,
                rating_2,
                rating_3,
                rating_4,
                rating_5,
                avg_rating: ratings.mean(),
                nps_score: ratings.nps(),
            }
        })
        .collect()
}

/// One entry of `top_intents`, fields in the contract's order.
#[derive(serde::Serialize)]
struct TopIntent<'a> {
    intent: &'a str,
    count: i64,
}

/// `agg_monthly_summary`.
pub fn monthly_summary(property: &str, key: &str, events: &[AggEvent]) -> Vec<MonthlySummaryRow> {
    let mut row = MonthlySummaryRow {
        period_month: key.to_owned(),
        property_id: property.to_owned(),
        ..Default::default()
    };
    let mut resolved: BTreeSet<&str> = BTreeSet::new();
    let mut escalated: BTreeSet<&str> = BTreeSet::new();
    let mut ratings = Ratings::default();
    let mut response_ms = Vec::new();
    let mut intents: BTreeMap<&str, i64> = BTreeMap::new();
    let mut channels: BTreeMap<&str, i64> = BTreeMap::new();
    for e in events {
        match e.event_type {
            T::ConversationStarted => {
                row.total_conversations += 1;
                *channels.entry(channel(e)).or_default() += 1;
            }
            T::MessageReceived | T::MessageSent => row.total_messages += 1,
            T::TaskCreated => row.total_tasks += 1,
            T::ConversationResolved => resolved.extend(e.conversation_id.as_deref()),
            T::ConversationEscalated => escalated.extend(e.conversation_id.as_deref()),
            T::SatisfactionRatingReceived => {
                if let Some(v) = e.value {
                    ratings.add(v);
                }
            }
            T::ResponseTimeRecorded => response_ms.extend(e.duration_ms.map(|v| v as f64)),
            T::IntentClassified => {
                if let Some(intent) = e.intent.as_deref() {
                    *intents.entry(intent).or_default() += 1;
                }
            }
            _ => {}
        }
    }
    let counts_something = row.total_conversations + row.total_messages + row.total_tasks > 0
        || !resolved.is_empty()
        || ratings.responses() > 0
        || !response_ms.is_empty()
        || !intents.is_empty();
    if !counts_something {
        return Vec::new();
    }
    row.ai_resolution_rate = ai_resolution_rate(
        resolved.len() as i64,
        resolved.difference(&escalated).count() as i64,
    );
    row.avg_satisfaction = ratings.mean();
    row.avg_response_time_minutes = mean(response_ms).map(minutes);
    let mut top: Vec<(&str, i64)> = intents.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let top: Vec<TopIntent> = top
        .into_iter()
        .take(5)
        .map(|(intent, count)| TopIntent { intent, count })
        .collect();
    row.top_intents = JsonText(serde_json::to_string(&top).unwrap_or_else(|_| "[]".into()));
    row.channel_breakdown =
        JsonText(serde_json::to_string(&channels).unwrap_or_else(|_| "{}".into()));
    vec![row]
}

#[cfg(test)]
mod tests;
