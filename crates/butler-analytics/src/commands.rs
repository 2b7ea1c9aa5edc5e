//! The subcommands: [`dispatch`] sends each to one function, which computes its result
//! and leaves the printing to [`crate::output::print`], so each result's text and
//! `--json` forms are written once, beside its type.
//!
//! Layout: the database and config commands here; `dead_letters` for `dead-letters
//! list|replay`; `status`, `publish`, `query` and `report` in modules of their own.

mod dead_letters;
pub mod validate;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use butler_aggregator::RunReport;
use butler_config::{Config, Database};
use butler_events::calendar::parse_request_instant;
use butler_storage::transfer::TableCopied;

use crate::app;
use crate::cli::{AggregateArgs, Command, DeadLetterCommand, MigrateDataArgs, QueryCommand};
use crate::output::{Output, json_line, print};

/// Runs one subcommand to completion.
///
/// # Errors
/// Whatever stopped it, with context for the operator.
pub async fn dispatch(
    command: Command,
    config: Config,
    config_path: Option<PathBuf>,
) -> anyhow::Result<()> {
    match command {
        Command::Run { watch_config } => {
            let reload = crate::reload::ReloadSource {
                path: config_path,
                watch: watch_config,
            };
            run(config, reload).await
        }
        Command::Migrate { json } => print(json, &migrate(&config).await?),
        Command::Aggregate(args) => print(args.json, &aggregate(&config, &args).await?),
        Command::Backup { file, json } => print(json, &backup(&config, file).await?),
        Command::Cleanup { json } => print(json, &cleanup(&config).await?),
        Command::CheckConfig { json } => check_config(&config, json),
        Command::Validate { json } => {
            let validation = validate::validate(&config).await;
            print(json, &validation)?;
            match validation.failures() {
                0 => Ok(()),
                n => Err(validate::ValidationFailed(n).into()),
            }
        }
        Command::Publish(args) => crate::publish::publish(&config, &args).await,
        Command::Tap(args) => crate::tap::tap(&config, &args).await,
        Command::MigrateData(args) => {
            let copied = migrate_data(config, &args).await?;
            print(args.json, &copied)?;
            copied.check_counts()
        }
        Command::Status { json } => crate::status::status(&config, json).await,
        Command::Completions { shell } => {
            completions(shell);
            Ok(())
        }
        Command::Query(QueryCommand::Dashboard(args)) => {
            crate::client::dashboard(&config, &args).await
        }
        Command::Query(QueryCommand::Timeseries(args)) => {
            crate::client::timeseries(&config, &args).await
        }
        Command::Query(QueryCommand::Metrics { json }) => {
            crate::client::metrics(&config, json).await
        }
        Command::Report(args) => crate::client::report(&config, &args).await,
        Command::DeadLetters(DeadLetterCommand::List(args)) => {
            print(args.json, &dead_letters::list(&config, &args).await?)
        }
        Command::DeadLetters(DeadLetterCommand::Replay(args)) => {
            print(args.json, &dead_letters::replay(&config, &args).await?)
        }
    }
}

/// `run`: the pipeline until SIGINT or SIGTERM.
async fn run(config: Config, reload: crate::reload::ReloadSource) -> anyhow::Result<()> {
    let shutdown = app::shutdown_on_signals()?;
    app::run(config, reload, shutdown).await
}

/// `migrate`: opening the storage applies the migrations.
async fn migrate(config: &Config) -> anyhow::Result<Migrated> {
    let storage = app::open_storage(config).await?;
    storage.close().await;
    Ok(Migrated {
        database: storage.describe(),
    })
}

/// The database `migrate` brought up to date.
struct Migrated {
    database: String,
}

impl Output for Migrated {
    fn json(&self, out: &mut dyn Write) -> anyhow::Result<()> {
        json_line(
            out,
            &serde_json::json!({"database": self.database, "upToDate": true}),
        )
    }

    fn text(&self, out: &mut dyn Write) -> anyhow::Result<()> {
        writeln!(out, "database {} is up to date", self.database)?;
        Ok(())
    }
}

