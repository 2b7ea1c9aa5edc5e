//! `analytics.query.report`: a report over the property's local days `[start, end)`,
//! as JSON (the seed's `Report`) or long-format CSV, also written to
//! `reports.storage/<propertyId>/<type>_<start>_<end>.<format>`.
//!
//! Counts come from the aggregate tables, so a count in a report equals the sum of the
//! aggregate rows of its range. The summary and satisfaction sections are computed from
//! the hour tallies of the range, as no aggregate table has them per day (they are the
//! monthly summary's and the weekly table's definitions, over the report's range).

use std::path::{Path, PathBuf};

use butler_events::EventType as T;
use butler_events::calendar::{hour_key, parse_request_date, start_of_local_date};
use butler_events::formulas::{Ratings, ai_resolution_rate, minutes};
use butler_events::{EventTime, Granularity, Zones};
use butler_storage::Storage;
use butler_storage::queries::{SeriesPoint, SeriesQuery};
use butler_storage::tables::{
    AggTable, CHANNEL_DELIVERY_DAILY, CONVERSATION_METRICS_DAILY, Combine,
    INTENT_DISTRIBUTION_DAILY, Kind, Measure, RESPONSE_TIMES_HOURLY, STAFF_PERFORMANCE_DAILY,
    STAFF_PRESENCE_DAILY, TASK_PERFORMANCE_DAILY,
};
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::objects::{ReportObjects, StoredObject};
use crate::window::Window;
use crate::{QueryError, check_property};

/// A report's period kind: names its file, and which period a schedule covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportType {
    /// One local day.
    Daily,
    /// One ISO week.
    Weekly,
    /// One calendar month.
    Monthly,
}

impl ReportType {
    /// Every type.
    pub const ALL: [ReportType; 3] = [ReportType::Daily, ReportType::Weekly, ReportType::Monthly];

    /// The name used in requests and file names.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportType::Daily => "daily",
            ReportType::Weekly => "weekly",
            ReportType::Monthly => "monthly",
        }
    }

    /// The width of its period.
    pub fn granularity(self) -> Granularity {
        match self {
            ReportType::Daily => Granularity::Day,
            ReportType::Weekly => Granularity::Week,
            ReportType::Monthly => Granularity::Month,
        }
    }

    fn parse(name: &str) -> Result<ReportType, QueryError> {
        ReportType::ALL
            .into_iter()
            .find(|t| t.as_str() == name)
            .ok_or_else(|| {
                QueryError::BadRequest(format!(
                    "type {name:?} is not one of daily, weekly, monthly"
                ))
            })
    }
}

/// The sections: the seed's seven, in its order, then §8's `operations`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Section {
    /// The monthly summary's figures over the range.
    #[default]
    Summary,
    /// Conversation counts, in all and per channel.
    Conversations,
    /// Response times, in all and per channel.
    ResponseTimes,
    /// Per staff member.
    StaffPerformance,
    /// Surveys, ratings, mean rating and NPS, in all and per channel.
    Satisfaction,
    /// The five most classified intents.
    TopIntents,
    /// Conversations started per channel.
    ChannelBreakdown,
    /// §8: delivery, tasks, automation and SLA, knowledge gaps, staff on duty.
    Operations,
}

impl Section {
    /// Every section, in the seed's order, then §8's.
    pub const ALL: [Section; 8] = [
        Section::Summary,
        Section::Conversations,
        Section::ResponseTimes,
        Section::StaffPerformance,
        Section::Satisfaction,
        Section::TopIntents,
        Section::ChannelBreakdown,
        Section::Operations,
    ];

