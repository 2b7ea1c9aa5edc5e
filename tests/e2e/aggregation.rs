//! Aggregation end to end: tables computed by the pipeline equal a reference computed
//! here from the published events, independently of the aggregator's code.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::{Value, json};

use crate::helpers::{App, NatsServer, TestDb, cli, publish_all, wait_until};

const WAIT: Duration = Duration::from_secs(60);
const PROPERTIES: [(&str, Tz); 3] = [
    ("p_utc", chrono_tz::UTC),
    ("p_ny", chrono_tz::America::New_York),
    ("p_kol", chrono_tz::Asia::Kolkata),
];
const TYPES: [&str; 24] = [
    "message.received",
    "message.sent",
    "message.delivered",
    "message.read",
    "message.failed",
    "conversation.started",
    "conversation.resolved",
    "conversation.escalated",
    "response.time_recorded",
    "response.ai_generated",
    "response.staff_sent",
    "task.created",
    "task.assigned",
    "task.completed",
    "task.sla_breached",
    "intent.classified",
    "intent.action_taken",
    "intent.confidence_low",
    "satisfaction.survey_sent",
    "satisfaction.rating_received",
    "satisfaction.feedback_received",
    "staff.login",
    "staff.logout",
    "staff.status_changed",
];
const INTENTS: [&str; 7] = [
    "late_checkout",
    "spa",
    "taxi",
    "towels",
    "wifi",
    "breakfast",
    "parking",
];

/// One generated event, as the reference sees it.
#[derive(Debug, Clone)]
pub(crate) struct Ev {
    pub(crate) id: String,
    pub(crate) event_type: &'static str,
    pub(crate) property: &'static str,
    pub(crate) ts_ms: i64,
    channel: Option<&'static str>,
    conversation: Option<String>,
    duration_ms: Option<i64>,
    staff: Option<String>,
    pub(crate) value: Option<f64>,
    /// `metadata.intent`: a string, or (for escalations) sometimes a number.
    intent: Option<Value>,
    /// `taskId`, of most task events.
    task: Option<String>,
    /// `metadata.status` of a status change: `available`, `busy` or a number.
    status: Option<Value>,
}

/// Events over 2026-10-30 .. 2026-11-03 UTC: New York leaves DST on 1 November.
pub(crate) fn dataset(n: usize) -> Vec<Ev> {
    // Deterministic, so failures reproduce.
    let mut rng = butler_events::testing::Xorshift::new(0x5eed_cafe);
    let start = Utc
        .with_ymd_and_hms(2026, 10, 30, 0, 0, 0)
        .unwrap()
        .timestamp_millis();
    let span_s = 4 * 86_400;
    (0..n)
        .map(|i| {
            let (property, _) = PROPERTIES[rng.below(3) as usize];
            let event_type = TYPES[rng.below(TYPES.len() as u64) as usize];
            // Whole seconds on a coarse grid: plenty of timestamp ties.
            let ts_ms = start + (rng.below(span_s) / 60 * 60) as i64 * 1000;
            let channel = [Some("whatsapp"), Some("sms"), None][rng.below(3) as usize];
            let conversation = (rng.below(10) != 0).then(|| format!("c{}", rng.below(60)));
            let duration_ms = match event_type {
                "response.time_recorded" => Some(rng.below(50) as i64 * 1000 + 500),
                "conversation.resolved" if rng.below(2) == 0 => Some(rng.below(7200) as i64 * 1000),
                _ => None,
            };
            let staff = (rng.below(3) != 0).then(|| format!("s{}", rng.below(5)));
            let value = match event_type {
                "satisfaction.rating_received" => Some((rng.below(5) + 1) as f64),
                "intent.classified" if rng.below(4) != 0 => Some(rng.below(101) as f64 / 100.0),
                _ => None,
            };
            let intent = match event_type {
                "intent.classified" | "intent.action_taken" | "intent.confidence_low" => {
                    Some(Value::from(INTENTS[rng.below(7) as usize]))
                }
                "conversation.escalated" | "satisfaction.feedback_received" => match rng.below(3) {
                    0 => Some(Value::from(INTENTS[rng.below(7) as usize])),
                    1 => Some(Value::from(7)),
                    _ => None,
                },
                _ => None,
            };
            let task = (event_type.starts_with("task.") && rng.below(8) != 0)
                .then(|| format!("t{}", rng.below(40)));
            let status = (event_type == "staff.status_changed").then(|| match rng.below(4) {
                0 | 1 => Value::from("available"),
                2 => Value::from("busy"),
                _ => Value::from(3),
            });
            Ev {
                task,
                status,
                id: format!("a{i:05}"),
                event_type,
                property,
                ts_ms,
                channel,
                conversation,
                duration_ms,
                staff,
                value,
                intent,
            }
        })
        .collect()
}

/// Publishes generated events on their subjects.
pub(crate) async fn publish_dataset(js: &async_nats::jetstream::Context, events: &[Ev]) {
    let messages = events
        .iter()
        .map(|e| (format!("butler.events.{}", e.event_type), payload(e)))
        .collect();
    publish_all(js, messages).await;
}

pub(crate) fn payload(e: &Ev) -> Vec<u8> {
    let mut v = json!({
        "id": e.id,
        "propertyId": e.property,
        "timestamp": DateTime::from_timestamp_millis(e.ts_ms).unwrap().to_rfc3339(),
    });
    let o = v.as_object_mut().unwrap();
    if let Some(c) = e.channel {
        o.insert("channel".into(), c.into());
    }
    if let Some(c) = &e.conversation {
        o.insert("conversationId".into(), c.clone().into());
    }
    if let Some(d) = e.duration_ms {
        o.insert("durationMs".into(), d.into());
    }
    if let Some(s) = &e.staff {
        o.insert("staffId".into(), s.clone().into());
    }
    if let Some(v) = e.value {
        o.insert("value".into(), v.into());
    }
    if let Some(i) = &e.intent {
        o.insert("metadata".into(), json!({ "intent": i }));
    }
    if let Some(status) = &e.status {
        o.insert("metadata".into(), json!({ "status": status }));
    }
    if let Some(t) = &e.task {
        o.insert("taskId".into(), t.clone().into());
    }
    serde_json::to_vec(&v).unwrap()
}

fn tz_of(property: &str) -> Tz {
    PROPERTIES.iter().find(|(p, _)| *p == property).unwrap().1
}

fn hour_key(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .unwrap()
        .format("%Y-%m-%dT%H:00:00Z")
        .to_string()
}

fn local_day(property: &str, ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .unwrap()
        .with_timezone(&tz_of(property))
        .format("%Y-%m-%d")
        .to_string()
}

fn channel(e: &Ev) -> String {
    e.channel.unwrap_or("unknown").to_owned()
}

fn rank(sorted: &[i64], p: usize) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let r = ((p as f64 / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[r.max(1) - 1])
}

fn avg(v: &[i64]) -> Option<i64> {
    (!v.is_empty()).then(|| (v.iter().sum::<i64>() as f64 / v.len() as f64).round() as i64)
}

type Key = (String, String, String);

fn reference_message_counts(events: &[Ev]) -> BTreeMap<(String, String, String, String), i64> {
    let mut out = BTreeMap::new();
    for e in events {
        let direction = match e.event_type {
            "message.received" => "inbound",
            "message.sent" => "outbound",
            _ => continue,
        };
        *out.entry((
            hour_key(e.ts_ms),
            e.property.to_owned(),
            channel(e),
            direction.to_owned(),
        ))
        .or_insert(0) += 1;
    }
    out
}

