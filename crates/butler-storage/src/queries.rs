//! What the query service reads: a window of raw events for the dashboard, live state,
//! and series from the aggregate tables.

use butler_events::EventTime;

use crate::{Storage, StorageError};

/// Counts and sums of one property's events in a time window, for the dashboard.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WindowCounts {
    /// `conversation.started`.
    pub started: i64,
    /// `conversation.resolved`.
    pub resolved: i64,
    /// `conversation.escalated`.
    pub escalated: i64,
    /// `message.received`.
    pub received: i64,
    /// `message.sent`.
    pub sent: i64,
    /// Sum of `durationMs` of `response.time_recorded`.
    pub response_ms_sum: f64,
    /// How many `response.time_recorded` carried a duration.
    pub response_count: i64,
    /// Sum of `satisfaction.rating_received` values.
    pub rating_sum: f64,
    /// How many ratings.
    pub rating_count: i64,
}

/// Live state of one property.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveCounts {
    /// Conversations whose latest lifecycle event is `started` or `escalated`.
    pub active_conversations: i64,
    /// Staff whose latest `staff.*` event left them online.
    pub staff_online: i64,
    /// Tasks created and not completed.
    pub pending_tasks: i64,
}

/// An aggregate table, with what a series may read of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum AggTable {
    MessageCountsHourly,
    ResponseTimesHourly,
    ConversationMetricsDaily,
    StaffPerformanceDaily,
    IntentDistributionDaily,
    SatisfactionWeekly,
    MonthlySummary,
}

impl AggTable {
    /// Every table.
    pub const ALL: [AggTable; 7] = [
        AggTable::MessageCountsHourly,
        AggTable::ResponseTimesHourly,
        AggTable::ConversationMetricsDaily,
        AggTable::StaffPerformanceDaily,
        AggTable::IntentDistributionDaily,
        AggTable::SatisfactionWeekly,
        AggTable::MonthlySummary,
    ];

    /// The SQL table name.
    pub fn name(self) -> &'static str {
        match self {
            AggTable::MessageCountsHourly => "agg_message_counts_hourly",
            AggTable::ResponseTimesHourly => "agg_response_times_hourly",
            AggTable::ConversationMetricsDaily => "agg_conversation_metrics_daily",
            AggTable::StaffPerformanceDaily => "agg_staff_performance_daily",
            AggTable::IntentDistributionDaily => "agg_intent_distribution_daily",
            AggTable::SatisfactionWeekly => "agg_satisfaction_weekly",
            AggTable::MonthlySummary => "agg_monthly_summary",
        }
    }

    /// The period column.
    pub fn period_column(self) -> &'static str {
        match self {
            AggTable::MessageCountsHourly
            | AggTable::ResponseTimesHourly
            | AggTable::SatisfactionWeekly => "period_start",
            AggTable::MonthlySummary => "period_month",
            _ => "period_date",
        }
    }

    /// Key columns other than period and property: the dimensions.
    pub fn dimensions(self) -> &'static [&'static str] {
        match self {
            AggTable::MessageCountsHourly => &["channel", "direction"],
            AggTable::ResponseTimesHourly
            | AggTable::ConversationMetricsDaily
            | AggTable::SatisfactionWeekly => &["channel"],
            AggTable::StaffPerformanceDaily => &["staff_id"],
            AggTable::IntentDistributionDaily => &["intent"],
            AggTable::MonthlySummary => &[],
        }
    }

    /// Numeric measure columns.
    pub fn measures(self) -> &'static [&'static str] {
        match self {
            AggTable::MessageCountsHourly => &["count"],
            AggTable::ResponseTimesHourly => {
                &["count", "avg_ms", "p50_ms", "p95_ms", "p99_ms", "max_ms"]
            }
            AggTable::ConversationMetricsDaily => &[
                "conversations_started",
                "conversations_resolved",
                "conversations_escalated",
                "avg_first_response_ms",
                "p50_first_response_ms",
                "p95_first_response_ms",
                "avg_resolution_minutes",
                "p50_resolution_minutes",
                "p95_resolution_minutes",
                "ai_handled_count",
                "ai_escalated_count",
            ],
            AggTable::StaffPerformanceDaily => &[
                "conversations_handled",
                "tasks_completed",
                "avg_response_time_ms",
                "satisfaction_avg",
                "satisfaction_count",
            ],
            AggTable::IntentDistributionDaily => &[
                "count",
                "avg_confidence",
                "action_taken_count",
                "escalated_count",
            ],
            AggTable::SatisfactionWeekly => &[
                "surveys_sent",
                "responses_received",
                "rating_1",
                "rating_2",
                "rating_3",
                "rating_4",
                "rating_5",
                "avg_rating",
                "nps_score",
            ],
            AggTable::MonthlySummary => &[
                "total_conversations",
                "total_messages",
                "total_tasks",
                "ai_resolution_rate",
                "avg_satisfaction",
                "avg_response_time_minutes",
            ],
        }
    }
}