/// `aggregate`: a backfill of `[--from, --to)` when both are given (and not `--due`),
/// else the runs the schedules would make now.
async fn aggregate(config: &Config, args: &AggregateArgs) -> anyhow::Result<Runs> {
    let jobs = crate::aggregation::jobs_named(&args.job)?;
    let storage = app::open_storage(config).await?;
    let aggregator = crate::aggregation::aggregator(storage.clone(), config)
        .with_progress(crate::progress::aggregation_hook());
    let wait = Duration::from_secs(args.wait);
    let reports = match (&args.from, &args.to) {
        (Some(from), Some(to)) if !args.due => {
            let tz = config.zones().default_zone();
            let from = parse_request_instant(from, tz, "--from")?;
            let to = parse_request_instant(to, tz, "--to")?;
            crate::aggregation::backfill(&aggregator, &jobs, from, to, wait).await
        }
        _ => crate::aggregation::run_due(&aggregator, &jobs, wait).await,
    };
    storage.close().await;
    Ok(Runs(reports?))
}

/// The runs `aggregate` made, one per job.
struct Runs(Vec<RunReport>);

impl Output for Runs {
    fn json(&self, out: &mut dyn Write) -> anyhow::Result<()> {
        let runs: Vec<serde_json::Value> = self
            .0
            .iter()
            .map(|r| {
                serde_json::json!({
                    "job": r.job.name(),
                    "periodsRecomputed": r.periods_recomputed,
                    "rowsWritten": r.rows_written,
                    "ms": r.ms,
                })
            })
            .collect();
        json_line(out, &serde_json::json!({ "runs": runs }))
    }

    fn text(&self, out: &mut dyn Write) -> anyhow::Result<()> {
        for r in &self.0 {
            writeln!(
                out,
                "{:<28} {:>6} periods recomputed {:>8} rows written {:>7} ms",
                r.job.name(),
                r.periods_recomputed,
                r.rows_written,
                r.ms
            )?;
        }
        Ok(())
    }
}

/// `backup`: a consistent copy of the database in `file`, timed.
async fn backup(config: &Config, file: PathBuf) -> anyhow::Result<BackupWritten> {
    let storage = app::open_storage(config).await?;
    let started = std::time::Instant::now();
    let result = storage.backup_to(&file).await;
    storage.close().await;
    result.with_context(|| format!("backup to {}", file.display()))?;
    let ms = started.elapsed().as_millis();
    Ok(BackupWritten {
        bytes: file_size(&file),
        file,
        ms,
    })
}

/// The size of the copy just written; 0 when it cannot be read back, since the copy
/// itself succeeded and the size is only for the operator's information.
fn file_size(file: &Path) -> u64 {
    std::fs::metadata(file).map(|m| m.len()).unwrap_or(0)
}

/// The copy `backup` wrote.
struct BackupWritten {
    file: PathBuf,
    bytes: u64,
    ms: u128,
}

impl Output for BackupWritten {
    fn json(&self, out: &mut dyn Write) -> anyhow::Result<()> {
        json_line(
            out,
            &serde_json::json!({
                "file": self.file.display().to_string(),
                "bytes": self.bytes,
                "ms": u64::try_from(self.ms).unwrap_or(u64::MAX),
            }),
        )
    }

    fn text(&self, out: &mut dyn Write) -> anyhow::Result<()> {
        writeln!(
            out,
            "backup written to {} ({} bytes, {} ms)",
            self.file.display(),
            self.bytes,
            self.ms
        )?;
        Ok(())
    }
}

/// `cleanup`: every table's retention applied now.
async fn cleanup(config: &Config) -> anyhow::Result<Deleted> {
    let storage = app::open_storage(config).await?;
    let deleted = butler_aggregator::retention::apply(
        &storage,
        crate::aggregation::retention_days(config),
        chrono::Utc::now(),
    )
    .await;
    storage.close().await;
    Ok(Deleted(deleted?))
}