fn reference_response_times(events: &[Ev]) -> BTreeMap<Key, Vec<Option<i64>>> {
    let mut groups: BTreeMap<Key, Vec<i64>> = BTreeMap::new();
    for e in events
        .iter()
        .filter(|e| e.event_type == "response.time_recorded")
    {
        groups
            .entry((hour_key(e.ts_ms), e.property.to_owned(), channel(e)))
            .or_default()
            .push(e.duration_ms.unwrap());
    }
    groups
        .into_iter()
        .map(|(k, mut v)| {
            v.sort();
            let row = vec![
                Some(v.len() as i64),
                avg(&v),
                rank(&v, 50),
                rank(&v, 95),
                rank(&v, 99),
                v.last().copied(),
            ];
            (k, row)
        })
        .collect()
}

fn reference_conversation_metrics(events: &[Ev]) -> BTreeMap<Key, Vec<Option<i64>>> {
    let mut earliest_start: HashMap<(&str, &str), i64> = HashMap::new();
    for e in events
        .iter()
        .filter(|e| e.event_type == "conversation.started")
    {
        if let Some(c) = &e.conversation {
            let slot = earliest_start.entry((e.property, c)).or_insert(e.ts_ms);
            *slot = (*slot).min(e.ts_ms);
        }
    }
    let mut buckets: BTreeMap<Key, Vec<&Ev>> = BTreeMap::new();
    for e in events {
        buckets
            .entry((
                local_day(e.property, e.ts_ms),
                e.property.to_owned(),
                channel(e),
            ))
            .or_default()
            .push(e);
    }
    let mut out = BTreeMap::new();
    for (key, evs) in buckets {
        let property = key.1.as_str();
        let count = |t: &str| evs.iter().filter(|e| e.event_type == t).count() as i64;
        // First responses as (timestamp, duration).
        let mut first: BTreeMap<&str, (i64, &str, i64)> = BTreeMap::new();
        let mut first_pairs: Vec<(i64, i64)> = Vec::new();
        for e in evs
            .iter()
            .filter(|e| e.event_type == "response.time_recorded")
        {
            let d = e.duration_ms.unwrap();
            match &e.conversation {
                None => first_pairs.push((e.ts_ms, d)),
                Some(c) => {
                    let cand = (e.ts_ms, e.id.as_str(), d);
                    let slot = first.entry(c).or_insert(cand);
                    if (cand.0, cand.1) < (slot.0, slot.1) {
                        *slot = cand;
                    }
                }
            }
        }
        first_pairs.extend(first.values().map(|v| (v.0, v.2)));
        let mut firsts: Vec<i64> = first_pairs.iter().map(|(_, d)| *d).collect();
        firsts.sort();
        let mut first_business: Vec<i64> = first_pairs
            .iter()
            .map(|(ts, d)| reference_business_ms(property, ts - d, *ts))
            .collect();
        first_business.sort();
        // Timed resolutions as [from, to).
        let resolution_spans: Vec<(i64, i64)> = evs
            .iter()
            .filter(|e| e.event_type == "conversation.resolved")
            .filter_map(|e| {
                let from = e.duration_ms.map(|d| e.ts_ms - d).or_else(|| {
                    let s = *earliest_start.get(&(e.property, e.conversation.as_deref()?))?;
                    (s <= e.ts_ms).then_some(s)
                })?;
                Some((from, e.ts_ms))
            })
            .collect();
        let mut resolutions: Vec<i64> = resolution_spans.iter().map(|(a, b)| b - a).collect();
        resolutions.sort();
        let resolution_business: Vec<i64> = resolution_spans
            .iter()
            .map(|(a, b)| reference_business_ms(property, *a, *b))
            .collect();
        let active: BTreeSet<&str> = evs
            .iter()
            .filter_map(|e| e.conversation.as_deref())
            .collect();
        let resolved_set: BTreeSet<&str> = evs
            .iter()
            .filter(|e| e.event_type == "conversation.resolved")
            .filter_map(|e| e.conversation.as_deref())
            .collect();
        let minutes = |ms: i64| (ms as f64 / 60_000.0).round() as i64;
        let ai: BTreeSet<&str> = evs
            .iter()
            .filter(|e| e.event_type == "response.ai_generated")
            .filter_map(|e| e.conversation.as_deref())
            .collect();
        let escalated: BTreeSet<&str> = evs
            .iter()
            .filter(|e| e.event_type == "conversation.escalated")
            .filter_map(|e| e.conversation.as_deref())
            .collect();
        let (started, resolved, esc) = (
            count("conversation.started"),
            count("conversation.resolved"),
            count("conversation.escalated"),
        );
        if started + resolved + esc == 0 && firsts.is_empty() && ai.is_empty() && active.is_empty()
        {
            continue;
        }
        let minutes_of_mean = |v: &[i64]| {
            (!v.is_empty())
                .then(|| (v.iter().sum::<i64>() as f64 / v.len() as f64 / 60_000.0).round() as i64)
        };
        let resolution_avg = minutes_of_mean(&resolutions);
        let target = if property == "p_kol" { 40_000 } else { 20_000 };
        out.insert(
            key,
            vec![
                Some(started),
                Some(resolved),
                Some(esc),
                avg(&firsts),
                rank(&firsts, 50),
                rank(&firsts, 95),
                resolution_avg,
                rank(&resolutions, 50).map(minutes),
                rank(&resolutions, 95).map(minutes),
                Some(ai.len() as i64),
                Some(ai.intersection(&escalated).count() as i64),
                Some(active.len() as i64),
                Some(firsts.len() as i64),
                avg(&first_business),
                rank(&first_business, 50),
                rank(&first_business, 95),
                Some(first_business.iter().filter(|b| **b <= target).count() as i64),
                Some(resolution_business.len() as i64),
                minutes_of_mean(&resolution_business),
                Some(
                    ai.iter()
                        .filter(|c| resolved_set.contains(*c) && !escalated.contains(*c))
                        .count() as i64,
                ),
            ],
        );
    }
    out
}

/// The business hours of [`config`], as the reference reads them: whether
/// `property` is open at the local wall-clock time `local`.
fn reference_open(property: &str, local: chrono::NaiveDateTime) -> bool {
    use chrono::{Datelike, Timelike, Weekday};
    let minute = local.hour() * 60 + local.minute();
    match property {
        // Its own schedule, `{}`: always open.
        "p_kol" => true,
        // Its own: nights, and the small hours of Sunday (New York's repeated hour).
        "p_ny" => match local.weekday() {
            Weekday::Sun => minute < 180,
            _ => !(150..22 * 60).contains(&minute),
        },
        // The default: weekdays in two stretches, Saturday mornings, a holiday.
        _ => {
            if local.date() == chrono::NaiveDate::from_ymd_opt(2026, 11, 2).unwrap() {
                return false;
            }
            match local.weekday() {
                Weekday::Sat => (600..840).contains(&minute),
                Weekday::Sun => false,
                _ => (480..720).contains(&minute) || (780..1200).contains(&minute),
            }
        }
    }
}