/// How the rows of a bucket combine when fewer dimensions are asked for than the table
/// is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combine {
    /// Counts add up.
    Sum,
    /// An average, weighted by the named count column of the same row.
    WeightedBy(&'static str),
    /// The largest value.
    Max,
    /// The value as stored: only valid grouped by every dimension of the table.
    AsStored,
    /// The mean rating, recomputed from `rating_1..rating_5`.
    MeanRating,
    /// The NPS, recomputed from the rating counts.
    Nps,
}

/// One point of a series.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesPoint {
    /// The period key.
    pub period: String,
    /// The value; `None` where the measure is undefined (an average over nothing).
    pub value: Option<f64>,
    /// The dimension values, in the order asked.
    pub dimensions: Vec<String>,
}

/// A series to read: which measure, how combined, grouped how, over which periods.
#[derive(Debug, Clone, Copy)]
pub struct SeriesQuery<'a> {
    /// The table.
    pub table: AggTable,
    /// A measure column of it.
    pub column: &'a str,
    /// How rows combine.
    pub combine: Combine,
    /// Dimensions to group by (key columns of the table).
    pub dimensions: &'a [&'a str],
    /// The property.
    pub property_id: &'a str,
    /// First period key included (for months, `YYYY-MM-DD` of the 1st).
    pub from_key: &'a str,
    /// First period key excluded.
    pub to_key: &'a str,
    /// One point per period (a series), or one per dimension value over the whole
    /// range (a total, whose `period` is `from_key`).
    pub per_period: bool,
}

/// Why a series request was refused before reaching SQL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeriesError {
    /// The column is not a measure of the table.
    #[error("{column} is not a measure of {table}")]
    UnknownMeasure {
        /// Table name.
        table: &'static str,
        /// Asked column.
        column: String,
    },
    /// A dimension is not a key of the table.
    #[error("{dimension} is not a dimension of {table}")]
    UnknownDimension {
        /// Table name.
        table: &'static str,
        /// Asked dimension.
        dimension: String,
    },
}

impl Storage {
    /// Counts of one property's events in `[start, end)`.
    ///
    /// # Errors
    /// Any database error.
    pub async fn window_counts(
        &self,
        property_id: &str,
        start: EventTime,
        end: EventTime,
    ) -> Result<WindowCounts, StorageError> {
        let mut w = WindowCounts::default();
        for t in self.tallies(property_id, start, end).await? {
            match t.event_type.as_str() {
                "conversation.started" => w.started += t.events,
                "conversation.resolved" => w.resolved += t.events,
                "conversation.escalated" => w.escalated += t.events,
                "message.received" => w.received += t.events,
                "message.sent" => w.sent += t.events,
                "response.time_recorded" => {
                    w.response_ms_sum += t.duration_sum as f64;
                    w.response_count += t.duration_count;
                }
                "satisfaction.rating_received" => {
                    w.rating_sum += t.value_sum;
                    w.rating_count += t.value_count;
                }
                _ => {}
            }
        }
        Ok(w)
    }