/// The rows `cleanup` deleted, by table.
struct Deleted(Vec<(&'static str, u64)>);

impl Output for Deleted {
    fn json(&self, out: &mut dyn Write) -> anyhow::Result<()> {
        let by_table: serde_json::Map<String, serde_json::Value> = self
            .0
            .iter()
            .map(|(table, n)| ((*table).to_owned(), serde_json::Value::from(*n)))
            .collect();
        json_line(out, &serde_json::json!({ "deleted": by_table }))
    }

    fn text(&self, out: &mut dyn Write) -> anyhow::Result<()> {
        for (table, n) in &self.0 {
            writeln!(out, "{table:<32} {n:>10} rows deleted")?;
        }
        Ok(())
    }
}

/// `check-config`: the config as it will be used, on stdout, and a verdict on stderr
/// (the cron expressions were checked with the rest of the config, in `main`).
fn check_config(config: &Config, json: bool) -> anyhow::Result<()> {
    print(json, &ConfigShown(config))?;
    eprintln!("config ok");
    Ok(())
}

/// The config `check-config` shows: secrets are redacted by their own serialization.
struct ConfigShown<'a>(&'a Config);

impl Output for ConfigShown<'_> {
    fn json(&self, out: &mut dyn Write) -> anyhow::Result<()> {
        let json = serde_json::to_string(self.0).context("rendering the config")?;
        writeln!(out, "{json}")?;
        Ok(())
    }

    fn text(&self, out: &mut dyn Write) -> anyhow::Result<()> {
        let yaml = serde_saphyr::to_string(self.0).context("rendering the config")?;
        writeln!(out, "{yaml}")?;
        Ok(())
    }
}

/// `completions`: the shell completion script, generated from the same clap
/// definitions that parse the command line.
fn completions(shell: clap_complete::Shell) {
    let mut command = <crate::cli::Cli as clap::CommandFactory>::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "butler-analytics", &mut script);
    let mut script = String::from_utf8_lossy(&script).into_owned();
    if shell == clap_complete::Shell::Bash {
        // clap_complete's bash script spells the hyphenated program name two ways:
        // the words it reads set `butler__analytics…`, the options it offers are
        // under `butler__subcmd__analytics…`, so nothing past the first word
        // completes (clap-rs/clap#6421). One spelling makes them meet.
        script = script.replace("butler__subcmd__analytics", "butler__analytics");
    }
    print!("{script}");
}

/// `migrate-data`: copies the SQLite database into PostgreSQL, table by table, with a
/// progress bar per table, and counts both sides.
///
/// # Errors
/// `--from` or `--to` of the wrong backend, or a failed copy. Counts that differ are
/// not an error yet: [`Copied::check_counts`] says so after the table is printed.
async fn migrate_data(config: Config, args: &MigrateDataArgs) -> anyhow::Result<Copied> {
    let mut from = config.clone();
    if let Some(url) = &args.from {
        from.storage.url = Some(url.as_str().into());
    }
    if !matches!(from.storage.database(), Ok(Database::Sqlite { .. })) {
        bail!("--from must name a SQLite database (sqlite:<file>)");
    }
    let mut to = config;
    to.storage.url = Some(args.to.as_str().into());
    if !matches!(to.storage.database(), Ok(Database::Postgres { .. })) {
        bail!("--to must name a PostgreSQL database (postgres://…)");
    }
    let source = app::open_storage(&from).await?;
    let target = app::open_storage(&to).await?;
    eprintln!("copying {} into {}", source.describe(), target.describe());
    let mut current: Option<(String, crate::progress::Progress)> = None;
    let mut report_table = |table: &str, rows: u64, total: u64| {
        if current.as_ref().is_none_or(|(t, _)| t != table) {
            if let Some((_, mut previous)) = current.take() {
                previous.finish();
            }
            current = Some((
                table.to_owned(),
                crate::progress::Progress::new(table, "rows", total),
            ));
        }
        if let Some((_, progress)) = current.as_mut() {
            progress.set(rows);
        }
    };
    let copied = source.copy_into(&target, &mut report_table).await;
    if let Some((_, mut last)) = current.take() {
        last.finish();
    }
    source.close().await;
    target.close().await;
    Ok(Copied(copied.context("migrate-data")?))
}

/// The tables `migrate-data` copied, with their counts on both sides.
struct Copied(Vec<TableCopied>);

