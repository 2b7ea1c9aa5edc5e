//! Reports on a schedule (`reports.schedule`): at each fire time, the report of the
//! period just closed for every property with events in it, in every configured format,
//! written under `reports.storage` and announced on `analytics.reports.generated`.

use std::str::FromStr;

use butler_events::Zones;
use butler_events::calendar::start_of_local_date;
use butler_storage::Storage;
use chrono::{Days, Utc};
use croner::Cron;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::report::{ReportRequest, ReportSettings, ReportType, Section};

/// The subject generated reports are announced on.
pub const ANNOUNCE_SUBJECT: &str = "analytics.reports.generated";

/// A report schedule: its type and cron expression.
#[derive(Debug, Clone)]
pub struct ReportSchedule {
    /// Which period it reports.
    pub report_type: ReportType,
    /// When, in the schedule zone.
    pub cron: Cron,
}

/// Parses the schedules of `reports.schedule`.
///
/// # Errors
/// `(key, message)` naming the entry at fault.
pub fn plan(entries: &[(ReportType, String)]) -> Result<Vec<ReportSchedule>, (String, String)> {
    entries
        .iter()
        .enumerate()
        .map(|(i, (report_type, expr))| {
            Cron::from_str(expr)
                .map(|cron| ReportSchedule {
                    report_type: *report_type,
                    cron,
                })
                .map_err(|e| {
                    (
                        format!("reports.schedule[{i}].cron"),
                        format!("{expr:?} is not a cron expression: {e}"),
                    )
                })
        })
        .collect()
}

/// What the scheduled reports need.
pub struct ScheduledReports {
    /// The database.
    pub storage: Storage,
    /// Formats and folder.
    pub settings: ReportSettings,
    /// Zone of each property's days; the default zone is the schedules'.
    pub zones: Zones,
    /// For the announcements.
    pub client: async_nats::Client,
}

impl ScheduledReports {
    /// Generates the reports of `report_type` for the period closed before `now`, for
    /// every property with events in it; returns how many files were written.
    pub async fn generate(&self, report_type: ReportType, now: chrono::DateTime<Utc>) -> usize {
        let today = now.with_timezone(&self.zones.default_zone()).date_naive();
        let (start, end) = report_type.granularity().previous_period(today);
        // A day either side covers every zone's local days of the period.
        let wide_from = start_of_local_date(chrono_tz::UTC, start - Days::new(1));
        let wide_to = start_of_local_date(chrono_tz::UTC, end + Days::new(1));
        let properties = match self
            .storage
            .properties_with_events(wide_from, wide_to)
            .await
        {
            Ok(p) => p,
            Err(err) => {
                tracing::error!(error = %err, report_type = report_type.as_str(), "scheduled reports: cannot list properties");
                return 0;
            }
        };
        let mut written = 0;
        for property in properties {
            let mut files = Vec::new();
            for format in &self.settings.formats {
                let request = ReportRequest {
                    report_type: report_type.as_str().to_owned(),
                    property_id: property.clone(),
                    date_range: crate::report::DateRange {
                        start: start.to_string(),
                        end: end.to_string(),
                    },
                    sections: Section::ALL.iter().map(|s| s.as_str().to_owned()).collect(),
                    format: Some((*format).to_owned()),
                };
                match crate::report::report(&self.storage, &self.settings, &self.zones, request)
                    .await
                {
                    Ok(report) => files.push(report.path.display().to_string()),
                    Err(err) => {
                        tracing::error!(error = %err, property, report_type = report_type.as_str(), "scheduled report failed")
                    }
                }
            }
            if files.is_empty() {
                continue;
            }
            written += files.len();
            let note = json!({
                "type": report_type.as_str(),
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
        tracing::info!(report_type = report_type.as_str(), %start, %end, files = written, "scheduled reports written");
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
                    let now = Utc::now().with_timezone(&this.zones.default_zone());
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