    /// The name in requests and in CSV.
    pub fn as_str(self) -> &'static str {
        match self {
            Section::Summary => "summary",
            Section::Conversations => "conversations",
            Section::ResponseTimes => "response_times",
            Section::StaffPerformance => "staff_performance",
            Section::Satisfaction => "satisfaction",
            Section::TopIntents => "top_intents",
            Section::ChannelBreakdown => "channel_breakdown",
            Section::Operations => "operations",
        }
    }

    /// The key in a JSON report.
    fn json_key(self) -> &'static str {
        match self {
            Section::Summary => "summary",
            Section::Conversations => "conversations",
            Section::ResponseTimes => "responseTimes",
            Section::StaffPerformance => "staffPerformance",
            Section::Satisfaction => "satisfaction",
            Section::TopIntents => "topIntents",
            Section::ChannelBreakdown => "channelBreakdown",
            Section::Operations => "operations",
        }
    }

    fn parse(name: &str) -> Result<Section, QueryError> {
        Section::ALL
            .into_iter()
            .find(|s| s.as_str() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Section::ALL.iter().map(|s| s.as_str()).collect();
                QueryError::BadRequest(format!(
                    "unknown section {name:?}; sections: {}",
                    names.join(", ")
                ))
            })
    }
}

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
    /// Sections wanted; all of them when absent or empty.
    #[serde(default)]
    pub sections: Vec<String>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

/// A generated report: its body, content type, the file it was written to, and its
/// object when reports also go to an object store.
#[derive(Debug, Clone)]
pub struct Report {
    /// The JSON report, or CSV text.
    pub body: Vec<u8>,
    /// `csv` or `json`.
    pub format: &'static str,
    /// Where it was written.
    pub path: PathBuf,
    /// Its object in `reports.object_store`, unless that is unset or refused it (the
    /// file is there either way).
    pub object: Option<StoredObject>,
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
    /// `reports.object_store`, opened.
    pub objects: Option<ReportObjects>,
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
    zones: &Zones,
    request: ReportRequest,
) -> Result<Report, QueryError> {
    if !settings.enabled {
        return Err(QueryError::BadRequest(
            "reports are disabled (reports.enabled: false)".into(),
        ));
    }
    check_property(&request.property_id)?;
    let report_type = ReportType::parse(&request.report_type)?;
    let format = request.format.as_deref().unwrap_or("json");
    let Some(format) = settings.formats.iter().copied().find(|f| *f == format) else {
        return Err(QueryError::BadRequest(format!(
            "format {format:?} is not one of the configured formats: {}",
            settings.formats.join(", ")
        )));
    };
    let sections: Vec<Section> = if request.sections.is_empty() {
        Section::ALL.to_vec()
    } else {
        let mut out = Vec::new();
        for name in &request.sections {
            let section = Section::parse(name)?;
            if !out.contains(&section) {
                out.push(section);
            }
        }
        out
    };
    let start = parse_request_date(&request.date_range.start, "dateRange.start")?;
    let end = parse_request_date(&request.date_range.end, "dateRange.end")?;
    if start >= end {
        return Err(QueryError::BadRequest(format!(
            "dateRange.start ({start}) must be before dateRange.end ({end}); the range is [start, end)"
        )));
    }
    let range = Range::new(
        storage,
        &request.property_id,
        zones.of(&request.property_id),
        start,
        end,
    );
    let mut figures = Figures::default();
    for section in sections {
        figures.section = section;
        let json = range.section(section, &mut figures).await?;
        figures.json.insert(section.json_key().into(), json);
    }

    let mut report = Map::new();
    report.insert(
        "generatedAt".into(),
        json!(Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)),
    );
    report.insert("propertyId".into(), json!(request.property_id));
    report.insert("type".into(), json!(report_type.as_str()));
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
    let name = format!(
        "{}/{}_{start}_{end}.{format}",
        file_component(&request.property_id),
        report_type.as_str()
    );
    let path = settings.storage.join(&name);
    write_file(&path, &body).await?;
    let object = match &settings.objects {
        Some(objects) => match objects.put(&name, &body).await {
            Ok(object) => Some(object),
            Err(err) => {
                tracing::warn!(error = %err, "report kept in its file only");
                None
            }
        },
        None => None,
    };
    Ok(Report {
        body,
        format,
        path,
        object,
    })
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

