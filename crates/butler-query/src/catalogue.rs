//! The metric catalogue: every measure column of the aggregate tables, named
//! `<table>.<column>` at its table's granularity, with how it combines across the
//! dimensions a request leaves out.

use std::sync::LazyLock;

use butler_storage::queries::{AggTable, Combine};
use serde::Serialize;

use crate::QueryError;

/// A time-series granularity, the one of the table a metric comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    /// UTC hours.
    Hour,
    /// Local days.
    Day,
    /// Local ISO weeks.
    Week,
    /// Local months.
    Month,
}

impl Granularity {
    /// Every granularity.
    pub const ALL: [Granularity; 4] = [
        Granularity::Hour,
        Granularity::Day,
        Granularity::Week,
        Granularity::Month,
    ];

    /// Parses `hour|day|week|month`.
    ///
    /// # Errors
    /// `bad_request` naming the accepted values.
    pub fn parse(s: &str) -> Result<Granularity, QueryError> {
        match s {
            "hour" => Ok(Granularity::Hour),
            "day" => Ok(Granularity::Day),
            "week" => Ok(Granularity::Week),
            "month" => Ok(Granularity::Month),
            other => Err(QueryError::BadRequest(format!(
                "granularity {other:?} is not one of hour, day, week, month"
            ))),
        }
    }

    /// The name.
    pub fn as_str(self) -> &'static str {
        match self {
            Granularity::Hour => "hour",
            Granularity::Day => "day",
            Granularity::Week => "week",
            Granularity::Month => "month",
        }
    }

    fn of(table: AggTable) -> Granularity {
        match table {
            AggTable::MessageCountsHourly | AggTable::ResponseTimesHourly => Granularity::Hour,
            AggTable::SatisfactionWeekly => Granularity::Week,
            AggTable::MonthlySummary => Granularity::Month,
            _ => Granularity::Day,
        }
    }
}

/// One metric of the catalogue.
#[derive(Debug, Clone)]
pub struct Metric {
    /// `<table>.<column>`, e.g. `response_times.p95_ms`.
    pub name: String,
    /// Its table.
    pub table: AggTable,
    /// Its column.
    pub column: &'static str,
    /// How rows combine over dimensions left out.
    pub combine: Combine,
    /// Its table's granularity.
    pub granularity: Granularity,
}

impl Metric {
    /// Dimensions a request may group by.
    pub fn dimensions(&self) -> &'static [&'static str] {
        self.table.dimensions()
    }

    /// Dimensions a request must group by: all of the table's for a value that cannot
    /// be combined (a percentile, an average whose weight is not stored).
    pub fn required_dimensions(&self) -> &'static [&'static str] {
        match self.combine {
            Combine::AsStored => self.table.dimensions(),
            _ => &[],
        }
    }

    /// The combination's name in the catalogue reply.
    pub fn aggregation(&self) -> &'static str {
        match self.combine {
            Combine::Sum => "sum",
            Combine::WeightedBy(_) => "weighted_average",
            Combine::Max => "max",
            Combine::AsStored => "as_stored",
            Combine::MeanRating => "mean_of_rating_counts",
            Combine::Nps => "nps_of_rating_counts",
        }
    }
}

/// The table part of a metric name: without `agg_` and without the granularity.
fn short_name(table: AggTable) -> &'static str {
    match table {
        AggTable::MessageCountsHourly => "message_counts",
        AggTable::ResponseTimesHourly => "response_times",
        AggTable::ConversationMetricsDaily => "conversation_metrics",
        AggTable::StaffPerformanceDaily => "staff_performance",
        AggTable::IntentDistributionDaily => "intent_distribution",
        AggTable::SatisfactionWeekly => "satisfaction",
        AggTable::MonthlySummary => "monthly_summary",
    }
}

/// A percentile column: `p50_…`, `p95_…`, `p99_…`.
fn is_percentile(column: &str) -> bool {
    let b = column.as_bytes();
    b.len() > 3 && b[0] == b'p' && b[1].is_ascii_digit() && b[2].is_ascii_digit() && b[3] == b'_'
}