    /// Live state of one property.
    ///
    /// # Errors
    /// Any database error.
    pub async fn live_counts(&self, property_id: &str) -> Result<LiveCounts, StorageError> {
        let property_id = property_id.to_owned();
        self.row_reader
            .run(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT (SELECT count(*) FROM live_conversations WHERE property_id = ?1 AND active = 1), \
                     (SELECT count(*) FROM live_staff WHERE property_id = ?1 AND online = 1), \
                     (SELECT count(*) FROM live_tasks WHERE property_id = ?1 AND created = 1 AND completed = 0)",
                )?;
                Ok(stmt.query_row([property_id], |r| {
                    Ok(LiveCounts {
                        active_conversations: r.get(0)?,
                        staff_online: r.get(1)?,
                        pending_tasks: r.get(2)?,
                    })
                })?)
            })
            .await
    }

    /// A series of one measure for one property, over periods whose key is in
    /// `[from_key, to_key)`, grouped by period and dimensions.
    /// Table, column and dimension names are checked against the schema first, so no
    /// caller-given text reaches SQL.
    ///
    /// # Errors
    /// [`SeriesError`] (wrapped) for a name that is not in the schema; a database error.
    pub async fn series(
        &self,
        q: &SeriesQuery<'_>,
    ) -> Result<Result<Vec<SeriesPoint>, SeriesError>, StorageError> {
        let SeriesQuery {
            table,
            column,
            combine,
            dimensions,
            property_id,
            from_key,
            to_key,
            per_period,
        } = *q;
        let Some(column) = table.measures().iter().find(|c| **c == column) else {
            return Ok(Err(SeriesError::UnknownMeasure {
                table: table.name(),
                column: column.to_owned(),
            }));
        };
        let mut dims: Vec<&'static str> = Vec::with_capacity(dimensions.len());
        for d in dimensions {
            match table.dimensions().iter().find(|c| *c == d) {
                Some(known) => dims.push(known),
                None => {
                    return Ok(Err(SeriesError::UnknownDimension {
                        table: table.name(),
                        dimension: (*d).to_owned(),
                    }));
                }
            }
        }
        let value = match combine {
            Combine::Sum => format!("sum({column})"),
            Combine::WeightedBy(weight) => {
                let weight = table.measures().iter().find(|c| **c == weight).copied().unwrap_or("1");
                format!(
                    "sum({column} * {weight}) * 1.0 / nullif(sum(CASE WHEN {column} IS NOT NULL THEN {weight} END), 0)"
                )
            }
            Combine::Max | Combine::AsStored => format!("max({column})"),
            Combine::MeanRating => "(sum(rating_1) + 2 * sum(rating_2) + 3 * sum(rating_3) + 4 * sum(rating_4) + 5 * sum(rating_5)) * 1.0 \
                 / nullif(sum(rating_1) + sum(rating_2) + sum(rating_3) + sum(rating_4) + sum(rating_5), 0)"
                .to_owned(),
            Combine::Nps => "100.0 * (sum(rating_5) - sum(rating_1) - sum(rating_2) - sum(rating_3)) \
                 / nullif(sum(rating_1) + sum(rating_2) + sum(rating_3) + sum(rating_4) + sum(rating_5), 0)"
                .to_owned(),
        };
        let period = table.period_column();
        let mut group = if per_period {
            period.to_owned()
        } else {
            "?4".to_owned()
        };
        for d in &dims {
            group.push_str(", ");
            group.push_str(d);
        }
        let group_by = if per_period || !dims.is_empty() {
            let keys: Vec<&str> = if per_period {
                std::iter::once(period)
                    .chain(dims.iter().copied())
                    .collect()
            } else {
                dims.clone()
            };
            format!("GROUP BY {} ORDER BY {}", keys.join(", "), keys.join(", "))
        } else {
            String::new()
        };
        let period_key = if table == AggTable::MonthlySummary {
            format!("{period} || '-01'")
        } else {
            period.to_owned()
        };
        let sql = format!(
            "SELECT {group}, CAST({value} AS REAL) AS value FROM {table} WHERE property_id = ?1 \
             AND {period_key} >= ?2 AND {period_key} < ?3 {group_by}",
            table = table.name(),
        );
        let params = [
            property_id.to_owned(),
            from_key.to_owned(),
            to_key.to_owned(),
            from_key.to_owned(),
        ];
        let dimension_count = dims.len();
        let points = self
            .row_reader
            .run(move |conn| {
                let mut stmt = conn.prepare_cached(&sql)?;
                // `?4` (the group key of a whole-range sum) appears only in some forms.
                let used = stmt.parameter_count().min(params.len());
                let mut rows = stmt.query(rusqlite::params_from_iter(&params[..used]))?;
                let mut points = Vec::new();
                while let Some(r) = rows.next()? {
                    let mut dimensions = Vec::with_capacity(dimension_count);
                    for i in 0..dimension_count {
                        dimensions.push(r.get::<_, String>(i + 1)?);
                    }
                    points.push(SeriesPoint {
                        period: r.get(0)?,
                        value: r.get(dimension_count + 1)?,
                        dimensions,
                    });
                }
                Ok(points)
            })
            .await?;
        Ok(Ok(points))
    }
}