/// The figures of the sections done so far, as JSON and as CSV rows.
#[derive(Default)]
struct Figures {
    /// The section being written.
    section: Section,
    json: Map<String, Value>,
    rows: Vec<(&'static str, String, String, Value)>,
}

impl Figures {
    /// One CSV line of the current section: `item` is empty for a figure of the whole
    /// range, else the channel, staff member or intent.
    fn row(&mut self, item: &str, metric: &str, value: &Value) {
        self.rows.push((
            self.section.as_str(),
            item.to_owned(),
            metric.to_owned(),
            value.clone(),
        ));
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
            w.write_record([*section, item.as_str(), metric.as_str(), value.as_str()])
                .map_err(err)?;
        }
        w.into_inner()
            .map_err(|e| QueryError::Internal(format!("writing CSV: {e}")))
    }
}

/// The report's range, in the forms the sections read it.
struct Range<'a> {
    storage: &'a Storage,
    property: &'a str,
    /// First and last instant, from local midnight to local midnight.
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    /// The local dates, as the daily tables key them.
    days: (String, String),
}

/// A value of a measure combined over the range: a whole number for counts, a
/// fraction for averages and maxima, null where there is nothing.
fn number(measure: &Measure, v: Option<f64>) -> Value {
    match v {
        None => Value::Null,
        Some(v) if measure.combine == Combine::Sum => json!(v as i64),
        Some(v) => json!(v),
    }
}

/// A count combined over the range; 0 where there is nothing.
fn count(v: Option<f64>) -> Value {
    json!(v.unwrap_or(0.0) as i64)
}