fn combine_of(table: AggTable, column: &str) -> Combine {
    use AggTable as A;
    match (table, column) {
        (A::ResponseTimesHourly, "avg_ms") => Combine::WeightedBy("count"),
        (A::ResponseTimesHourly, "max_ms") => Combine::Max,
        (A::StaffPerformanceDaily, "satisfaction_avg") => Combine::WeightedBy("satisfaction_count"),
        (A::SatisfactionWeekly, "avg_rating") => Combine::MeanRating,
        (A::SatisfactionWeekly, "nps_score") => Combine::Nps,
        (A::MonthlySummary, "ai_resolution_rate") => Combine::AsStored,
        // Averages whose weight the table does not store, and percentiles.
        (_, c) if c.starts_with("avg_") || is_percentile(c) => Combine::AsStored,
        _ => Combine::Sum,
    }
}

static CATALOGUE: LazyLock<Vec<Metric>> = LazyLock::new(|| {
    AggTable::ALL
        .iter()
        .flat_map(|table| {
            table.measures().iter().map(move |column| Metric {
                name: format!("{}.{column}", short_name(*table)),
                table: *table,
                column,
                combine: combine_of(*table, column),
                granularity: Granularity::of(*table),
            })
        })
        .collect()
});

/// Every metric.
pub fn all() -> &'static [Metric] {
    &CATALOGUE
}

/// The metric `name` (full, or a bare column unique within the granularity).
///
/// # Errors
/// `bad_request` naming what exists.
pub fn resolve(name: &str, granularity: Granularity) -> Result<&'static Metric, QueryError> {
    let at = || all().iter().filter(move |m| m.granularity == granularity);
    if let Some(m) = at().find(|m| m.name == name) {
        return Ok(m);
    }
    let bare: Vec<&Metric> = at().filter(|m| m.column == name).collect();
    match bare.as_slice() {
        [one] => Ok(one),
        [] => {
            let elsewhere = all().iter().find(|m| m.name == name || m.column == name);
            let hint = match elsewhere {
                Some(m) => format!("; {} is a {} metric", m.name, m.granularity.as_str()),
                None => String::new(),
            };
            let names: Vec<&str> = at().map(|m| m.name.as_str()).collect();
            Err(QueryError::BadRequest(format!(
                "unknown metric {name:?} at granularity {}{hint}; metrics: {}",
                granularity.as_str(),
                names.join(", ")
            )))
        }
        many => {
            let names: Vec<&str> = many.iter().map(|m| m.name.as_str()).collect();
            Err(QueryError::BadRequest(format!(
                "metric {name:?} is ambiguous at granularity {}: use one of {}",
                granularity.as_str(),
                names.join(", ")
            )))
        }
    }
}