/// The business time of `[a, b)`: cut at whole minutes (where opening hours and
/// offsets change), each piece open or not as its first instant's local clock says.
fn reference_business_ms(property: &str, a: i64, b: i64) -> i64 {
    let mut total = 0;
    let mut t = a;
    while t < b {
        let next = ((t.div_euclid(60_000) + 1) * 60_000).min(b);
        let local = DateTime::from_timestamp_millis(t)
            .unwrap()
            .with_timezone(&tz_of(property))
            .naive_local();
        if reference_open(property, local) {
            total += next - t;
        }
        t = next;
    }
    total
}

fn mean(v: &[f64]) -> Value {
    if v.is_empty() {
        Value::Null
    } else {
        json!(v.iter().sum::<f64>() / v.len() as f64)
    }
}

fn iso_monday(property: &str, ms: i64) -> String {
    let d = DateTime::from_timestamp_millis(ms)
        .unwrap()
        .with_timezone(&tz_of(property))
        .date_naive();
    let monday = d - chrono::Days::new(u64::from(
        chrono::Datelike::weekday(&d).num_days_from_monday(),
    ));
    monday.format("%Y-%m-%d").to_string()
}

fn local_month(property: &str, ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .unwrap()
        .with_timezone(&tz_of(property))
        .format("%Y-%m")
        .to_string()
}

pub(crate) fn intent_str(e: &Ev) -> Option<&str> {
    e.intent.as_ref().and_then(Value::as_str)
}

type Rows = BTreeMap<Vec<String>, Vec<Value>>;

fn reference_staff(events: &[Ev]) -> Rows {
    let mut groups: BTreeMap<Vec<String>, Vec<&Ev>> = BTreeMap::new();
    for e in events {
        if let Some(s) = &e.staff {
            groups
                .entry(vec![
                    local_day(e.property, e.ts_ms),
                    e.property.to_owned(),
                    s.clone(),
                ])
                .or_default()
                .push(e);
        }
    }
    groups
        .into_iter()
        .filter_map(|(k, evs)| {
            let handled: BTreeSet<&str> = evs
                .iter()
                .filter(|e| e.event_type == "response.staff_sent")
                .filter_map(|e| e.conversation.as_deref())
                .collect();
            let tasks = evs
                .iter()
                .filter(|e| e.event_type == "task.completed")
                .count();
            let resp: Vec<i64> = evs
                .iter()
                .filter(|e| e.event_type == "response.time_recorded")
                .map(|e| e.duration_ms.unwrap())
                .collect();
            let ratings: Vec<f64> = evs
                .iter()
                .filter(|e| e.event_type == "satisfaction.rating_received")
                .map(|e| e.value.unwrap())
                .collect();
            if handled.is_empty() && tasks == 0 && resp.is_empty() && ratings.is_empty() {
                return None;
            }
            Some((
                k,
                vec![
                    json!(handled.len()),
                    json!(tasks),
                    json!(avg(&resp)),
                    mean(&ratings),
                    json!(ratings.len()),
                ],
            ))
        })
        .collect()
}

fn reference_intents(events: &[Ev]) -> Rows {
    let mut groups: BTreeMap<Vec<String>, Vec<&Ev>> = BTreeMap::new();
    for e in events {
        let counted = matches!(
            e.event_type,
            "intent.classified"
                | "intent.action_taken"
                | "conversation.escalated"
                | "intent.confidence_low"
                | "satisfaction.feedback_received"
        );
        if let (true, Some(i)) = (counted, intent_str(e)) {
            groups
                .entry(vec![
                    local_day(e.property, e.ts_ms),
                    e.property.to_owned(),
                    i.to_owned(),
                ])
                .or_default()
                .push(e);
        }
    }
    groups
        .into_iter()
        .map(|(k, evs)| {
            let classified: Vec<&&Ev> = evs
                .iter()
                .filter(|e| e.event_type == "intent.classified")
                .collect();
            let conf: Vec<f64> = classified.iter().filter_map(|e| e.value).collect();
            let actions = evs
                .iter()
                .filter(|e| e.event_type == "intent.action_taken")
                .count();
            let of_type = |t: &str| evs.iter().filter(|e| e.event_type == t).count();
            (
                k,
                vec![
                    json!(classified.len()),
                    mean(&conf),
                    json!(actions),
                    json!(of_type("conversation.escalated")),
                    json!(of_type("intent.confidence_low")),
                    json!(of_type("satisfaction.feedback_received")),
                ],
            )
        })
        .collect()
}

fn reference_satisfaction(events: &[Ev]) -> Rows {
    let mut groups: BTreeMap<Vec<String>, Vec<&Ev>> = BTreeMap::new();
    for e in events.iter().filter(|e| {
        e.event_type == "satisfaction.survey_sent" || e.event_type == "satisfaction.rating_received"
    }) {
        groups
            .entry(vec![
                iso_monday(e.property, e.ts_ms),
                e.property.to_owned(),
                channel(e),
            ])
            .or_default()
            .push(e);
    }
    groups
        .into_iter()
        .map(|(k, evs)| {
            let surveys = evs
                .iter()
                .filter(|e| e.event_type == "satisfaction.survey_sent")
                .count();
            let ratings: Vec<f64> = evs
                .iter()
                .filter(|e| e.event_type == "satisfaction.rating_received")
                .map(|e| e.value.unwrap())
                .collect();
            let n = |r: f64| ratings.iter().filter(|v| **v == r).count() as i64;
            let nps = if ratings.is_empty() {
                Value::Null
            } else {
                json!(100.0 * (n(5.0) - n(1.0) - n(2.0) - n(3.0)) as f64 / ratings.len() as f64)
            };
            let mut row = vec![json!(surveys), json!(ratings.len())];
            row.extend((1..=5).map(|r| json!(n(f64::from(r)))));
            row.extend([mean(&ratings), nps]);
            (k, row)
        })
        .collect()
}

/// `agg_channel_delivery_daily` holds what [`reference_channel_delivery`] counts.
async fn assert_channel_delivery_is_the_reference(app: &App, events: &[Ev]) {
    let got = table_values(
        app,
        "SELECT period_date, property_id, channel, sent, delivered, read, failed \
         FROM agg_channel_delivery_daily",
        3,
    )
    .await;
    assert_rows_eq(
        &got,
        &reference_channel_delivery(events),
        "agg_channel_delivery_daily",
    );
}

/// §8's delivery counts: each `message.sent|delivered|read|failed` of a local day,
/// by channel.
fn reference_channel_delivery(events: &[Ev]) -> Rows {
    let types = [
        "message.sent",
        "message.delivered",
        "message.read",
        "message.failed",
    ];
    let mut rows: Rows = BTreeMap::new();
    for e in events {
        let Some(i) = types.iter().position(|t| *t == e.event_type) else {
            continue;
        };
        let key = vec![
            local_day(e.property, e.ts_ms),
            e.property.to_owned(),
            channel(e),
        ];
        let row = rows.entry(key).or_insert_with(|| vec![json!(0); 4]);
        row[i] = json!(row[i].as_i64().unwrap() + 1);
    }
    rows
}

