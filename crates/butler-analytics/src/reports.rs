//! The reports as the binary wires them from config: the query service's report
//! settings, the `reports.object_store` bucket and the `reports.schedule` entries.
//!
//! A module of its own, apart from [`crate::aggregation`], because the reports are
//! not the aggregator's: they are made by the query service (`butler_query::report`,
//! `butler_query::scheduled`) from their own config section (`reports.*`), so a
//! change to one never has to read past the other. The config's report types
//! (`butler_config::ReportFormat`, `butler_config::ReportType`) become the query
//! crate's here, once, so neither of those crates depends on the other.

use butler_config::Config;
use butler_query::report::ReportType;

/// Report settings from config, with `reports.object_store` opened.
pub fn report_settings(
    config: &Config,
    objects: Option<butler_query::objects::ReportObjects>,
) -> butler_query::report::ReportSettings {
    butler_query::report::ReportSettings {
        enabled: config.reports.enabled,
        formats: config
            .reports
            .formats
            .iter()
            .map(|f| match f {
                butler_config::ReportFormat::Json => "json",
                butler_config::ReportFormat::Csv => "csv",
            })
            .collect(),
        storage: config.reports.storage.clone(),
        objects,
    }
}

/// The bucket of `reports.object_store` (opened on the first report), or `None` when
/// unset.
pub fn report_objects(
    config: &Config,
    nats: &async_nats::Client,
) -> Option<butler_query::objects::ReportObjects> {
    config.reports.object_store.as_ref().map(|bucket| {
        butler_query::objects::ReportObjects::new(nats.clone(), bucket, config.nats.stream_replicas)
    })
}

/// The report schedules of `reports.schedule`, checked.
///
/// # Errors
/// The key and what is wrong.
pub fn report_schedules(
    config: &Config,
) -> anyhow::Result<Vec<butler_query::scheduled::ReportSchedule>> {
    let entries: Vec<(ReportType, String)> = config
        .reports
        .schedule
        .iter()
        .map(|s| {
            let t = match s.report_type {
                butler_config::ReportType::Daily => ReportType::Daily,
                butler_config::ReportType::Weekly => ReportType::Weekly,
                butler_config::ReportType::Monthly => ReportType::Monthly,
            };
            (t, s.cron.clone())
        })
        .collect();
    butler_query::scheduled::plan(&entries)
        .map_err(|(key, message)| anyhow::anyhow!("config key `{key}`: {message}"))
}