impl<'a> Range<'a> {
    fn new(
        storage: &'a Storage,
        property: &'a str,
        tz: chrono_tz::Tz,
        start: NaiveDate,
        end: NaiveDate,
    ) -> Range<'a> {
        Range {
            storage,
            property,
            from: start_of_local_date(tz, start),
            to: start_of_local_date(tz, end),
            days: (start.to_string(), end.to_string()),
        }
    }

    async fn section(&self, section: Section, f: &mut Figures) -> Result<Value, QueryError> {
        match section {
            Section::Summary => self.summary(f).await,
            Section::Conversations => self.conversations(f).await,
            Section::ResponseTimes => self.response_times(f).await,
            Section::StaffPerformance => self.staff_performance(f).await,
            Section::Satisfaction => self.satisfaction(f).await,
            Section::TopIntents => self.top_intents(f).await,
            Section::ChannelBreakdown => self.channel_breakdown(f).await,
            Section::Operations => self.operations(f).await,
        }
    }

    /// `measure` of `table` over the range, combined as its table declares: one point
    /// per value of `dimensions` (one point in all without any).
    async fn total(
        &self,
        table: &'static AggTable,
        measure: &'static Measure,
        dimensions: &[&str],
    ) -> Result<Vec<SeriesPoint>, QueryError> {
        // Hourly rows by the UTC hours from the first local midnight's to the last's.
        let (from_key, to_key) = if table.granularity == Granularity::Hour {
            (hour_key(self.from), hour_key(self.to))
        } else {
            self.days.clone()
        };
        self.storage
            .series(&SeriesQuery {
                table,
                measure,
                dimensions,
                property_id: self.property,
                from_key: &from_key,
                to_key: &to_key,
                per_period: false,
            })
            .await?
            .map_err(|e| QueryError::Internal(e.to_string()))
    }

    async fn window(&self) -> Result<Window, QueryError> {
        Ok(Window::read(self.storage, self.property, self.from, self.to).await?)
    }

    async fn summary(&self, f: &mut Figures) -> Result<Value, QueryError> {
        let (window, (resolved, not_escalated)) = tokio::try_join!(self.window(), async {
            let counts = self
                .storage
                .resolution_counts(
                    self.property,
                    EventTime::from_datetime(&self.from),
                    EventTime::from_datetime(&self.to),
                )
                .await?;
            Ok::<_, QueryError>(counts)
        },)?;
        let mut obj = Map::new();
        for (metric, v) in [
            (
                "totalConversations",
                json!(window.count(T::ConversationStarted)),
            ),
            (
                "totalMessages",
                json!(window.count(T::MessageReceived) + window.count(T::MessageSent)),
            ),
            ("totalTasks", json!(window.count(T::TaskCreated))),
            (
                "aiResolutionRate",
                json!(ai_resolution_rate(resolved, not_escalated)),
            ),
            ("avgSatisfaction", json!(window.ratings().mean())),
            (
                "avgResponseTimeMinutes",
                json!(
                    window
                        .mean_duration_ms(T::ResponseTimeRecorded)
                        .map(minutes)
                ),
            ),
        ] {
            f.row("", metric, &v);
            obj.insert(metric.into(), v);
        }
        Ok(Value::Object(obj))
    }

    async fn conversations(&self, f: &mut Figures) -> Result<Value, QueryError> {
        const COUNTS: [&Measure; 5] = [
            CONVERSATION_METRICS_DAILY.measure("conversations_started"),
            CONVERSATION_METRICS_DAILY.measure("conversations_resolved"),
            CONVERSATION_METRICS_DAILY.measure("conversations_escalated"),
            CONVERSATION_METRICS_DAILY.measure("ai_handled_count"),
            CONVERSATION_METRICS_DAILY.measure("ai_escalated_count"),
        ];
        // A count of nothing is 0 here.
        self.in_all_and_by_channel(f, &CONVERSATION_METRICS_DAILY, &COUNTS, |_, v| count(v))
            .await
    }

    async fn response_times(&self, f: &mut Figures) -> Result<Value, QueryError> {
        const MEASURES: [&Measure; 3] = [
            RESPONSE_TIMES_HOURLY.measure("count"),
            RESPONSE_TIMES_HOURLY.measure("avg_ms"),
            RESPONSE_TIMES_HOURLY.measure("max_ms"),
        ];
        self.in_all_and_by_channel(f, &RESPONSE_TIMES_HOURLY, &MEASURES, number)
            .await
    }

    /// Each of `measures` over the range in all, and per channel under `byChannel`;
    /// `value` renders a combined value.
    async fn in_all_and_by_channel(
        &self,
        f: &mut Figures,
        table: &'static AggTable,
        measures: &[&'static Measure],
        value: fn(&Measure, Option<f64>) -> Value,
    ) -> Result<Value, QueryError> {
        let mut obj = Map::new();
        let mut by_channel: Map<String, Value> = Map::new();
        for measure in measures {
            let label = measure.label();
            let total = self.total(table, measure, &[]).await?;
            let v = value(measure, total.first().and_then(|p| p.value));
            f.row("", &label, &v);
            obj.insert(label.clone(), v);
            for p in self.total(table, measure, &["channel"]).await? {
                let v = value(measure, p.value);
                f.row(&p.dimensions[0], &label, &v);
                by_channel
                    .entry(p.dimensions[0].clone())
                    .or_insert_with(|| json!({}))[&label] = v;
            }
        }
        obj.insert("byChannel".into(), Value::Object(by_channel));
        Ok(Value::Object(obj))
    }

    async fn staff_performance(&self, f: &mut Figures) -> Result<Value, QueryError> {
        const MEASURES: [&Measure; 4] = [
            STAFF_PERFORMANCE_DAILY.measure("conversations_handled"),
            STAFF_PERFORMANCE_DAILY.measure("tasks_completed"),
            STAFF_PERFORMANCE_DAILY.measure("satisfaction_count"),
            STAFF_PERFORMANCE_DAILY.measure("satisfaction_avg"),
        ];
        let mut obj = Map::new();
        for measure in MEASURES {
            let label = measure.label();
            for p in self
                .total(&STAFF_PERFORMANCE_DAILY, measure, &["staff_id"])
                .await?
            {
                let v = number(measure, p.value);
                f.row(&p.dimensions[0], &label, &v);
                obj.entry(p.dimensions[0].clone())
                    .or_insert_with(|| json!({}))[&label] = v;
            }
        }
        Ok(Value::Object(obj))
    }

    async fn satisfaction(&self, f: &mut Figures) -> Result<Value, QueryError> {
        let window = self.window().await?;
        let mut all = Ratings::default();
        let mut surveys = 0;
        let mut obj = Map::new();
        let mut by_channel = Map::new();
        for (channel, c) in window.satisfaction_by_channel() {
            surveys += c.surveys_sent;
            all.merge(c.ratings);
            let figures = satisfaction_figures(c.surveys_sent, c.ratings);
            for (metric, v) in &figures {
                f.row(channel, metric, v);
            }
            by_channel.insert(
                channel.to_owned(),
                Value::Object(
                    figures
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect(),
                ),
            );
        }
        for (metric, v) in satisfaction_figures(surveys, all) {
            f.row("", metric, &v);
            obj.insert(metric.into(), v);
        }
        obj.insert("byChannel".into(), Value::Object(by_channel));
        Ok(Value::Object(obj))
    }

    async fn top_intents(&self, f: &mut Figures) -> Result<Value, QueryError> {
        const COUNT: &Measure = INTENT_DISTRIBUTION_DAILY.measure("count");
        let counts = self
            .total(&INTENT_DISTRIBUTION_DAILY, COUNT, &["intent"])
            .await?;
        let mut ranked: Vec<(String, i64)> = counts
            .into_iter()
            .map(|p| (p.dimensions[0].clone(), p.value.unwrap_or(0.0) as i64))
            .filter(|(_, n)| *n > 0)
            .collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked.truncate(5);
        let list = ranked
            .iter()
            .map(|(intent, n)| {
                f.row(intent, "count", &json!(n));
                json!({"intent": intent, "count": n})
            })
            .collect();
        Ok(Value::Array(list))
    }

    async fn channel_breakdown(&self, f: &mut Figures) -> Result<Value, QueryError> {
        const STARTED: &Measure = CONVERSATION_METRICS_DAILY.measure("conversations_started");
        let mut obj = Map::new();
        for p in self
            .total(&CONVERSATION_METRICS_DAILY, STARTED, &["channel"])
            .await?
        {
            let n = p.value.unwrap_or(0.0) as i64;
            if n > 0 {
                f.row(&p.dimensions[0], &STARTED.label(), &json!(n));
                obj.insert(p.dimensions[0].clone(), json!(n));
            }
        }
        Ok(Value::Object(obj))
    }
}