/// §8's task performance per local day: the four counts, and each completion timed
/// from its task's earliest creation (any day) when that is at or before it.
fn reference_task_performance(events: &[Ev]) -> Rows {
    let mut created: HashMap<(&str, &str), i64> = HashMap::new();
    for e in events.iter().filter(|e| e.event_type == "task.created") {
        if let Some(t) = &e.task {
            let at = created.entry((e.property, t)).or_insert(e.ts_ms);
            *at = (*at).min(e.ts_ms);
        }
    }
    let types = [
        "task.created",
        "task.assigned",
        "task.completed",
        "task.sla_breached",
    ];
    let mut days: BTreeMap<Vec<String>, ([i64; 4], Vec<i64>)> = BTreeMap::new();
    for e in events {
        let Some(i) = types.iter().position(|t| *t == e.event_type) else {
            continue;
        };
        let day = days
            .entry(vec![local_day(e.property, e.ts_ms), e.property.to_owned()])
            .or_default();
        day.0[i] += 1;
        if e.event_type == "task.completed"
            && let Some(&at) = e
                .task
                .as_ref()
                .and_then(|t| created.get(&(e.property, t.as_str())))
            && at <= e.ts_ms
        {
            day.1.push(e.ts_ms - at);
        }
    }
    let minutes = |ms: i64| (ms as f64 / 60_000.0).round() as i64;
    days.into_iter()
        .map(|(k, (counts, mut ms))| {
            ms.sort_unstable();
            let mean = (!ms.is_empty()).then(|| {
                (ms.iter().sum::<i64>() as f64 / ms.len() as f64 / 60_000.0).round() as i64
            });
            let mut row: Vec<Value> = counts.iter().map(|c| json!(c)).collect();
            row.extend([
                json!(ms.len()),
                json!(mean),
                json!(rank(&ms, 50).map(minutes)),
                json!(rank(&ms, 95).map(minutes)),
            ]);
            (k, row)
        })
        .collect()
}

/// §8's presence over the local days of each property that [`backfill_week`]'s
/// range overlaps: each staff member's events by timestamp then id, online after a
/// login or a status `available`, offline after a logout or any other status, a
/// stretch still online at the end running on (now is weeks later); online time per
/// local day rounded to minutes, sessions the times the member went online that day.
fn reference_staff_presence(events: &[Ev]) -> Rows {
    let mut by_staff: BTreeMap<(&str, &str), Vec<&Ev>> = BTreeMap::new();
    for e in events.iter().filter(|e| e.event_type.starts_with("staff.")) {
        if let Some(s) = &e.staff {
            by_staff.entry((e.property, s)).or_default().push(e);
        }
    }
    let range = (
        Utc.with_ymd_and_hms(2026, 10, 29, 0, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2026, 11, 5, 0, 0, 0).unwrap(),
    );
    let mut rows: Rows = BTreeMap::new();
    for ((property, staff), mut evs) in by_staff {
        evs.sort_by(|a, b| (a.ts_ms, &a.id).cmp(&(b.ts_ms, &b.id)));
        // Online stretches [from, to) and the instants each began.
        let mut stretches: Vec<(i64, i64)> = Vec::new();
        let mut since: Option<i64> = None;
        for e in evs {
            let online = match e.event_type {
                "staff.login" => true,
                "staff.logout" => false,
                _ => e.status.as_ref().and_then(Value::as_str) == Some("available"),
            };
            match (online, since) {
                (true, None) => since = Some(e.ts_ms),
                (false, Some(from)) => {
                    stretches.push((from, e.ts_ms));
                    since = None;
                }
                _ => {}
            }
        }
        if let Some(from) = since {
            stretches.push((from, i64::MAX));
        }
        let tz = tz_of(property);
        let mut date = range.0.with_timezone(&tz).date_naive();
        loop {
            let start = tz
                .from_local_datetime(&date.and_hms_opt(0, 0, 0).unwrap())
                .earliest()
                .unwrap();
            if start >= range.1 {
                break;
            }
            let next = date.succ_opt().unwrap();
            let end = tz
                .from_local_datetime(&next.and_hms_opt(0, 0, 0).unwrap())
                .earliest()
                .unwrap();
            let (a, b) = (start.timestamp_millis(), end.timestamp_millis());
            let online: i64 = stretches
                .iter()
                .map(|(from, to)| ((*to).min(b) - (*from).max(a)).max(0))
                .sum();
            let sessions = stretches
                .iter()
                .filter(|(from, _)| a <= *from && *from < b)
                .count();
            if online > 0 || sessions > 0 {
                rows.insert(
                    vec![date.to_string(), property.to_owned(), staff.to_owned()],
                    vec![
                        json!((online as f64 / 60_000.0).round() as i64),
                        json!(sessions),
                    ],
                );
            }
            date = next;
        }
    }
    rows
}