/// The report summary's figures over a time window, from the raw events (the monthly
/// summary's definitions, over any range).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SummaryFigures {
    /// `conversation.started`.
    pub total_conversations: i64,
    /// `message.received` + `message.sent`.
    pub total_messages: i64,
    /// `task.created`.
    pub total_tasks: i64,
    /// Among distinct conversations resolved, the fraction never escalated (in range).
    pub ai_resolution_rate: Option<f64>,
    /// Mean rating.
    pub avg_satisfaction: Option<f64>,
    /// Mean `durationMs` of `response.time_recorded`, in minutes.
    pub avg_response_time_minutes: Option<f64>,
}

/// Satisfaction over a window, per channel, from the raw events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SatisfactionFigures {
    /// Channel (`unknown` for none).
    pub channel: String,
    /// `satisfaction.survey_sent`.
    pub surveys_sent: i64,
    /// Ratings 1 to 5.
    pub ratings: [i64; 5],
}

impl Storage {
    /// The summary figures of one property in `[start, end)`.
    ///
    /// # Errors
    /// Any database error.
    pub async fn summary_figures(
        &self,
        property_id: &str,
        start: EventTime,
        end: EventTime,
    ) -> Result<SummaryFigures, StorageError> {
        let (tallies, ai_resolution_rate) = tokio::try_join!(
            self.tallies(property_id, start, end),
            self.ai_resolution_rate(property_id, start, end),
        )?;
        let mut f = SummaryFigures {
            ai_resolution_rate,
            ..SummaryFigures::default()
        };
        let (mut rating, mut response) = ((0.0, 0), (0, 0));
        for t in tallies {
            match t.event_type.as_str() {
                "conversation.started" => f.total_conversations += t.events,
                "message.received" | "message.sent" => f.total_messages += t.events,
                "task.created" => f.total_tasks += t.events,
                "satisfaction.rating_received" => {
                    rating.0 += t.value_sum;
                    rating.1 += t.value_count;
                }
                "response.time_recorded" => {
                    response.0 += t.duration_sum;
                    response.1 += t.duration_count;
                }
                _ => {}
            }
        }
        f.avg_satisfaction = (rating.1 > 0).then(|| rating.0 / rating.1 as f64);
        f.avg_response_time_minutes =
            (response.1 > 0).then(|| response.0 as f64 / response.1 as f64 / 60000.0);
        Ok(f)
    }

    /// Among distinct conversations resolved in `[start, end)`, the fraction not
    /// escalated in it; `None` when none was resolved.
    async fn ai_resolution_rate(
        &self,
        property_id: &str,
        start: EventTime,
        end: EventTime,
    ) -> Result<Option<f64>, StorageError> {
        Ok(sqlx::query_scalar(
            "SELECT CAST(count(*) FILTER (WHERE escalated = 0) AS REAL) / nullif(count(*), 0) \
             FROM (SELECT max(event_type = 'conversation.resolved') AS resolved, \
                          max(event_type = 'conversation.escalated') AS escalated \
                   FROM analytics_events INDEXED BY idx_events_outcomes \
                   WHERE property_id = ?1 AND timestamp >= ?2 AND timestamp < ?3 \
                     AND event_type IN ('conversation.resolved', 'conversation.escalated') \
                     AND conversation_id IS NOT NULL \
                   GROUP BY conversation_id) \
             WHERE resolved = 1",
        )
        .bind(property_id)
        .bind(start.to_string())
        .bind(end.to_string())
        .fetch_one(&self.reader)
        .await?)
    }

    /// Surveys and rating counts per channel of one property in `[start, end)`.
    ///
    /// # Errors
    /// Any database error.
    pub async fn satisfaction_figures(
        &self,
        property_id: &str,
        start: EventTime,
        end: EventTime,
    ) -> Result<Vec<SatisfactionFigures>, StorageError> {
        let mut by_channel: std::collections::BTreeMap<String, SatisfactionFigures> =
            std::collections::BTreeMap::new();
        for t in self.tallies(property_id, start, end).await? {
            let surveys = t.event_type == "satisfaction.survey_sent";
            if !surveys && t.event_type != "satisfaction.rating_received" {
                continue;
            }
            let f = by_channel
                .entry(t.channel.clone())
                .or_insert_with(|| SatisfactionFigures {
                    channel: t.channel.clone(),
                    surveys_sent: 0,
                    ratings: [0; 5],
                });
            if surveys {
                f.surveys_sent += t.events;
            } else {
                for (sum, n) in f.ratings.iter_mut().zip(t.ratings) {
                    *sum += n;
                }
            }
        }
        Ok(by_channel.into_values().collect())
    }
}
