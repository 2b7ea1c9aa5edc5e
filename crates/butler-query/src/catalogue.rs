//! The metric catalogue: every numeric measure column of the aggregate tables and
//! every rate derived from them, named `<table>.<column>` at its table's granularity,
//! with how it combines across the dimensions a request leaves out — all read from
//! the tables' declarations ([`butler_storage::tables`]).

use std::sync::LazyLock;

use butler_events::Granularity;
use butler_storage::tables::{AGG_TABLES, AggTable, Combine, Measure};

use crate::QueryError;

/// One metric of the catalogue.
#[derive(Debug, Clone)]
pub struct Metric {
    /// `<table>.<column>`, e.g. `response_times.p95_ms`.
    pub name: String,
    /// Its table.
    pub table: &'static AggTable,
    /// Its column.
    pub measure: &'static Measure,
}

impl Metric {
    /// Its table's granularity.
    pub fn granularity(&self) -> Granularity {
        self.table.granularity
    }

    /// Dimensions a request may group by.
    pub fn dimensions(&self) -> &'static [&'static str] {
        self.table.dimensions
    }

    /// Dimensions a request must group by: all of the table's for a value that cannot
    /// be combined (a percentile, an average whose weight is not stored).
    pub fn required_dimensions(&self) -> &'static [&'static str] {
        match self.measure.combine {
            Combine::NotCombinable => self.table.dimensions,
            _ => &[],
        }
    }
}

static CATALOGUE: LazyLock<Vec<Metric>> = LazyLock::new(|| {
    AGG_TABLES
        .iter()
        .flat_map(|table| {
            table.metrics().map(move |measure| Metric {
                name: format!("{}.{}", table.metric_prefix, measure.column),
                table,
                measure,
            })
        })
        .collect()
});

/// Every metric.
pub fn all() -> &'static [Metric] {
    &CATALOGUE
}

/// Parses a request's granularity.
///
/// # Errors
/// Every dimension some metric may be grouped by, once each, in the tables' order:
/// what a client can offer before it knows the metric.
pub fn all_dimensions() -> Vec<&'static str> {
    let mut all: Vec<&'static str> = Vec::new();
    for dimension in AGG_TABLES.iter().flat_map(|t| t.dimensions.iter().copied()) {
        if !all.contains(&dimension) {
            all.push(dimension);
        }
    }
    all
}

/// `bad_request` naming the accepted values.
pub fn parse_granularity(name: &str) -> Result<Granularity, QueryError> {
    Granularity::parse(name).ok_or_else(|| {
        let names: Vec<&str> = Granularity::ALL.iter().map(|g| g.as_str()).collect();
        QueryError::BadRequest(format!(
            "granularity {name:?} is not one of {}",
            names.join(", ")
        ))
    })
}

