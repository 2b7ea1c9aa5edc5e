//! `analytics.query.report`: a report over the property's local days `[start, end)`,
//! as JSON (the seed's `Report`) or long-format CSV, also written to
//! `reports.storage/<propertyId>/<type>_<start>_<end>.<format>`.
//!
//! Counts come from the aggregate tables, so a count in a report equals the sum of the
//! aggregate rows of its range. The summary and satisfaction sections are computed from
//! the raw events of the range, as no aggregate table has them per day (they are the
//! monthly summary's and the weekly table's definitions, over the report's range).

use std::path::{Path, PathBuf};

use butler_storage::Storage;
use butler_storage::queries::{AggTable, Combine, SeriesQuery};
use chrono::{NaiveDate, SecondsFormat, Utc};
use chrono_tz::Tz;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::{QueryError, check_property};

/// The seven sections, in the seed's order.
pub const SECTIONS: [&str; 7] = [
    "summary",
    "conversations",
    "response_times",
    "staff_performance",
    "satisfaction",
    "top_intents",
    "channel_breakdown",
];

/// `{"start","end"}`: local dates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DateRange {
    /// First local day included.
    pub start: String,
    /// First local day excluded.
    pub end: String,
}

/// `{"type","propertyId","dateRange","sections"?,"format"?}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReportRequest {
    /// `daily`, `weekly` or `monthly`: names the file, and the kind of period.
    #[serde(rename = "type")]
    pub report_type: String,
    /// The property.
    pub property_id: String,
    /// The local days covered.
    pub date_range: DateRange,
    /// Sections wanted; all seven when absent or empty.
    #[serde(default)]
    pub sections: Vec<String>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

/// A generated report: its body, content type, and the file it was written to.
#[derive(Debug, Clone)]
pub struct Report {
    /// The JSON report, or CSV text.
    pub body: Vec<u8>,
    /// `csv` or `json`.
    pub format: &'static str,
    /// Where it was written.
    pub path: PathBuf,
}

/// What a report needs from the configuration.
#[derive(Debug, Clone)]
pub struct ReportSettings {
    /// `reports.enabled`.
    pub enabled: bool,
    /// `reports.formats`.
    pub formats: Vec<&'static str>,
    /// `reports.storage`.
    pub storage: PathBuf,
}

fn parse_date(value: &str, field: &str) -> Result<NaiveDate, QueryError> {
    let date_part = value.get(..10).unwrap_or(value);
    NaiveDate::parse_from_str(date_part, "%Y-%m-%d").map_err(|_| {
        QueryError::BadRequest(format!("{field} {value:?} is not a date (YYYY-MM-DD)"))
    })
}

/// A property id as one safe file-name component: letters, digits, `-`, `_` and `.`
/// stay; anything else (`/`, `..`, spaces) is percent-encoded.
pub fn file_component(property: &str) -> String {
    let mut out = String::with_capacity(property.len());
    for b in property.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || (b == b'.' && !out.is_empty()) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Builds, writes and returns a report.
///
/// # Errors
/// `bad_request` for an unknown type, section or format, or a bad range; `internal`
/// when the database or the file system fails.
pub async fn report(
    storage: &Storage,
    settings: &ReportSettings,
    tz_of: impl Fn(&str) -> Tz,
    request: ReportRequest,
) -> Result<Report, QueryError> {
    if !settings.enabled {
        return Err(QueryError::BadRequest(
            "reports are disabled (reports.enabled: false)".into(),
        ));
    }
    check_property(&request.property_id)?;
    if !["daily", "weekly", "monthly"].contains(&request.report_type.as_str()) {
        return Err(QueryError::BadRequest(format!(
            "type {:?} is not one of daily, weekly, monthly",
            request.report_type
        )));
    }
    let format = request.format.as_deref().unwrap_or("json");
    let Some(format) = settings.formats.iter().copied().find(|f| *f == format) else {
        return Err(QueryError::BadRequest(format!(
            "format {format:?} is not one of the configured formats: {}",
            settings.formats.join(", ")
        )));
    };
    let sections: Vec<&'static str> = if request.sections.is_empty() {
        SECTIONS.to_vec()
    } else {
        let mut out = Vec::new();
        for s in &request.sections {
            let Some(known) = SECTIONS.iter().find(|k| *k == s) else {
                return Err(QueryError::BadRequest(format!(
                    "unknown section {s:?}; sections: {}",
                    SECTIONS.join(", ")
                )));
            };
            if !out.contains(known) {
                out.push(*known);
            }
        }
        out
    };
    let start = parse_date(&request.date_range.start, "dateRange.start")?;
    let end = parse_date(&request.date_range.end, "dateRange.end")?;
    if start >= end {
        return Err(QueryError::BadRequest(format!(
            "dateRange.start ({start}) must be before dateRange.end ({end}); the range is [start, end)"
        )));
    }
    let tz = tz_of(&request.property_id);
    let figures = Figures::gather(storage, &request.property_id, tz, start, end, &sections).await?;

    let mut report = Map::new();
    report.insert(
        "generatedAt".into(),
        json!(Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)),
    );
    report.insert("propertyId".into(), json!(request.property_id));
    report.insert("type".into(), json!(request.report_type));
    report.insert(
        "period".into(),
        json!({ "start": start.to_string(), "end": end.to_string() }),
    );
    report.insert("sections".into(), Value::Object(figures.json.clone()));
    let body = if format == "csv" {
        figures.csv()?
    } else {
        serde_json::to_vec(&Value::Object(report))
            .map_err(|e| QueryError::Internal(e.to_string()))?
    };
    let path = settings
        .storage
        .join(file_component(&request.property_id))
        .join(format!("{}_{start}_{end}.{format}", request.report_type));
    write_file(&path, &body).await?;
    Ok(Report { body, format, path })
}

