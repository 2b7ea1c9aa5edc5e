//! Reports on a schedule (`reports.schedule`): at each fire time, the report of the
//! period just closed for every property with events in it, in every configured format,
//! written under `reports.storage` (and `reports.object_store`) and announced on
//! `analytics.reports.generated`.
//!
//! Each fire time is claimed in the database before its reports are made, so of
//! several instances one makes them; and at start, the periods of the fire times
//! missed while no pipeline ran are made up, each once.

use std::str::FromStr;

use butler_events::calendar::start_of_local_date;
use butler_events::{EventTime, Zones};
use butler_storage::Storage;
use chrono::{DateTime, Days, NaiveDate, Timelike, Utc};
use croner::Cron;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::report::{ReportRequest, ReportSettings, ReportType, Section};

/// The subject generated reports are announced on.
pub const ANNOUNCE_SUBJECT: &str = "analytics.reports.generated";

/// How many days of missed fire times are made up at most (the oldest are left).
const MAKE_UP_DAYS: u64 = 1_100;

/// A fire time as the schedule names it: croner keeps the fraction of a second of the
/// time it searched from, which differs from one instance to the next.
fn whole_second(t: DateTime<Utc>) -> DateTime<Utc> {
    t.with_nanosecond(0).unwrap_or(t)
}

/// A report schedule: its type and cron expression.
#[derive(Debug, Clone)]
pub struct ReportSchedule {
    /// Which period it reports.
    pub report_type: ReportType,
    /// When, in the schedule zone.
    pub cron: Cron,
    /// The expression as configured.
    pub expression: String,
}

impl ReportSchedule {
    /// The name its fire times are claimed under, `<type> <cron>`.
    pub fn key(&self) -> String {
        format!("{} {}", self.report_type.as_str(), self.expression)
    }
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
                    expression: expr.clone(),
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
    /// The period a report of `report_type` fired at `fire` covers: the one closed
    /// before the fire time's date, in the schedules' zone.
    fn period_of(&self, report_type: ReportType, fire: DateTime<Utc>) -> (NaiveDate, NaiveDate) {
        let today = fire.with_timezone(&self.zones.default_zone()).date_naive();
        report_type.granularity().previous_period(today)
    }

    /// Generates the reports of `report_type` for the period closed before `fire`, for
    /// every property with events in it; returns how many files were written.
    pub async fn generate(&self, report_type: ReportType, fire: DateTime<Utc>) -> usize {
        self.generate_period(report_type, self.period_of(report_type, fire), false)
            .await
    }

    /// Generates the reports of `report_type` for `[start, end)`; `made_up` marks the
    /// announcements of a period whose fire time was missed.
    async fn generate_period(
        &self,
        report_type: ReportType,
        (start, end): (NaiveDate, NaiveDate),
        made_up: bool,
    ) -> usize {
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
            let mut objects = Vec::new();
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
                    Ok(report) => {
                        files.push(report.path.display().to_string());
                        objects.extend(report.object);
                    }
                    Err(err) => {
                        tracing::error!(error = %err, property, report_type = report_type.as_str(), "scheduled report failed")
                    }
                }
            }
            if files.is_empty() {
                continue;
            }
            written += files.len();
            let mut note = json!({
                "type": report_type.as_str(),
                "propertyId": property,
                "period": { "start": start.to_string(), "end": end.to_string() },
                "files": files,
                "generatedAt": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            });
            if self.settings.objects.is_some() {
                note["objects"] = json!(objects);
            }
            if made_up {
                note["madeUp"] = json!(true);
            }
            if let Err(err) = self
                .client
                .publish(ANNOUNCE_SUBJECT, note.to_string().into())
                .await
            {
                tracing::warn!(error = %err, "report announcement not sent");
            }
        }
        tracing::info!(report_type = report_type.as_str(), %start, %end, files = written, made_up, "scheduled reports written");
        written
    }

    /// Claims `fire` of `schedule`: whether this instance makes its reports.
    async fn claim(&self, schedule: &ReportSchedule, fire: DateTime<Utc>) -> bool {
        let at = EventTime::from_datetime(&fire);
        match self.storage.claim_report_fire(&schedule.key(), at).await {
            Ok(claimed) => claimed,
            Err(err) => {
                tracing::error!(error = %err, schedule = %schedule.key(), "scheduled reports: cannot claim a fire time");
                false
            }
        }
    }

    /// Makes up the periods of the fire times of `schedule` missed between the last
    /// one claimed and `now`, each period once; returns how many files were written.
    /// A schedule that never ran has missed nothing: it starts counting at `now`.
    pub async fn make_up(&self, schedule: &ReportSchedule, now: DateTime<Utc>) -> usize {
        let last = match self.storage.last_report_fire(&schedule.key()).await {
            Ok(last) => last.and_then(|t| DateTime::parse_from_rfc3339(&t).ok()),
            Err(err) => {
                tracing::error!(error = %err, schedule = %schedule.key(), "scheduled reports: cannot read the last fire time");
                return 0;
            }
        };
        let Some(last) = last.map(|t| t.with_timezone(&Utc)) else {
            self.claim(schedule, now).await;
            return 0;
        };
        let tz = self.zones.default_zone();
        let Ok(latest) = schedule
            .cron
            .find_previous_occurrence(&now.with_timezone(&tz), true)
        else {
            return 0;
        };
        let latest = whole_second(latest.with_timezone(&Utc));
        if latest <= last {
            tracing::info!(schedule = %schedule.key(), "no scheduled report missed");
            return 0;
        }
        if !self.claim(schedule, latest).await {
            return 0;
        }
        // The first fire time of each local day after `last`, up to `latest`: a
        // report's period depends on its fire time's date only.
        let last_day = latest.with_timezone(&tz).date_naive();
        let mut day = last
            .with_timezone(&tz)
            .date_naive()
            .max(last_day - Days::new(MAKE_UP_DAYS));
        let mut periods = Vec::new();
        while day <= last_day {
            let day_start = start_of_local_date(tz, day);
            let (from, inclusive) = if last >= day_start {
                (last, false)
            } else {
                (day_start, true)
            };
            if let Ok(fire) = schedule
                .cron
                .find_next_occurrence(&from.with_timezone(&tz), inclusive)
            {
                let fire = whole_second(fire.with_timezone(&Utc));
                if fire <= latest && fire < start_of_local_date(tz, day + Days::new(1)) {
                    let period = self.period_of(schedule.report_type, fire);
                    if periods.last() != Some(&period) {
                        periods.push(period);
                    }
                }
            }
            day = day + Days::new(1);
        }
        tracing::info!(schedule = %schedule.key(), missed_since = %last, periods = periods.len(), "making up the reports of missed fire times");
        let mut written = 0;
        for period in periods {
            written += self
                .generate_period(schedule.report_type, period, true)
                .await;
        }
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
                this.make_up(&schedule, Utc::now()).await;
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
                    let fire = whole_second(next.with_timezone(&Utc));
                    if this.claim(&schedule, fire).await {
                        this.generate(schedule.report_type, fire).await;
                    }
                }
            });
        }
        while loops.join_next().await.is_some() {}
    }
}