/// Checks the dimensions asked for `metric`.
///
/// # Errors
/// `bad_request` for an unknown or repeated dimension, or for a value that cannot be
/// combined without the dimensions it is stored by (named in the message).
pub fn check_dimensions(metric: &Metric, dimensions: &[String]) -> Result<(), QueryError> {
    for (i, d) in dimensions.iter().enumerate() {
        if !metric.dimensions().contains(&d.as_str()) {
            return Err(QueryError::BadRequest(format!(
                "dimension {d:?} is not available for {}; allowed: [{}]",
                metric.name,
                metric.dimensions().join(", ")
            )));
        }
        if dimensions[..i].contains(d) {
            return Err(QueryError::BadRequest(format!(
                "dimension {d:?} is given twice"
            )));
        }
    }
    let missing: Vec<&str> = metric
        .required_dimensions()
        .iter()
        .filter(|d| !dimensions.iter().any(|x| x == *d))
        .copied()
        .collect();
    if !missing.is_empty() {
        return Err(QueryError::BadRequest(format!(
            "{} is stored per {} and cannot be combined across them; ask with \"dimensions\": [{}]",
            metric.name,
            metric.required_dimensions().join(" and "),
            metric
                .required_dimensions()
                .iter()
                .map(|d| format!("\"{d}\""))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(())
}

/// The `analytics.query.metrics` reply.
pub fn describe() -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for g in Granularity::ALL {
        let metrics: Vec<serde_json::Value> = all()
            .iter()
            .filter(|m| m.granularity == g)
            .map(|m| {
                serde_json::json!({
                    "name": m.name,
                    "aggregation": m.aggregation(),
                    "dimensions": m.dimensions(),
                    "requiredDimensions": m.required_dimensions(),
                })
            })
            .collect();
        let mut dims: Vec<&str> = all()
            .iter()
            .filter(|m| m.granularity == g)
            .flat_map(|m| m.dimensions().iter().copied())
            .collect();
        dims.sort_unstable();
        dims.dedup();
        out.insert(
            g.as_str().to_owned(),
            serde_json::json!({ "metrics": metrics, "dimensions": dims }),
        );
    }
    serde_json::Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_measure_column_is_a_metric_at_its_granularity() {
        assert_eq!(
            all().len(),
            AggTable::ALL
                .iter()
                .map(|t| t.measures().len())
                .sum::<usize>()
        );
        assert_eq!(
            resolve("response_times.p95_ms", Granularity::Hour)
                .unwrap()
                .column,
            "p95_ms"
        );
        assert_eq!(
            resolve("satisfaction.nps_score", Granularity::Week)
                .unwrap()
                .combine,
            Combine::Nps
        );
        assert_eq!(
            resolve("monthly_summary.total_messages", Granularity::Month)
                .unwrap()
                .combine,
            Combine::Sum
        );
    }

    #[test]
    fn bare_names_resolve_only_when_unique() {
        assert_eq!(
            resolve("p95_ms", Granularity::Hour).unwrap().name,
            "response_times.p95_ms"
        );
        let err = resolve("count", Granularity::Hour).unwrap_err().to_string();
        assert!(
            err.contains("message_counts.count") && err.contains("response_times.count"),
            "{err}"
        );
        let err = resolve("nps_score", Granularity::Day)
            .unwrap_err()
            .to_string();
        assert!(err.contains("week metric"), "{err}");
    }

    #[test]
    fn combinations_follow_the_contract() {
        let combine = |name: &str, g| resolve(name, g).unwrap().combine;
        assert_eq!(
            combine("message_counts.count", Granularity::Hour),
            Combine::Sum
        );
        assert_eq!(
            combine("response_times.avg_ms", Granularity::Hour),
            Combine::WeightedBy("count")
        );
        assert_eq!(
            combine("response_times.p99_ms", Granularity::Hour),
            Combine::AsStored
        );
        assert_eq!(
            combine("response_times.max_ms", Granularity::Hour),
            Combine::Max
        );
        assert_eq!(
            combine(
                "conversation_metrics.p50_first_response_ms",
                Granularity::Day
            ),
            Combine::AsStored
        );
        assert_eq!(
            combine(
                "conversation_metrics.avg_resolution_minutes",
                Granularity::Day
            ),
            Combine::AsStored
        );
        assert_eq!(
            combine("conversation_metrics.ai_handled_count", Granularity::Day),
            Combine::Sum
        );
        assert_eq!(
            combine("staff_performance.satisfaction_avg", Granularity::Day),
            Combine::WeightedBy("satisfaction_count")
        );
        assert_eq!(
            combine("staff_performance.avg_response_time_ms", Granularity::Day),
            Combine::AsStored
        );
        assert_eq!(
            combine("intent_distribution.avg_confidence", Granularity::Day),
            Combine::AsStored
        );
        assert_eq!(
            combine("satisfaction.avg_rating", Granularity::Week),
            Combine::MeanRating
        );
        assert_eq!(
            combine("satisfaction.rating_3", Granularity::Week),
            Combine::Sum
        );
    }

    #[test]
    fn a_percentile_without_its_dimensions_names_them() {
        let m = resolve("response_times.p95_ms", Granularity::Hour).unwrap();
        let err = check_dimensions(m, &[]).unwrap_err().to_string();
        assert!(err.contains("\"channel\""), "{err}");
        assert!(check_dimensions(m, &["channel".into()]).is_ok());
        let err = check_dimensions(m, &["direction".into()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("direction") && err.contains("allowed"),
            "{err}"
        );
        let err = check_dimensions(m, &["channel; DROP TABLE x".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("not available"), "{err}");
    }
}