async fn write_file(path: &Path, body: &[u8]) -> Result<(), QueryError> {
    let io = |e: std::io::Error| {
        QueryError::Internal(format!("cannot write report {}: {e}", path.display()))
    };
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir).await.map_err(io)?;
    }
    // Written beside, then renamed: a reader never sees half a report. Each write has
    // its own partial file, so the same report asked twice at once cannot collide.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let partial = path.with_extension(format!("{}-{n}.partial", std::process::id()));
    tokio::fs::write(&partial, body).await.map_err(io)?;
    tokio::fs::rename(&partial, path).await.map_err(io)
}

/// The figures of the sections asked, as JSON and as CSV rows.
struct Figures {
    json: Map<String, Value>,
    rows: Vec<(&'static str, String, &'static str, Value)>,
}

fn camel(section: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in section.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

impl Figures {
    async fn gather(
        storage: &Storage,
        property: &str,
        tz: Tz,
        start: NaiveDate,
        end: NaiveDate,
        sections: &[&'static str],
    ) -> Result<Figures, QueryError> {
        let from = butler_aggregator::buckets::start_of_local_date(tz, start);
        let to = butler_aggregator::buckets::start_of_local_date(tz, end);
        let ts = |t: chrono::DateTime<Utc>| butler_events::EventTime::from_datetime(&t);
        let hour_key = |t: chrono::DateTime<Utc>| t.format("%Y-%m-%dT%H:00:00Z").to_string();
        let (day_from, day_to) = (start.to_string(), end.to_string());
        let total = |table: AggTable,
                     column: &'static str,
                     combine: Combine,
                     dims: &'static [&'static str]| {
            let (from_key, to_key) = if table == AggTable::ResponseTimesHourly {
                (hour_key(from), hour_key(to))
            } else {
                (day_from.clone(), day_to.clone())
            };
            async move {
                storage
                    .series(&SeriesQuery {
                        table,
                        column,
                        combine,
                        dimensions: dims,
                        property_id: property,
                        from_key: &from_key,
                        to_key: &to_key,
                        per_period: false,
                    })
                    .await?
                    .map_err(|e| QueryError::Internal(e.to_string()))
            }
        };
        let mut f = Figures {
            json: Map::new(),
            rows: Vec::new(),
        };
        for section in sections {
            let mut obj = Map::new();
            match *section {
                "summary" => {
                    let s = storage.summary_figures(property, ts(from), ts(to)).await?;
                    for (metric, v) in [
                        ("totalConversations", json!(s.total_conversations)),
                        ("totalMessages", json!(s.total_messages)),
                        ("totalTasks", json!(s.total_tasks)),
                        ("aiResolutionRate", json!(s.ai_resolution_rate)),
                        ("avgSatisfaction", json!(s.avg_satisfaction)),
                        ("avgResponseTimeMinutes", json!(s.avg_response_time_minutes)),
                    ] {
                        f.rows.push((section, String::new(), metric, v.clone()));
                        obj.insert(metric.into(), v);
                    }
                }
                "conversations" => {
                    let columns = [
                        ("conversationsStarted", "conversations_started"),
                        ("conversationsResolved", "conversations_resolved"),
                        ("conversationsEscalated", "conversations_escalated"),
                        ("aiHandledCount", "ai_handled_count"),
                        ("aiEscalatedCount", "ai_escalated_count"),
                    ];
                    let mut by_channel: Map<String, Value> = Map::new();
                    for (metric, column) in columns {
                        let t = total(
                            AggTable::ConversationMetricsDaily,
                            column,
                            Combine::Sum,
                            &[],
                        )
                        .await?;
                        let v = json!(t.first().and_then(|p| p.value).unwrap_or(0.0) as i64);
                        f.rows.push((section, String::new(), metric, v.clone()));
                        obj.insert(metric.into(), v);
                        for p in total(
                            AggTable::ConversationMetricsDaily,
                            column,
                            Combine::Sum,
                            &["channel"],
                        )
                        .await?
                        {
                            let channel = p.dimensions[0].clone();
                            let v = json!(p.value.unwrap_or(0.0) as i64);
                            f.rows.push((section, channel.clone(), metric, v.clone()));
                            by_channel.entry(channel).or_insert_with(|| json!({}))[metric] = v;
                        }
                    }
                    obj.insert("byChannel".into(), Value::Object(by_channel));
                }
                "response_times" => {
                    let measures = [
                        ("count", "count", Combine::Sum),
                        ("avgMs", "avg_ms", Combine::WeightedBy("count")),
                        ("maxMs", "max_ms", Combine::Max),
                    ];
                    let mut by_channel: Map<String, Value> = Map::new();
                    for (metric, column, combine) in measures {
                        let t = total(AggTable::ResponseTimesHourly, column, combine, &[]).await?;
                        let v = number(t.first().and_then(|p| p.value), metric == "count");
                        f.rows.push((section, String::new(), metric, v.clone()));
                        obj.insert(metric.into(), v);
                        for p in total(AggTable::ResponseTimesHourly, column, combine, &["channel"])
                            .await?
                        {
                            let channel = p.dimensions[0].clone();
                            let v = number(p.value, metric == "count");
                            f.rows.push((section, channel.clone(), metric, v.clone()));
                            by_channel.entry(channel).or_insert_with(|| json!({}))[metric] = v;
                        }
                    }
                    obj.insert("byChannel".into(), Value::Object(by_channel));
                }
                "staff_performance" => {
                    let measures = [
                        (
                            "conversationsHandled",
                            "conversations_handled",
                            Combine::Sum,
                        ),
                        ("tasksCompleted", "tasks_completed", Combine::Sum),
                        ("satisfactionCount", "satisfaction_count", Combine::Sum),
                        (
                            "satisfactionAvg",
                            "satisfaction_avg",
                            Combine::WeightedBy("satisfaction_count"),
                        ),
                    ];
                    for (metric, column, combine) in measures {
                        for p in total(
                            AggTable::StaffPerformanceDaily,
                            column,
                            combine,
                            &["staff_id"],
                        )
                        .await?
                        {
                            let staff = p.dimensions[0].clone();
                            let v = number(p.value, combine == Combine::Sum);
                            f.rows.push((section, staff.clone(), metric, v.clone()));
                            obj.entry(staff).or_insert_with(|| json!({}))[metric] = v;
                        }
                    }
                }
                "satisfaction" => {
                    let per_channel = storage
                        .satisfaction_figures(property, ts(from), ts(to))
                        .await?;
                    let mut all = [0i64; 5];
                    let mut surveys = 0;
                    let mut by_channel = Map::new();
                    for c in &per_channel {
                        surveys += c.surveys_sent;
                        for (a, r) in all.iter_mut().zip(c.ratings) {
                            *a += r;
                        }
                        let figures = satisfaction_figures(c.surveys_sent, c.ratings);
                        for (metric, v) in &figures {
                            f.rows.push((section, c.channel.clone(), metric, v.clone()));
                        }
                        by_channel.insert(
                            c.channel.clone(),
                            Value::Object(
                                figures
                                    .into_iter()
                                    .map(|(k, v)| (k.to_owned(), v))
                                    .collect(),
                            ),
                        );
                    }
                    for (metric, v) in satisfaction_figures(surveys, all) {
                        f.rows.push((section, String::new(), metric, v.clone()));
                        obj.insert(metric.into(), v);
                    }
                    obj.insert("byChannel".into(), Value::Object(by_channel));
                }
                "top_intents" => {
                    let counts = total(
                        AggTable::IntentDistributionDaily,
                        "count",
                        Combine::Sum,
                        &["intent"],
                    )
                    .await?;
                    let mut ranked: Vec<(String, i64)> = counts
                        .into_iter()
                        .map(|p| (p.dimensions[0].clone(), p.value.unwrap_or(0.0) as i64))
                        .filter(|(_, n)| *n > 0)
                        .collect();
                    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                    ranked.truncate(5);
                    let list: Vec<Value> = ranked
                        .iter()
                        .map(|(intent, count)| {
                            f.rows
                                .push((section, intent.clone(), "count", json!(count)));
                            json!({"intent": intent, "count": count})
                        })
                        .collect();
                    f.json.insert(camel(section), Value::Array(list));
                    continue;
                }
                "channel_breakdown" => {
                    for p in total(
                        AggTable::ConversationMetricsDaily,
                        "conversations_started",
                        Combine::Sum,
                        &["channel"],
                    )
                    .await?
                    {
                        let n = p.value.unwrap_or(0.0) as i64;
                        if n > 0 {
                            f.rows.push((
                                section,
                                p.dimensions[0].clone(),
                                "conversationsStarted",
                                json!(n),
                            ));
                            obj.insert(p.dimensions[0].clone(), json!(n));
                        }
                    }
                }
                _ => {}
            }
            f.json.insert(camel(section), Value::Object(obj));
        }
        Ok(f)
    }

    /// RFC 4180, header `section,item,metric,value`, one line per figure; a missing
    /// value is an empty field.
    fn csv(&self) -> Result<Vec<u8>, QueryError> {
        let mut w = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .from_writer(Vec::new());
        let err = |e: csv::Error| QueryError::Internal(format!("writing CSV: {e}"));
        w.write_record(["section", "item", "metric", "value"])
            .map_err(err)?;
        for (section, item, metric, value) in &self.rows {
            let value = match value {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            w.write_record([*section, item.as_str(), metric, value.as_str()])
                .map_err(err)?;
        }
        w.into_inner()
            .map_err(|e| QueryError::Internal(format!("writing CSV: {e}")))
    }
}

fn number(v: Option<f64>, integer: bool) -> Value {
    match v {
        None => Value::Null,
        Some(v) if integer => json!(v as i64),
        Some(v) => json!(v),
    }
}

fn satisfaction_figures(surveys: i64, ratings: [i64; 5]) -> Vec<(&'static str, Value)> {
    let responses: i64 = ratings.iter().sum();
    let weighted: i64 = ratings
        .iter()
        .enumerate()
        .map(|(i, n)| (i as i64 + 1) * n)
        .sum();
    let (avg, nps) = if responses == 0 {
        (Value::Null, Value::Null)
    } else {
        (
            json!(weighted as f64 / responses as f64),
            json!(
                100.0 * (ratings[4] - ratings[0] - ratings[1] - ratings[2]) as f64
                    / responses as f64
            ),
        )
    };
    vec![
        ("surveysSent", json!(surveys)),
        ("responsesReceived", json!(responses)),
        ("rating1", json!(ratings[0])),
        ("rating2", json!(ratings[1])),
        ("rating3", json!(ratings[2])),
        ("rating4", json!(ratings[3])),
        ("rating5", json!(ratings[4])),
        ("avgRating", avg),
        ("npsScore", nps),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn property_ids_become_safe_file_names() {
        assert_eq!(file_component("prop_lisbon_01"), "prop_lisbon_01");
        assert_eq!(file_component("../etc/passwd"), "%2E.%2Fetc%2Fpasswd");
        assert_eq!(file_component(".."), "%2E.");
        assert_eq!(file_component("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn section_names_in_json_are_camel_case() {
        assert_eq!(camel("staff_performance"), "staffPerformance");
        assert_eq!(camel("summary"), "summary");
    }
}