/// The metric `name` (full, or a bare column unique within the granularity).
///
/// # Errors
/// `bad_request` naming what exists.
pub fn resolve(name: &str, granularity: Granularity) -> Result<&'static Metric, QueryError> {
    let at = || all().iter().filter(move |m| m.granularity() == granularity);
    if let Some(m) = at().find(|m| m.name == name) {
        return Ok(m);
    }
    let bare: Vec<&Metric> = at().filter(|m| m.measure.column == name).collect();
    match bare.as_slice() {
        [one] => Ok(one),
        [] => {
            let elsewhere = all()
                .iter()
                .find(|m| m.name == name || m.measure.column == name);
            let hint = match elsewhere {
                Some(m) => format!("; {} is a {} metric", m.name, m.granularity().as_str()),
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
            .filter(|m| m.granularity() == g)
            .map(|m| {
                serde_json::json!({
                    "name": m.name,
                    "aggregation": m.measure.combine.name(),
                    "dimensions": m.dimensions(),
                    "requiredDimensions": m.required_dimensions(),
                })
            })
            .collect();
        let mut dims: Vec<&str> = all()
            .iter()
            .filter(|m| m.granularity() == g)
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

    /// The contract's examples, and the combinations it spells out, each looked up by
    /// name as a client would.
    #[test]
    fn the_contracts_metrics_resolve_with_their_combinations() {
        let combine = |name: &str, g| resolve(name, g).unwrap().measure.combine;
        for (name, g) in [
            ("message_counts.count", Granularity::Hour),
            ("response_times.p95_ms", Granularity::Hour),
            (
                "conversation_metrics.conversations_started",
                Granularity::Day,
            ),
            ("staff_performance.tasks_completed", Granularity::Day),
            ("intent_distribution.avg_confidence", Granularity::Day),
            ("satisfaction.nps_score", Granularity::Week),
            ("monthly_summary.total_messages", Granularity::Month),
        ] {
            assert_eq!(resolve(name, g).unwrap().name, name);
        }
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
            Combine::NotCombinable
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
            Combine::NotCombinable
        );
        assert_eq!(
            combine(
                "conversation_metrics.avg_resolution_minutes",
                Granularity::Day
            ),
            Combine::NotCombinable
        );
        assert_eq!(
            combine("staff_performance.satisfaction_avg", Granularity::Day),
            Combine::WeightedBy("satisfaction_count")
        );
        assert_eq!(
            combine("staff_performance.avg_response_time_ms", Granularity::Day),
            Combine::NotCombinable
        );
        assert_eq!(
            combine("satisfaction.avg_rating", Granularity::Week),
            Combine::MeanOfRatings
        );
        assert_eq!(
            combine("satisfaction.nps_score", Granularity::Week),
            Combine::NpsOfRatings
        );
        assert_eq!(
            combine("satisfaction.rating_3", Granularity::Week),
            Combine::Sum
        );
        // §8's derived rates: ratios of summed counts, at day granularity.
        for (rate, numerator, denominator) in [
            ("channel_delivery.delivery_rate", "delivered", "sent"),
            ("channel_delivery.read_rate", "read", "delivered"),
            ("channel_delivery.failure_rate", "failed", "sent"),
        ] {
            assert_eq!(
                combine(rate, Granularity::Day),
                Combine::RatioOfSums(numerator, denominator),
                "{rate}"
            );
        }
        assert_eq!(
            combine("channel_delivery.sent", Granularity::Day),
            Combine::Sum
        );
        assert_eq!(
            combine("task_performance.sla_breach_rate", Granularity::Day),
            Combine::RatioOfSums("sla_breached", "tasks_created")
        );
        assert_eq!(
            combine("intent_distribution.low_confidence_rate", Granularity::Day),
            Combine::RatioOfSums("low_confidence_count", "count")
        );
        // §8: the new averages are weighted by the counts they were taken over.
        for (average, weight) in [
            (
                "task_performance.avg_completion_minutes",
                "completions_timed",
            ),
            (
                "conversation_metrics.avg_first_response_business_ms",
                "first_responses",
            ),
            (
                "conversation_metrics.avg_resolution_business_minutes",
                "resolutions_timed",
            ),
        ] {
            assert_eq!(
                combine(average, Granularity::Day),
                Combine::WeightedBy(weight),
                "{average}"
            );
        }
        for (rate, numerator, denominator) in [
            (
                "conversation_metrics.ai_involvement_rate",
                "ai_handled_count",
                "conversations_active",
            ),
            (
                "conversation_metrics.automation_rate",
                "ai_resolved_count",
                "conversations_active",
            ),
            (
                "conversation_metrics.first_response_sla_rate",
                "first_response_sla_met",
                "first_responses",
            ),
        ] {
            assert_eq!(
                combine(rate, Granularity::Day),
                Combine::RatioOfSums(numerator, denominator),
                "{rate}"
            );
        }
    }

    /// Every percentile (`p50_…`) and every average whose weight its row does not
    /// carry is a value that cannot be combined; the JSON columns are not metrics.
    #[test]
    fn percentiles_and_unweighted_averages_are_not_combinable() {
        for m in all() {
            let column = m.measure.column;
            let percentile = column.starts_with('p') && column[1..].starts_with(char::is_numeric);
            if percentile
                || (column.starts_with("avg_")
                    && ![
                        "avg_ms",
                        "avg_rating",
                        "avg_completion_minutes",
                        "avg_first_response_business_ms",
                        "avg_resolution_business_minutes",
                    ]
                    .contains(&column))
            {
                assert_eq!(m.measure.combine, Combine::NotCombinable, "{}", m.name);
                assert_eq!(m.required_dimensions(), m.dimensions(), "{}", m.name);
            }
        }
        assert!(resolve("top_intents", Granularity::Month).is_err());
        assert!(resolve("monthly_summary.channel_breakdown", Granularity::Month).is_err());
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