fn reference_monthly(events: &[Ev]) -> Rows {
    let mut groups: BTreeMap<Vec<String>, Vec<&Ev>> = BTreeMap::new();
    for e in events {
        groups
            .entry(vec![
                local_month(e.property, e.ts_ms),
                e.property.to_owned(),
            ])
            .or_default()
            .push(e);
    }
    groups
        .into_iter()
        .map(|(k, evs)| {
            let of = |t: &'static str| evs.iter().filter(move |e| e.event_type == t);
            let resolved: BTreeSet<&str> = of("conversation.resolved")
                .filter_map(|e| e.conversation.as_deref())
                .collect();
            let escalated: BTreeSet<&str> = of("conversation.escalated")
                .filter_map(|e| e.conversation.as_deref())
                .collect();
            let rate = if resolved.is_empty() {
                Value::Null
            } else {
                json!(
                    resolved.iter().filter(|c| !escalated.contains(*c)).count() as f64
                        / resolved.len() as f64
                )
            };
            let ratings: Vec<f64> = of("satisfaction.rating_received")
                .map(|e| e.value.unwrap())
                .collect();
            let resp: Vec<f64> = of("response.time_recorded")
                .map(|e| e.duration_ms.unwrap() as f64)
                .collect();
            let resp_minutes = match mean(&resp) {
                Value::Null => Value::Null,
                v => json!(v.as_f64().unwrap() / 60_000.0),
            };
            let mut intents: BTreeMap<&str, i64> = BTreeMap::new();
            for e in of("intent.classified") {
                *intents.entry(intent_str(e).unwrap()).or_default() += 1;
            }
            let mut top: Vec<(&str, i64)> = intents.into_iter().collect();
            top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            let top: Vec<String> = top
                .iter()
                .take(5)
                .map(|(i, c)| format!(r#"{{"intent":"{i}","count":{c}}}"#))
                .collect();
            let mut channels: BTreeMap<String, i64> = BTreeMap::new();
            for e in of("conversation.started") {
                *channels.entry(channel(e)).or_default() += 1;
            }
            let breakdown: Vec<String> = channels
                .iter()
                .map(|(c, n)| format!(r#""{c}":{n}"#))
                .collect();
            let row = vec![
                json!(of("conversation.started").count()),
                json!(of("message.received").count() + of("message.sent").count()),
                json!(of("task.created").count()),
                rate,
                mean(&ratings),
                resp_minutes,
                json!(format!("[{}]", top.join(","))),
                json!(format!("{{{}}}", breakdown.join(","))),
            ];
            (k, row)
        })
        .collect()
}

/// Rows as JSON values, so REAL columns can be compared with a tolerance.
/// The rows of `sql`, keyed by their first `keys` columns.
async fn table_values(app: &App, sql: &'static str, keys: usize) -> Rows {
    let db = app.db().await;
    let rows = db.rows(sql).await;
    db.close().await;
    rows.into_iter()
        .map(|cells| {
            let key = cells[..keys]
                .iter()
                .map(|c| c.as_str().unwrap().to_owned())
                .collect();
            (key, cells[keys..].to_vec())
        })
        .collect()
}

fn assert_rows_eq(got: &Rows, want: &Rows, table: &str) {
    assert!(!want.is_empty(), "{table}: the reference has rows");
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{table}: the same rows"
    );
    for (key, want_row) in want {
        let got_row = &got[key];
        assert_eq!(got_row.len(), want_row.len(), "{table} {key:?}");
        for (g, w) in got_row.iter().zip(want_row) {
            // JSON columns are read back parsed; the reference writes them as text.
            let parsed;
            let w = match w
                .as_str()
                .and_then(|s| serde_json::from_str::<Value>(s).ok())
            {
                Some(v) if v.is_array() || v.is_object() => {
                    parsed = v;
                    &parsed
                }
                _ => w,
            };
            let close = match (g.as_f64(), w.as_f64()) {
                (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                _ => g == w,
            };
            assert!(close, "{table} {key:?}: got {got_row:?}, want {want_row:?}");
        }
    }
}

async fn table(
    app: &App,
    sql: &'static str,
    keys: usize,
) -> BTreeMap<Vec<String>, Vec<Option<i64>>> {
    table_values(app, sql, keys)
        .await
        .into_iter()
        .map(|(key, values)| (key, values.iter().map(Value::as_i64).collect()))
        .collect()
}

/// Every aggregate table of the app's database, rows in one order.
pub(crate) async fn aggregate_tables(app: &App) -> Vec<(&'static str, Vec<Vec<Value>>)> {
    aggregate_tables_of(app.db().await).await
}

/// Every aggregate table of `db`, rows in one order whatever the database.
pub(crate) async fn aggregate_tables_of(db: TestDb) -> Vec<(&'static str, Vec<Vec<Value>>)> {
    let mut all = Vec::new();
    for t in [
        "agg_message_counts_hourly",
        "agg_response_times_hourly",
        "agg_conversation_metrics_daily",
        "agg_staff_performance_daily",
        "agg_intent_distribution_daily",
        "agg_channel_delivery_daily",
        "agg_task_performance_daily",
        "agg_staff_presence_daily",
        "agg_satisfaction_weekly",
        "agg_monthly_summary",
    ] {
        // Sorted here: the two backends' collations order text differently.
        let mut rows = db.rows(&format!("SELECT * FROM {t}")).await;
        rows.sort_by_cached_key(|r| serde_json::to_string(r).unwrap_or_default());
        all.push((t, rows));
    }
    db.close().await;
    all
}

/// Recomputes every job over the dataset's week with the CLI (`aggregate --job all`),
/// as an operator's backfill does.
pub(crate) fn backfill_week(config: &std::path::Path) {
    let out = cli(
        config,
        &[
            "aggregate",
            "--job",
            "all",
            "--from",
            "2026-10-29",
            "--to",
            "2026-11-05",
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // Not a terminal: each job's progress in plain lines, up to its end.
    for job in ["hourly_message_counts", "monthly_summary"] {
        assert!(
            err.lines()
                .any(|l| l.starts_with(&format!("{job}: ")) && l.ends_with("buckets (100%)")),
            "{err}"
        );
    }
}

/// [`backfill_week`], then every job as the schedule would run it now (`--due`): the
/// tables a pipeline that has run for a while holds, whatever ran before — staff
/// presence then also has the days after the week, through yesterday, on which staff
/// stayed online.
pub(crate) fn settle(config: &std::path::Path) {
    backfill_week(config);
    run_due(config, "all");
}

/// `job` (or `all`) run as the schedule would run it now: `aggregate --job <job> --due`.
fn run_due(config: &std::path::Path, job: &str) {
    let out = cli(config, &["aggregate", "--job", job, "--due"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub(crate) fn config() -> String {
    "retention:\n  raw_events: 36500\naggregation:\n  property_timezones: {p_ny: America/New_York, p_kol: Asia/Kolkata}\nservice:\n  aggregator: false\n"
        .to_owned()
        + BUSINESS_HOURS
}

/// Every column of `agg_conversation_metrics_daily` the reference computes, keyed by
/// day, property and channel.
const CONVERSATION_SQL: &str = "SELECT period_date, property_id, channel, conversations_started, conversations_resolved, \
         conversations_escalated, avg_first_response_ms, p50_first_response_ms, p95_first_response_ms, \
         avg_resolution_minutes, p50_resolution_minutes, p95_resolution_minutes, ai_handled_count, \
         ai_escalated_count, conversations_active, first_responses, avg_first_response_business_ms, \
         p50_first_response_business_ms, p95_first_response_business_ms, first_response_sla_met, \
         resolutions_timed, avg_resolution_business_minutes, ai_resolved_count \
         FROM agg_conversation_metrics_daily";

/// The opening hours and targets [`reference_open`] and the reference's SLA read.
const BUSINESS_HOURS: &str = "business_hours:
  default:
    mon: ['08:00-12:00', '13:00-20:00']
    tue: ['08:00-12:00', '13:00-20:00']
    wed: ['08:00-12:00', '13:00-20:00']
    thu: ['08:00-12:00', '13:00-20:00']
    fri: ['08:00-12:00', '13:00-20:00']
    sat: ['10:00-14:00']
    holidays: ['2026-11-02']
  properties:
    p_kol: {}
    p_ny:
      mon: ['00:00-02:30', '22:00-24:00']
      tue: ['00:00-02:30', '22:00-24:00']
      wed: ['00:00-02:30', '22:00-24:00']
      thu: ['00:00-02:30', '22:00-24:00']
      fri: ['00:00-02:30', '22:00-24:00']
      sat: ['00:00-02:30', '22:00-24:00']
      sun: ['00:00-03:00']
sla:
  first_response_ms: 20000
  properties: {p_kol: 40000}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfilled_tables_equal_an_independent_reference_and_reruns_change_nothing() {
    let nats = NatsServer::start();
    let mut app = App::start(&nats.url(), &config());
    let js = nats.jetstream().await;
    let events = dataset(4000);
    let mut messages: Vec<(String, Vec<u8>)> = events
        .iter()
        .map(|e| (format!("butler.events.{}", e.event_type), payload(e)))
        .collect();
    // Redeliveries and republished duplicates must not count twice.
    messages.extend(
        events
            .iter()
            .step_by(37)
            .map(|e| (format!("butler.events.{}", e.event_type), payload(e))),
    );
    publish_all(&js, messages).await;
    wait_until(WAIT, "4000 stored events", || async {
        app.event_count().await == 4000
    })
    .await;
    assert!(app.terminate().success());

    let aggregate = || backfill_week(&app.config_path());
    aggregate();

    let want: BTreeMap<Vec<String>, Vec<Option<i64>>> = reference_message_counts(&events)
        .into_iter()
        .map(|((h, p, c, d), n)| (vec![h, p, c, d], vec![Some(n)]))
        .collect();
    let got = table(&app, "SELECT period_start, property_id, channel, direction, count FROM agg_message_counts_hourly", 4).await;
    assert_eq!(got, want, "agg_message_counts_hourly");

    let want: BTreeMap<Vec<String>, Vec<Option<i64>>> = reference_response_times(&events)
        .into_iter()
        .map(|((h, p, c), v)| (vec![h, p, c], v))
        .collect();
    let got = table(
        &app,
        "SELECT period_start, property_id, channel, count, avg_ms, p50_ms, p95_ms, p99_ms, max_ms FROM agg_response_times_hourly",
        3,
    )
    .await;
    assert_eq!(got, want, "agg_response_times_hourly");

    let want: BTreeMap<Vec<String>, Vec<Option<i64>>> = reference_conversation_metrics(&events)
        .into_iter()
        .map(|((d, p, c), v)| (vec![d, p, c], v))
        .collect();
    let conversation_sql = CONVERSATION_SQL;
    let got = table(&app, conversation_sql, 3).await;
    assert_eq!(got, want, "agg_conversation_metrics_daily");
    assert!(
        got.keys().any(|k| k[0] == "2026-11-01" && k[1] == "p_ny"),
        "the 25-hour day is there"
    );

    let got = table_values(
        &app,
        "SELECT period_date, property_id, staff_id, conversations_handled, tasks_completed, \
         avg_response_time_ms, satisfaction_avg, satisfaction_count FROM agg_staff_performance_daily",
        3,
    )
    .await;
    assert_rows_eq(
        &got,
        &reference_staff(&events),
        "agg_staff_performance_daily",
    );
    let got = table_values(
        &app,
        "SELECT period_date, property_id, intent, count, avg_confidence, action_taken_count, \
         escalated_count, low_confidence_count, feedback_count FROM agg_intent_distribution_daily",
        3,
    )
    .await;
    assert_rows_eq(
        &got,
        &reference_intents(&events),
        "agg_intent_distribution_daily",
    );
    let got = table_values(
        &app,
        "SELECT period_start, property_id, channel, surveys_sent, responses_received, rating_1, \
         rating_2, rating_3, rating_4, rating_5, avg_rating, nps_score FROM agg_satisfaction_weekly",
        3,
    )
    .await;
    assert_rows_eq(
        &got,
        &reference_satisfaction(&events),
        "agg_satisfaction_weekly",
    );
    assert_channel_delivery_is_the_reference(&app, &events).await;
    let got = table_values(
        &app,
        "SELECT period_date, property_id, tasks_created, tasks_assigned, tasks_completed, \
         sla_breached, completions_timed, avg_completion_minutes, p50_completion_minutes, \
         p95_completion_minutes FROM agg_task_performance_daily",
        2,
    )
    .await;
    let want = reference_task_performance(&events);
    assert!(
        want.values().any(|row| row[4].as_i64() > Some(1)),
        "completions timed: {want:?}"
    );
    assert_rows_eq(&got, &want, "agg_task_performance_daily");
    let got = table_values(
        &app,
        "SELECT period_date, property_id, staff_id, online_minutes, sessions \
         FROM agg_staff_presence_daily",
        3,
    )
    .await;
    let want = reference_staff_presence(&events);
    assert!(
        want.values().any(|row| row[0] == json!(1440)),
        "a day online throughout: {want:?}"
    );
    assert_rows_eq(&got, &want, "agg_staff_presence_daily");
    let got = table_values(
        &app,
        "SELECT period_month, property_id, total_conversations, total_messages, total_tasks, \
         ai_resolution_rate, avg_satisfaction, avg_response_time_minutes, top_intents, channel_breakdown \
         FROM agg_monthly_summary",
        2,
    )
    .await;
    let want = reference_monthly(&events);
    assert!(want.len() >= 5, "months of three zones: {:?}", want.keys());
    assert_rows_eq(&got, &want, "agg_monthly_summary");

    // Idempotence: a second run over the same range leaves every table as it was.
    let before = aggregate_tables(&app).await;
    aggregate();
    assert_eq!(
        aggregate_tables(&app).await,
        before,
        "a rerun changes nothing"
    );
    app.restart();
}

/// A job new to a database, as after an upgrade whose migration adds its table, has
/// no dirty-hours cursor: its first run as the schedule makes it computes every hour
/// whose raw events are still kept, while the other jobs, already caught up, find
/// nothing to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_new_to_a_database_computes_the_past_still_kept() {
    let nats = NatsServer::start();
    let app = App::start(&nats.url(), &config());
    let js = nats.jetstream().await;
    let events = dataset(1500);
    publish_dataset(&js, &events).await;
    wait_until(WAIT, "stored", || async { app.event_count().await == 1500 }).await;
    let due = |job: &str| run_due(&app.config_path(), job);
    due("all");
    // Before the upgrade: no table rows and no cursor for the new job.
    let db = app.db().await;
    for sql in [
        "DELETE FROM agg_channel_delivery_daily",
        "DELETE FROM agg_job_state WHERE job = 'daily_channel_delivery'",
        "DELETE FROM agg_pending_buckets WHERE job = 'daily_channel_delivery'",
    ] {
        db.execute(sql).await;
    }
    let before = aggregate_tables_of(db).await;
    due("all");
    let after = aggregate_tables(&app).await;
    // The other jobs, caught up, recomputed nothing in that run; the new one
    // recomputed the past.
    let db = app.db().await;
    let recomputed = db
        .rows(
            "SELECT job, CAST(periods_recomputed AS BIGINT) FROM agg_job_runs r \
             WHERE id = (SELECT max(id) FROM agg_job_runs l WHERE l.job = r.job) ORDER BY job",
        )
        .await;
    db.close().await;
    for row in &recomputed {
        let (job, n) = (row[0].as_str().unwrap(), row[1].as_i64().unwrap());
        match job {
            "daily_channel_delivery" => assert!(n >= 5, "{job}: {n}"),
            // Staff online now: the days closed since its last run, recomputed as
            // they stand.
            "daily_staff_presence" => {}
            _ => assert_eq!(n, 0, "{job} recomputed {n} periods"),
        }
    }
    assert_eq!(recomputed.len(), 10, "{recomputed:?}");
    for ((table, rows_before), (_, rows_after)) in before.iter().zip(&after) {
        if *table != "agg_channel_delivery_daily" {
            assert_eq!(rows_after, rows_before, "{table} recomputed");
        }
    }
    assert_channel_delivery_is_the_reference(&app, &events).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_events_are_reflected_by_the_next_scheduled_run_recomputing_only_their_bucket() {
    let nats = NatsServer::start();
    let app = App::start(
        &nats.url(),
        "aggregation:\n  schedules: {hourly_message_counts: '*/2 * * * * *'}\n",
    );
    let js = nats.jetstream().await;
    // Four buckets in the database: p_late's hours 3, 5 and 7 hours ago, and
    // p_other's 3 hours ago. The late events land in one of them only.
    let hour_ago = |h: i64| Utc::now() - chrono::Duration::hours(h);
    let at = |h: i64, min: u32| {
        let hour = hour_ago(h);
        let t = Utc.with_ymd_and_hms(
            chrono::Datelike::year(&hour),
            chrono::Datelike::month(&hour),
            chrono::Datelike::day(&hour),
            chrono::Timelike::hour(&hour),
            min,
            0,
        );
        t.unwrap().to_rfc3339()
    };
    let msg = |id: &str, property: &str, h: i64, min: u32| {
        (
            "butler.events.message.received".to_owned(),
            serde_json::to_vec(
                &json!({"id": id, "propertyId": property, "channel": "sms", "timestamp": at(h, min)}),
            )
            .unwrap(),
        )
    };
    let db = app.db().await;
    let counts = || async {
        db.rows(
            "SELECT property_id, period_start, count FROM agg_message_counts_hourly ORDER BY 1, 2",
        )
        .await
        .into_iter()
        .map(|r| {
            (
                r[0].as_str().unwrap().to_owned(),
                r[1].as_str().unwrap().to_owned(),
                r[2].as_i64().unwrap(),
            )
        })
        .collect::<Vec<_>>()
    };
    publish_all(
        &js,
        vec![
            msg("l1", "p_late", 3, 5),
            msg("l2", "p_late", 3, 10),
            msg("l5", "p_late", 5, 0),
            msg("l7", "p_late", 7, 30),
            msg("o1", "p_other", 3, 20),
        ],
    )
    .await;
    wait_until(
        WAIT,
        "the scheduled run to write the four buckets",
        || async { counts().await.iter().map(|(_, _, n)| n).sum::<i64>() == 5 },
    )
    .await;
    let before = counts().await;
    assert_eq!(before.len(), 4, "{before:?}");
    let recomputing_runs = || async {
        db.rows(
            "SELECT trigger, periods_recomputed FROM agg_job_runs WHERE job = 'hourly_message_counts' AND periods_recomputed > 0 ORDER BY id",
        )
        .await
        .into_iter()
        .map(|r| (r[0].as_str().unwrap().to_owned(), r[1].as_i64().unwrap()))
        .collect::<Vec<_>>()
    };
    // A run is recorded once its buckets are written, so wait for the record too.
    wait_until(WAIT, "the first recomputing runs recorded", || async {
        recomputing_runs().await.iter().map(|(_, n)| n).sum::<i64>() == 4
    })
    .await;
    let earlier = recomputing_runs().await.len();

    publish_all(
        &js,
        vec![msg("l3", "p_late", 3, 15), msg("l4", "p_late", 3, 59)],
    )
    .await;
    let late_key = |rows: &[(String, String, i64)]| {
        rows.iter()
            .find(|(p, _, n)| p == "p_late" && *n >= 2)
            .map(|(_, k, n)| (k.clone(), *n))
    };
    wait_until(
        WAIT,
        "the next scheduled run to count the late events",
        || async { late_key(&counts().await).is_some_and(|(_, n)| n == 4) },
    )
    .await;
    let after = counts().await;
    let changed: Vec<_> = after.iter().filter(|row| !before.contains(row)).collect();
    assert_eq!(
        changed.len(),
        1,
        "only the late events' bucket changed: {after:?}"
    );
    wait_until(WAIT, "the late run to be recorded", || async {
        recomputing_runs().await.len() > earlier
    })
    .await;
    let runs = recomputing_runs().await;
    assert!(
        runs[earlier..]
            .iter()
            .all(|(trigger, periods)| trigger == "schedule" && *periods == 1),
        "of four buckets, the late run recomputed only the late events' one: {runs:?}"
    );
    assert!(
        app.metric(
            r#"butler_analytics_aggregation_runs_total{aggregation_job="hourly_message_counts"}"#
        ) >= 2.0
    );
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_makes_up_the_runs_missed_while_down() {
    let nats = NatsServer::start();
    // Days and months in a zone where it is about noon: which month is closed cannot
    // change while the test runs.
    let zone = crate::helpers::midday_zone();
    let tz: Tz = zone.parse().unwrap();
    let mut app = App::start(
        &nats.url(),
        &format!("service:\n  aggregator: false\naggregation:\n  timezone: {zone}\n"),
    );
    let js = nats.jetstream().await;
    let when = (Utc::now() - chrono::Duration::days(2)).to_rfc3339();
    let body = serde_json::to_vec(&json!({"id": "m1", "propertyId": "p_down", "timestamp": when}))
        .unwrap();
    publish_all(
        &js,
        vec![("butler.events.conversation.started".into(), body)],
    )
    .await;
    wait_until(WAIT, "the event stored", || async {
        app.event_count().await == 1
    })
    .await;
    assert!(app.terminate().success());

    // The same database, now with the aggregator on and schedules far away.
    let config = std::fs::read_to_string(app.config_path())
        .unwrap()
        .replace("aggregator: false", "aggregator: true");
    std::fs::write(app.config_path(), config).unwrap();
    app.restart();
    let db = app.db().await;
    wait_until(WAIT, "the start-up run to write the daily row", || async {
        db.value("SELECT conversations_started FROM agg_conversation_metrics_daily WHERE property_id = 'p_down'")
            .await
            == Some(json!(1))
    })
    .await;
    // The start-up runs go job by job; the monthly summary's is the last.
    wait_until(WAIT, "every start-up run recorded", || async {
        db.count(
            "SELECT count(*) FROM agg_job_runs WHERE trigger = 'startup' AND job = 'monthly_summary'",
        )
        .await
            == 1
    })
    .await;
    let startup: Vec<(String, i64)> = db
        .rows("SELECT job, periods_recomputed FROM agg_job_runs WHERE trigger = 'startup' ORDER BY id")
        .await
        .into_iter()
        .map(|r| (r[0].as_str().unwrap().to_owned(), r[1].as_i64().unwrap()))
        .collect();
    let daily = |name: &str| startup.iter().find(|(job, _)| job == name).map(|(_, n)| *n);
    assert_eq!(
        daily("daily_staff_performance"),
        Some(1),
        "exactly the one missed day: {startup:?}"
    );
    // A job whose later days read earlier events (a conversation's start) also
    // recomputes the closed day after it.
    assert_eq!(
        daily("daily_conversation_metrics"),
        Some(2),
        "the missed day and yesterday: {startup:?}"
    );
    let monthly = db
        .value("SELECT total_conversations FROM agg_monthly_summary WHERE property_id = 'p_down'")
        .await
        .and_then(|v| v.as_i64());
    let local = |t: chrono::DateTime<Utc>| chrono::Datelike::month(&t.with_timezone(&tz));
    let month_closed = local(Utc::now() - chrono::Duration::days(2)) != local(Utc::now());
    assert_eq!(
        monthly,
        month_closed.then_some(1),
        "an open month is not written before it closes"
    );
}

/// Staff presence as the schedule computes it, in Paris: a shift from three days ago
/// to yesterday gives the day between, which has no event of its own, its whole day
/// of minutes; a login followed by
/// `available` is one session and `busy` ends it; then a late logout on the first
/// evening, run as the schedule runs (`--due`, no backfill), shortens that day and
/// takes the following days' rows away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_presence_follows_shifts_across_days_and_late_events() {
    let paris = chrono_tz::Europe::Paris;
    let nats = NatsServer::start();
    let app = App::start(
        &nats.url(),
        "aggregation:\n  property_timezones: {p_paris: Europe/Paris}\nservice:\n  aggregator: false\n",
    );
    let js = nats.jetstream().await;
    let today = Utc::now().with_timezone(&paris).date_naive();
    let day = |back: u64| today - chrono::Days::new(back);
    let at = |back: u64, h: u32, m: u32| {
        paris
            .from_local_datetime(&day(back).and_hms_opt(h, m, 0).unwrap())
            .earliest()
            .unwrap()
            .to_rfc3339()
    };
    let staff = |id: &str, t: &str, ts: String, who: &str, status: Option<&str>| {
        let mut event = json!({"id": id, "propertyId": "p_paris", "staffId": who, "timestamp": ts});
        if let Some(status) = status {
            event["metadata"] = json!({ "status": status });
        }
        (format!("butler.events.{t}"), event.to_string().into_bytes())
    };
    publish_all(
        &js,
        vec![
            staff("p1", "staff.login", at(3, 20, 0), "s1", None),
            staff("p2", "staff.logout", at(1, 6, 0), "s1", None),
            staff("p3", "staff.login", at(3, 9, 0), "s2", None),
            staff(
                "p4",
                "staff.status_changed",
                at(3, 9, 5),
                "s2",
                Some("available"),
            ),
            staff(
                "p5",
                "staff.status_changed",
                at(3, 12, 0),
                "s2",
                Some("busy"),
            ),
        ],
    )
    .await;
    wait_until(WAIT, "stored", || async { app.event_count().await == 5 }).await;
    let due = || run_due(&app.config_path(), "daily_staff_presence");
    let presence = || async {
        let db = app.db().await;
        let rows = db
            .rows(
                "SELECT CAST(period_date AS TEXT), staff_id, CAST(online_minutes AS BIGINT), \
                 CAST(sessions AS BIGINT) FROM agg_staff_presence_daily ORDER BY 1, 2",
            )
            .await;
        db.close().await;
        rows.into_iter()
            .map(|r| {
                (
                    r[0].as_str().unwrap().to_owned(),
                    r[1].as_str().unwrap().to_owned(),
                    r[2].as_i64().unwrap(),
                    r[3].as_i64().unwrap(),
                )
            })
            .collect::<Vec<_>>()
    };
    let minutes_of = |back: u64| {
        let start = paris
            .from_local_datetime(&day(back).and_hms_opt(0, 0, 0).unwrap())
            .earliest()
            .unwrap();
        let end = paris
            .from_local_datetime(&day(back - 1).and_hms_opt(0, 0, 0).unwrap())
            .earliest()
            .unwrap();
        (end - start).num_minutes()
    };
    due();
    assert_eq!(
        presence().await,
        [
            (day(3).to_string(), "s1".to_owned(), 240, 1),
            (day(3).to_string(), "s2".to_owned(), 180, 1),
            (day(2).to_string(), "s1".to_owned(), minutes_of(2), 0),
            (day(1).to_string(), "s1".to_owned(), 360, 0),
        ]
    );

    // A late logout on the first evening: that day shortens, the next two lose s1.
    publish_all(
        &js,
        vec![staff("p6", "staff.logout", at(3, 21, 30), "s1", None)],
    )
    .await;
    wait_until(WAIT, "stored", || async { app.event_count().await == 6 }).await;
    due();
    assert_eq!(
        presence().await,
        [
            (day(3).to_string(), "s1".to_owned(), 90, 1),
            (day(3).to_string(), "s2".to_owned(), 180, 1),
        ]
    );

    // Days that pass with no event at all: s3 logs in and stays online. As if the
    // job had last run on the second day's morning, with nothing written since: the
    // next run finds s3 online and writes the days closed since, from their state
    // alone.
    publish_all(
        &js,
        vec![staff("p7", "staff.login", at(3, 23, 0), "s3", None)],
    )
    .await;
    wait_until(WAIT, "stored", || async { app.event_count().await == 7 }).await;
    due();
    let db = app.db().await;
    let last_run = paris
        .from_local_datetime(&day(2).and_hms_opt(1, 0, 0).unwrap())
        .earliest()
        .unwrap()
        .with_timezone(&Utc)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    db.execute(&format!(
        "UPDATE agg_job_state SET last_success_at = '{last_run}' WHERE job = 'daily_staff_presence'"
    ))
    .await;
    db.execute(&format!(
        "DELETE FROM agg_staff_presence_daily WHERE period_date > '{}'",
        day(3)
    ))
    .await;
    db.close().await;
    due();
    assert_eq!(
        presence().await,
        [
            (day(3).to_string(), "s1".to_owned(), 90, 1),
            (day(3).to_string(), "s2".to_owned(), 180, 1),
            (day(3).to_string(), "s3".to_owned(), 60, 1),
            (day(2).to_string(), "s3".to_owned(), minutes_of(2), 0),
            (day(1).to_string(), "s3".to_owned(), minutes_of(1), 0),
        ]
    );
}

/// §8's columns and tables take late events in the next run the schedule makes (no
/// backfill): the first 1,100 events of the dataset, a run, then the other 400 —
/// spread over the same past days — and a run; each time the tables equal the
/// reference over what had arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_new_figures_take_late_events_in_the_next_scheduled_run() {
    let nats = NatsServer::start();
    let app = App::start(&nats.url(), &config());
    let js = nats.jetstream().await;
    let mut events = dataset(1500);
    // A completion on 2 November whose task's creation, on 1 November, comes late;
    // and a resolution on 2 November whose conversation's start comes late too.
    let at = |d: u32, h: u32| {
        Utc.with_ymd_and_hms(2026, 11, d, h, 0, 0)
            .unwrap()
            .timestamp_millis()
    };
    let late_pair = |id: &str, event_type: &'static str, ts_ms: i64| Ev {
        id: id.to_owned(),
        event_type,
        property: "p_utc",
        ts_ms,
        channel: Some("sms"),
        conversation: Some("c_late".to_owned()),
        duration_ms: None,
        staff: None,
        value: None,
        intent: None,
        task: Some("t_late".to_owned()),
        status: None,
    };
    events.insert(0, late_pair("late-done", "task.completed", at(2, 12)));
    events.insert(
        1,
        late_pair("late-resolved", "conversation.resolved", at(2, 13)),
    );
    events.push(late_pair("late-created", "task.created", at(1, 9)));
    events.push(late_pair("late-started", "conversation.started", at(1, 10)));
    let events = events;
    let due = || run_due(&app.config_path(), "all");
    // The late creation and start come alone: their day is the only one changed.
    let mut from = 0;
    for arrived in [1100, events.len() - 2, events.len()] {
        publish_dataset(&js, &events[from..arrived]).await;
        from = arrived;
        wait_until(WAIT, "stored", || async {
            app.event_count().await == arrived as i64
        })
        .await;
        due();
        let events = &events[..arrived];
        assert_channel_delivery_is_the_reference(&app, events).await;
        let got = table_values(
            &app,
            "SELECT period_date, property_id, tasks_created, tasks_assigned, tasks_completed, \
             sla_breached, completions_timed, avg_completion_minutes, p50_completion_minutes, \
             p95_completion_minutes FROM agg_task_performance_daily",
            2,
        )
        .await;
        assert_rows_eq(
            &got,
            &reference_task_performance(events),
            "agg_task_performance_daily",
        );
        let got = table_values(
            &app,
            "SELECT period_date, property_id, intent, count, avg_confidence, action_taken_count, \
             escalated_count, low_confidence_count, feedback_count FROM agg_intent_distribution_daily",
            3,
        )
        .await;
        assert_rows_eq(
            &got,
            &reference_intents(events),
            "agg_intent_distribution_daily",
        );
        let want: BTreeMap<Vec<String>, Vec<Option<i64>>> = reference_conversation_metrics(events)
            .into_iter()
            .map(|((d, p, c), v)| (vec![d, p, c], v))
            .collect();
        let got = table(&app, CONVERSATION_SQL, 3).await;
        assert_eq!(got, want, "agg_conversation_metrics_daily after {arrived}");
    }
}
