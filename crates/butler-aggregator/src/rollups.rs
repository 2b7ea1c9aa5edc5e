//! The definitions of CONTRACT §3, as functions from one bucket's events to its rows.
//! Each function sees the events of one property whose timestamps fall in the bucket,
//! and emits a row only where the bucket has an event that the row counts. The
//! formulas they share with the dashboard and the report are in
//! [`butler_events::formulas`].

use std::collections::{BTreeMap, BTreeSet, HashMap};

use butler_events::EventType as T;
use butler_events::formulas::{Ratings, ai_resolution_rate, mean, minutes, nearest_rank, round};
use butler_storage::aggregation::AggEvent;

use crate::jobs::BucketInput;
use butler_storage::tables::{
    ChannelDeliveryRow, ConversationMetricsRow, IntentDistributionRow, JsonText, MessageCountRow,
    MonthlySummaryRow, ResponseTimeRow, SatisfactionRow, StaffPerformanceRow, StaffPresenceRow,
    TaskPerformanceRow,
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

/// `agg_conversation_metrics_daily`, with §8's columns. `b.earliest` maps a
/// conversationId to the timestamp of its earliest stored `conversation.started` (any
/// day, any channel); business time is the property's schedule in its zone, as in
/// force now.
pub fn conversation_metrics(b: &BucketInput<'_>) -> Vec<ConversationMetricsRow> {
    let schedule = b.rules.hours.of(b.property);
    let target = b.rules.sla.first_response_ms(b.property);
    let business = |from: i64, to: i64| schedule.business_ms(b.zone, from, to);
    let mut by_channel: BTreeMap<&str, Vec<&AggEvent>> = BTreeMap::new();
    for e in b.events {
        by_channel.entry(channel(e)).or_default().push(e);
    }
    let mut rows = Vec::new();
    for (channel, events) in by_channel {
        let mut row = ConversationMetricsRow {
            period_date: b.key.to_owned(),
            property_id: b.property.to_owned(),
            channel: channel.to_owned(),
            ..Default::default()
        };
        // First response per conversation: earliest by (timestamp, id); an event
        // without a conversation stands for itself.
        let mut first: HashMap<&str, &AggEvent> = HashMap::new();
        let mut first_responses: Vec<&AggEvent> = Vec::new();
        // Each timed resolution as its interval [from, to).
        let mut resolutions: Vec<(i64, i64)> = Vec::new();
        let mut active: BTreeSet<&str> = BTreeSet::new();
        let mut ai_handled: BTreeSet<&str> = BTreeSet::new();
        let mut escalated: BTreeSet<&str> = BTreeSet::new();
        let mut resolved: BTreeSet<&str> = BTreeSet::new();
        for e in &events {
            active.extend(e.conversation_id.as_deref());
            match e.event_type {
                T::ConversationStarted => row.conversations_started += 1,
                T::ConversationEscalated => {
                    row.conversations_escalated += 1;
                    escalated.extend(e.conversation_id.as_deref());
                }
                T::ConversationResolved => {
                    row.conversations_resolved += 1;
                    resolved.extend(e.conversation_id.as_deref());
                    let from_start = || {
                        let c = e.conversation_id.as_ref()?;
                        let start = *b.earliest.get(c)?;
                        (start <= e.timestamp_ms).then_some(start)
                    };
                    let from = e
                        .duration_ms
                        .map(|ms| e.timestamp_ms - ms)
                        .or_else(from_start);
                    if let Some(from) = from {
                        resolutions.push((from, e.timestamp_ms));
                    }
                }
                T::ResponseTimeRecorded => {
                    if e.duration_ms.is_none() {
                        continue;
                    }
                    match &e.conversation_id {
                        None => first_responses.push(e),
                        Some(c) => {
                            let slot = first.entry(c).or_insert(e);
                            if (e.timestamp_ms, &e.id) < (slot.timestamp_ms, &slot.id) {
                                *slot = e;
                            }
                        }
                    }
                }
                T::ResponseAiGenerated => ai_handled.extend(e.conversation_id.as_deref()),
                _ => {}
            }
        }
        first_responses.extend(first.values());
        let mut first_ms: Vec<i64> = first_responses
            .iter()
            .filter_map(|e| e.duration_ms)
            .collect();
        let mut first_business: Vec<i64> = first_responses
            .iter()
            .filter_map(|e| {
                e.duration_ms
                    .map(|ms| business(e.timestamp_ms - ms, e.timestamp_ms))
            })
            .collect();
        let mut resolution_ms: Vec<i64> = resolutions.iter().map(|(from, to)| to - from).collect();
        let resolution_business: Vec<i64> = resolutions
            .iter()
            .map(|(from, to)| business(*from, *to))
            .collect();
        first_ms.sort_unstable();
        first_business.sort_unstable();
        resolution_ms.sort_unstable();
        let mean_of = |v: &[i64]| mean(v.iter().map(|x| *x as f64));
        let whole_minutes = |ms: i64| round(minutes(ms as f64));
        row.avg_first_response_ms = mean_of(&first_ms).map(round);
        row.p50_first_response_ms = nearest_rank(&first_ms, 50);
        row.p95_first_response_ms = nearest_rank(&first_ms, 95);
        row.avg_resolution_minutes = mean_of(&resolution_ms).map(|m| round(minutes(m)));
        row.p50_resolution_minutes = nearest_rank(&resolution_ms, 50).map(whole_minutes);
        row.p95_resolution_minutes = nearest_rank(&resolution_ms, 95).map(whole_minutes);
        row.ai_handled_count = ai_handled.len() as i64;
        row.ai_escalated_count = ai_handled.intersection(&escalated).count() as i64;
        row.conversations_active = active.len() as i64;
        row.first_responses = first_ms.len() as i64;
        row.avg_first_response_business_ms = mean_of(&first_business).map(round);
        row.p50_first_response_business_ms = nearest_rank(&first_business, 50);
        row.p95_first_response_business_ms = nearest_rank(&first_business, 95);
        row.first_response_sla_met =
            first_business.iter().filter(|ms| **ms <= target).count() as i64;
        row.resolutions_timed = resolution_business.len() as i64;
        row.avg_resolution_business_minutes =
            mean_of(&resolution_business).map(|m| round(minutes(m)));
        row.ai_resolved_count = ai_handled
            .iter()
            .filter(|c| resolved.contains(*c) && !escalated.contains(*c))
            .count() as i64;
        let counts_something =
            row.conversations_started + row.conversations_resolved + row.conversations_escalated
                > 0
                || row.first_responses > 0
                || row.ai_handled_count > 0
                || row.conversations_active > 0;
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

/// `agg_staff_presence_daily` (§8). Online is a state: a member goes online at a
/// `staff.login` or a status change to `available` and offline at a `staff.logout` or
/// any other status change (one rule with the live count,
/// [`butler_events::event::staff_online_after`]); their events are taken by timestamp,
/// then id, and one that does not change the state changes nothing. Online time is
/// counted within the bucket (its own 23, 24 or 25 hours; a stretch still online up to
/// the bucket's end or now, whichever is earlier), from the state the member had when
/// it began (`b.online_at_start`), and rounded once to whole minutes; sessions are the
/// times they went online in it. A row for each member with online time or a session.
pub fn staff_presence(b: &BucketInput<'_>) -> Vec<StaffPresenceRow> {
    let mut by_staff: BTreeMap<&str, Vec<&AggEvent>> = BTreeMap::new();
    for staff in b.online_at_start {
        by_staff.entry(staff).or_default();
    }
    for e in b.events {
        if let Some(staff) = e.staff_id.as_deref() {
            by_staff.entry(staff).or_default().push(e);
        }
    }
    let until = b.end_ms.min(b.now_ms);
    let mut rows = Vec::new();
    for (staff, mut events) in by_staff {
        events.sort_by(|x, y| (x.timestamp_ms, &x.id).cmp(&(y.timestamp_ms, &y.id)));
        let mut online_since = b.online_at_start.contains(staff).then_some(b.start_ms);
        let (mut online_ms, mut sessions) = (0, 0);
        for e in events {
            match (
                butler_events::event::staff_online_after(e.event_type, e.status.as_deref()),
                online_since,
            ) {
                (Some(true), None) => {
                    online_since = Some(e.timestamp_ms);
                    sessions += 1;
                }
                (Some(false), Some(since)) => {
                    online_ms += e.timestamp_ms - since;
                    online_since = None;
                }
                _ => {}
            }
        }
        if let Some(since) = online_since {
            online_ms += (until - since).max(0);
        }
        if online_ms > 0 || sessions > 0 {
            rows.push(StaffPresenceRow {
                period_date: b.key.to_owned(),
                property_id: b.property.to_owned(),
                staff_id: staff.to_owned(),
                online_minutes: round(minutes(online_ms as f64)),
                sessions,
            });
        }
    }
    rows
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