impl Range<'_> {
    /// §8's `operations`: each figure over the range as the sums of its rows — a count
    /// summed (0 over nothing), a rate recomputed from the summed counts, an average
    /// the mean of the rows' values weighted by their counts, rounded as its column —
    /// then the knowledge gaps and each staff member's online minutes.
    async fn operations(&self, f: &mut Figures) -> Result<Value, QueryError> {
        const FIGURES: [(&AggTable, &str); 18] = [
            (&CHANNEL_DELIVERY_DAILY, "sent"),
            (&CHANNEL_DELIVERY_DAILY, "delivered"),
            (&CHANNEL_DELIVERY_DAILY, "read"),
            (&CHANNEL_DELIVERY_DAILY, "failed"),
            (&CHANNEL_DELIVERY_DAILY, "delivery_rate"),
            (&CHANNEL_DELIVERY_DAILY, "read_rate"),
            (&CHANNEL_DELIVERY_DAILY, "failure_rate"),
            (&TASK_PERFORMANCE_DAILY, "tasks_created"),
            (&TASK_PERFORMANCE_DAILY, "tasks_completed"),
            (&TASK_PERFORMANCE_DAILY, "sla_breached"),
            (&TASK_PERFORMANCE_DAILY, "sla_breach_rate"),
            (&TASK_PERFORMANCE_DAILY, "avg_completion_minutes"),
            (&CONVERSATION_METRICS_DAILY, "conversations_active"),
            (&CONVERSATION_METRICS_DAILY, "ai_involvement_rate"),
            (&CONVERSATION_METRICS_DAILY, "automation_rate"),
            (&CONVERSATION_METRICS_DAILY, "first_response_sla_rate"),
            (
                &CONVERSATION_METRICS_DAILY,
                "avg_first_response_business_ms",
            ),
            (
                &CONVERSATION_METRICS_DAILY,
                "avg_resolution_business_minutes",
            ),
        ];
        let mut obj = Map::new();
        for (table, name) in FIGURES {
            let measure = table.find_metric(name).ok_or_else(|| {
                QueryError::Internal(format!("{name} is not a metric of {}", table.name))
            })?;
            let total = self.total(table, measure, &[]).await?;
            let v = operations_value(measure, total.first().and_then(|p| p.value));
            f.row("", &measure.label(), &v);
            obj.insert(measure.label(), v);
        }
        obj.insert("knowledgeGaps".into(), self.knowledge_gaps(f).await?);
        let mut online = Map::new();
        const ONLINE: &Measure = STAFF_PRESENCE_DAILY.measure("online_minutes");
        for p in self
            .total(&STAFF_PRESENCE_DAILY, ONLINE, &["staff_id"])
            .await?
        {
            let v = count(p.value);
            f.row(&p.dimensions[0], "onlineMinutes", &v);
            online.insert(p.dimensions[0].clone(), v);
        }
        obj.insert("staffOnlineMinutes".into(), Value::Object(online));
        Ok(Value::Object(obj))
    }

    /// At most five intents with low-confidence events in the range, the most first,
    /// then by intent: `{intent, lowConfidence, classified, lowConfidenceRate}`.
    async fn knowledge_gaps(&self, f: &mut Figures) -> Result<Value, QueryError> {
        const LOW: &Measure = INTENT_DISTRIBUTION_DAILY.measure("low_confidence_count");
        const CLASSIFIED: &Measure = INTENT_DISTRIBUTION_DAILY.measure("count");
        let by_intent = |points: Vec<SeriesPoint>| -> std::collections::BTreeMap<String, i64> {
            points
                .into_iter()
                .map(|p| (p.dimensions[0].clone(), p.value.unwrap_or(0.0) as i64))
                .collect()
        };
        let low = by_intent(
            self.total(&INTENT_DISTRIBUTION_DAILY, LOW, &["intent"])
                .await?,
        );
        let classified = by_intent(
            self.total(&INTENT_DISTRIBUTION_DAILY, CLASSIFIED, &["intent"])
                .await?,
        );
        let mut gaps: Vec<(String, i64)> = low.into_iter().filter(|(_, n)| *n > 0).collect();
        gaps.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        gaps.truncate(5);
        let list = gaps
            .into_iter()
            .map(|(intent, low)| {
                let classified = classified.get(&intent).copied().unwrap_or(0);
                let rate = (classified > 0).then(|| low as f64 / classified as f64);
                f.row(&intent, "lowConfidence", &json!(low));
                f.row(&intent, "classified", &json!(classified));
                f.row(&intent, "lowConfidenceRate", &json!(rate));
                json!({
                    "intent": intent,
                    "lowConfidence": low,
                    "classified": classified,
                    "lowConfidenceRate": rate,
                })
            })
            .collect();
        Ok(Value::Array(list))
    }
}