impl Copied {
    /// The tables whose counts differ.
    fn differ(&self) -> Vec<&str> {
        self.0
            .iter()
            .filter(|t| t.source_rows != t.target_rows)
            .map(|t| t.table.as_str())
            .collect()
    }

    /// Fails when a table's counts differ, after they have been printed for the
    /// operator to see.
    fn check_counts(&self) -> anyhow::Result<()> {
        let differ = self.differ();
        if !differ.is_empty() {
            bail!("the counts differ in {}", differ.join(", "));
        }
        Ok(())
    }
}

impl Output for Copied {
    fn json(&self, out: &mut dyn Write) -> anyhow::Result<()> {
        let tables: Vec<serde_json::Value> = self
            .0
            .iter()
            .map(|t| serde_json::json!({"table": t.table, "sqlite": t.source_rows, "postgres": t.target_rows}))
            .collect();
        json_line(out, &serde_json::json!({ "tables": tables }))
    }

    /// The counts, and the next step once every table matches.
    fn text(&self, out: &mut dyn Write) -> anyhow::Result<()> {
        writeln!(out, "{:<32} {:>12} {:>12}", "table", "sqlite", "postgres")?;
        for t in &self.0 {
            writeln!(
                out,
                "{:<32} {:>12} {:>12}",
                t.table, t.source_rows, t.target_rows
            )?;
        }
        if self.differ().is_empty() {
            writeln!(
                out,
                "every table copied; set storage.url to the PostgreSQL URL and start the pipeline"
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use butler_aggregator::Job;

    use super::*;
    use crate::output::render;

    #[test]
    fn migrate_prints_the_database_in_both_forms() {
        let migrated = Migrated {
            database: "sqlite:/var/lib/butler/analytics.db".to_owned(),
        };
        assert_eq!(
            render(false, &migrated),
            "database sqlite:/var/lib/butler/analytics.db is up to date\n"
        );
        assert_eq!(
            render(true, &migrated),
            "{\"database\":\"sqlite:/var/lib/butler/analytics.db\",\"upToDate\":true}\n"
        );
    }

    #[test]
    fn aggregate_prints_a_line_per_run_or_one_json_object() {
        let mut jobs = Job::all();
        let (first, second) = (jobs.next().expect("a job"), jobs.next().expect("two jobs"));
        let runs = Runs(vec![
            RunReport {
                job: first,
                periods_recomputed: 24,
                rows_written: 480,
                ms: 12,
            },
            RunReport {
                job: second,
                periods_recomputed: 1,
                rows_written: 3,
                ms: 5,
            },
        ]);
        assert_eq!(
            render(false, &runs),
            concat!(
                "hourly_message_counts            24 periods recomputed      480 rows written      12 ms\n",
                "hourly_response_times             1 periods recomputed        3 rows written       5 ms\n"
            )
        );
        assert_eq!(
            render(true, &runs),
            "{\"runs\":[{\"job\":\"hourly_message_counts\",\"ms\":12,\"periodsRecomputed\":24,\"rowsWritten\":480},\
             {\"job\":\"hourly_response_times\",\"ms\":5,\"periodsRecomputed\":1,\"rowsWritten\":3}]}\n"
        );
    }

    #[test]
    fn migrate_data_names_the_next_step_only_when_every_count_matches() {
        let table = |source_rows, target_rows| TableCopied {
            table: "analytics_events".to_owned(),
            source_rows,
            target_rows,
        };
        let matching = Copied(vec![table(3, 3)]);
        assert!(render(false, &matching).ends_with("start the pipeline\n"));
        assert!(matching.check_counts().is_ok());
        let short = Copied(vec![table(3, 2)]);
        assert_eq!(
            render(false, &short),
            concat!(
                "table                                  sqlite     postgres\n",
                "analytics_events                            3            2\n"
            )
        );
        assert_eq!(
            render(true, &short),
            "{\"tables\":[{\"postgres\":2,\"sqlite\":3,\"table\":\"analytics_events\"}]}\n"
        );
        let err = short.check_counts().map_err(|e| e.to_string());
        assert_eq!(err, Err("the counts differ in analytics_events".to_owned()));
    }
}
