//! Reports on a schedule (`reports.schedule`): at each fire time, the report of the
//! period just closed for every property with events in it, in every configured format,
//! written under `reports.storage` and announced on `analytics.reports.generated`.

use std::str::FromStr;

use butler_storage::Storage;
use chrono::{Datelike, Days, Months, NaiveDate, Utc};
use chrono_tz::Tz;
use croner::Cron;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::report::{ReportRequest, ReportSettings, SECTIONS};

/// The subject generated reports are announced on.
pub const ANNOUNCE_SUBJECT: &str = "analytics.reports.generated";

/// A report schedule: its type and cron expression.
#[derive(Debug, Clone)]
pub struct ReportSchedule {
    /// `daily`, `weekly` or `monthly`.
    pub report_type: &'static str,
    /// When, in the schedule zone.
    pub cron: Cron,
}

/// Parses the schedules of `reports.schedule`.
///
/// # Errors
/// `(key, message)` naming the entry at fault.
pub fn plan(entries: &[(&'static str, String)]) -> Result<Vec<ReportSchedule>, (String, String)> {
    entries
        .iter()
        .enumerate()
        .map(|(i, (report_type, expr))| {
            Cron::from_str(expr)
                .map(|cron| ReportSchedule { report_type, cron })
                .map_err(|e| {
                    (
                        format!("reports.schedule[{i}].cron"),
                        format!("{expr:?} is not a cron expression: {e}"),
                    )
                })
        })
        .collect()
}

/// The local days `[start, end)` of the period of `report_type` that closed last
/// before `today`.
pub fn closed_period(report_type: &str, today: NaiveDate) -> (NaiveDate, NaiveDate) {
    match report_type {
        "weekly" => {
            let monday = today - Days::new(u64::from(today.weekday().num_days_from_monday()));
            (monday - Days::new(7), monday)
        }
        "monthly" => {
            let first = today.with_day(1).unwrap_or(today);
            (first - Months::new(1), first)
        }
        _ => (today - Days::new(1), today),
    }
}

/// What the scheduled reports need.
pub struct ScheduledReports {
    /// The database.
    pub storage: Storage,
    /// Formats and folder.
    pub settings: ReportSettings,
    /// Zone of the schedules.
    pub timezone: Tz,
    /// Zone of each property's days.
    pub timezone_of: Box<dyn Fn(&str) -> Tz + Send + Sync>,
    /// For the announcements.
    pub client: async_nats::Client,
}

impl ScheduledReports {
    /// Generates the reports of `report_type` for the period closed before `now`, for
    /// every property with events in it; returns how many files were written.
    pub async fn generate(&self, report_type: &'static str, now: chrono::DateTime<Utc>) -> usize {
        let today = now.with_timezone(&self.timezone).date_naive();
        let (start, end) = closed_period(report_type, today);
        let wide_from = (start - Days::new(1))
            .format("%Y-%m-%dT00:00:00.000Z")
            .to_string();
        let wide_to = (end + Days::new(1))
            .format("%Y-%m-%dT00:00:00.000Z")
            .to_string();
        let properties = match self
            .storage
            .properties_with_events(&wide_from, &wide_to)
            .await
        {
            Ok(p) => p,
            Err(err) => {
                tracing::error!(error = %err, report_type, "scheduled reports: cannot list properties");
                return 0;
            }
        };
        let mut written = 0;
        for property in properties {
            let mut files = Vec::new();
            for format in &self.settings.formats {
                let request = ReportRequest {
                    report_type: report_type.to_owned(),
                    property_id: property.clone(),
                    date_range: crate::report::DateRange {
                        start: start.to_string(),
                        end: end.to_string(),
                    },
                    sections: SECTIONS.iter().map(|s| (*s).to_owned()).collect(),
                    format: Some((*format).to_owned()),
                };
                match crate::report::report(
                    &self.storage,
                    &self.settings,
                    &*self.timezone_of,
                    request,
                )
                .await
                {
                    Ok(report) => files.push(report.path.display().to_string()),
                    Err(err) => {
                        tracing::error!(error = %err, property, report_type, "scheduled report failed")
                    }
                }
            }
            if files.is_empty() {
                continue;
            }
            written += files.len();
            let note = json!({
                "type": report_type,
                "propertyId": property,
                "period": { "start": start.to_string(), "end": end.to_string() },
                "files": files,
                "generatedAt": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            });
            if let Err(err) = self
                .client
                .publish(ANNOUNCE_SUBJECT, note.to_string().into())
                .await
            {
                tracing::warn!(error = %err, "report announcement not sent");
            }
        }
        tracing::info!(report_type, %start, %end, files = written, "scheduled reports written");
        written
    }

    /// Runs every schedule until `shutdown`.
    pub async fn run(self, schedules: Vec<ReportSchedule>, shutdown: CancellationToken) {
        let this = std::sync::Arc::new(self);
        let mut loops = tokio::task::JoinSet::new();
        for schedule in schedules {
            let this = this.clone();
            let shutdown = shutdown.clone();
            loops.spawn(async move {
                loop {
                    let now = Utc::now().with_timezone(&this.timezone);
                    let Ok(next) = schedule.cron.find_next_occurrence(&now, false) else {
                        return;
                    };
                    let wait = (next.with_timezone(&Utc) - Utc::now())
                        .to_std()
                        .unwrap_or_default();
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(wait) => {}
                    }
                    this.generate(schedule.report_type, Utc::now()).await;
                }
            });
        }
        while loops.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn the_period_just_closed() {
        assert_eq!(
            closed_period("daily", d("2026-11-25")),
            (d("2026-11-24"), d("2026-11-25"))
        );
        assert_eq!(
            closed_period("weekly", d("2026-11-25")),
            (d("2026-11-16"), d("2026-11-23"))
        );
        assert_eq!(
            closed_period("weekly", d("2026-11-23")),
            (d("2026-11-16"), d("2026-11-23"))
        );
        assert_eq!(
            closed_period("monthly", d("2026-11-25")),
            (d("2026-10-01"), d("2026-11-01"))
        );
        assert_eq!(
            closed_period("monthly", d("2026-01-01")),
            (d("2025-12-01"), d("2026-01-01"))
        );
    }
}