/// A figure of `operations`: a count 0 over nothing, a rate as computed (null over a
/// zero denominator), an average of an INTEGER column rounded as the column is.
fn operations_value(measure: &Measure, v: Option<f64>) -> Value {
    match measure.combine {
        Combine::Sum => count(v),
        Combine::WeightedBy(_) if measure.kind == Kind::Integer => {
            json!(v.map(|v| v.round() as i64))
        }
        _ => json!(v),
    }
}

/// A satisfaction section's figures, as the weekly table defines them, over any set
/// of surveys and ratings.
fn satisfaction_figures(surveys: i64, ratings: Ratings) -> Vec<(&'static str, Value)> {
    let [r1, r2, r3, r4, r5] = ratings.0;
    vec![
        ("surveysSent", json!(surveys)),
        ("responsesReceived", json!(ratings.responses())),
        ("rating1", json!(r1)),
        ("rating2", json!(r2)),
        ("rating3", json!(r3)),
        ("rating4", json!(r4)),
        ("rating5", json!(r5)),
        ("avgRating", json!(ratings.mean())),
        ("npsScore", json!(ratings.nps())),
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
    fn sections_round_trip_and_keep_the_seeds_order() {
        let names: Vec<&str> = Section::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            [
                "summary",
                "conversations",
                "response_times",
                "staff_performance",
                "satisfaction",
                "top_intents",
                "channel_breakdown",
                "operations"
            ]
        );
        for s in Section::ALL {
            assert_eq!(Section::parse(s.as_str()).unwrap(), s);
        }
        assert_eq!(Section::StaffPerformance.json_key(), "staffPerformance");
        assert!(Section::parse("nope").is_err());
    }
}
