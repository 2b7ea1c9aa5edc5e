//! The subcommands.

use std::io::Write;

use anyhow::{Context, bail};
use butler_config::{Config, Database};
use butler_consumer::replay::replay_dead_letters;
use butler_consumer::settings::validation_rules;
use butler_events::RejectReason;
use butler_events::calendar::parse_request_instant;
use butler_storage::{DeadLetter, DeadLetterFilter, Storage};

use crate::app;
use crate::cli::{
    Command, DeadLetterCommand, DeadLetterListArgs, DeadLetterSelection, MigrateDataArgs,
    QueryCommand,
};

/// Runs one subcommand to completion.
///
/// # Errors
/// Whatever stopped it, with context for the operator.
pub async fn dispatch(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Run => {
            let shutdown = app::shutdown_on_signals()?;
            app::run(config, shutdown).await
        }
        Command::Migrate { json } => {
            let storage = app::open_storage(&config).await?;
            storage.close().await;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"database": storage.describe(), "upToDate": true})
                );
            } else {
                println!("database {} is up to date", storage.describe());
            }
            Ok(())
        }
        Command::Aggregate(args) => {
            let jobs = crate::aggregation::jobs_named(&args.job)?;
            let storage = app::open_storage(&config).await?;
            let aggregator = crate::aggregation::aggregator(storage.clone(), &config)
                .with_progress(crate::progress::aggregation_hook());
            let wait = std::time::Duration::from_secs(args.wait);
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
            let reports = reports?;
            if args.json {
                let runs: Vec<serde_json::Value> = reports
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
                println!("{}", serde_json::json!({ "runs": runs }));
                return Ok(());
            }
            for r in reports {
                println!(
                    "{:<28} {:>6} periods recomputed {:>8} rows written {:>7} ms",
                    r.job.name(),
                    r.periods_recomputed,
                    r.rows_written,
                    r.ms
                );
            }
            Ok(())
        }
        Command::Backup { file, json } => {
            let storage = app::open_storage(&config).await?;
            let started = std::time::Instant::now();
            let result = storage.backup_to(&file).await;
            storage.close().await;
            result.with_context(|| format!("backup to {}", file.display()))?;
            let bytes = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "file": file.display().to_string(),
                        "bytes": bytes,
                        "ms": started.elapsed().as_millis() as u64,
                    })
                );
                return Ok(());
            }
            println!(
                "backup written to {} ({bytes} bytes, {} ms)",
                file.display(),
                started.elapsed().as_millis()
            );
            Ok(())
        }
        Command::Cleanup { json } => {
            let storage = app::open_storage(&config).await?;
            let deleted = butler_aggregator::retention::apply(
                &storage,
                crate::aggregation::retention_days(&config),
                chrono::Utc::now(),
            )
            .await;
            storage.close().await;
            let deleted = deleted?;
            if json {
                let by_table: serde_json::Map<String, serde_json::Value> = deleted
                    .iter()
                    .map(|(table, n)| (table.to_string(), serde_json::Value::from(*n)))
                    .collect();
                println!("{}", serde_json::json!({ "deleted": by_table }));
                return Ok(());
            }
            for (table, n) in deleted {
                println!("{table:<32} {n:>10} rows deleted");
            }
            Ok(())
        }
        Command::CheckConfig { json } => {
            // The cron expressions were checked with the rest of the config (`main`).
            if json {
                println!(
                    "{}",
                    serde_json::to_string(&config).context("rendering the config")?
                );
            } else {
                let yaml = serde_saphyr::to_string(&config).context("rendering the config")?;
                println!("{yaml}");
            }
            eprintln!("config ok");
            Ok(())
        }
        Command::Publish(args) => crate::publish::publish(&config, &args).await,
        Command::MigrateData(args) => migrate_data(config, &args).await,
        Command::Status { json } => crate::status::status(&config, json).await,
        Command::Completions { shell } => {
            let mut command = <crate::cli::Cli as clap::CommandFactory>::command();
            clap_complete::generate(
                shell,
                &mut command,
                "butler-analytics",
                &mut std::io::stdout(),
            );
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
            list_dead_letters(&config, &args).await
        }
        Command::DeadLetters(DeadLetterCommand::Replay(args)) => {
            let storage = app::open_storage(&config).await?;
            let filter = filter(&args.selection, false)?;
            let total = replay_total(&storage, &filter).await?;
            let mut progress =
                crate::progress::Progress::new("dead-letters replay", "messages", total);
            let outcome =
                replay_dead_letters(&storage, &validation_rules(&config), &filter, &mut |done| {
                    progress.set(done)
                })
                .await?;
            progress.finish();
            storage.close().await;
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "stored": outcome.stored,
                        "alreadyStored": outcome.already_stored,
                        "stillRejected": outcome.still_rejected,
                    })
                );
                return Ok(());
            }
            println!(
                "replayed: {} stored, {} already stored, {} still rejected",
                outcome.stored, outcome.already_stored, outcome.still_rejected
            );
            Ok(())
        }
    }
}

/// How many dead letters `filter` selects for a replay (those not replayed yet).
async fn replay_total(storage: &Storage, filter: &DeadLetterFilter) -> anyhow::Result<u64> {
    let selected = if filter.ids.is_empty() {
        storage
            .dead_letter_counts()
            .await?
            .into_iter()
            .filter(|(reason, _)| filter.reason.is_none_or(|r| r.as_str() == reason))
            .map(|(_, n)| n.max(0) as u64)
            .sum()
    } else {
        filter.ids.len() as u64
    };
    Ok(filter
        .limit
        .map_or(selected, |limit| selected.min(u64::from(limit))))
}

fn filter(
    selection: &DeadLetterSelection,
    include_replayed: bool,
) -> anyhow::Result<DeadLetterFilter> {
    let reason = match &selection.reason {
        None => None,
        Some(code) => match RejectReason::parse(code) {
            Some(reason) => Some(reason),
            None => {
                let codes: Vec<_> = RejectReason::ALL.iter().map(|r| r.as_str()).collect();
                bail!(
                    "--reason {code:?} is not a reason code; use one of {}",
                    codes.join(", ")
                )
            }
        },
    };
    Ok(DeadLetterFilter {
        reason,
        ids: selection.ids.clone(),
        include_replayed,
        after_id: None,
        limit: selection.limit,
    })
}

async fn list_dead_letters(config: &Config, args: &DeadLetterListArgs) -> anyhow::Result<()> {
    let storage = app::open_storage(config).await?;
    let letters = storage
        .list_dead_letters(&filter(&args.selection, args.all)?)
        .await?;
    storage.close().await;
    let mut out = std::io::stdout().lock();
    if args.json {
        for letter in &letters {
            writeln!(out, "{}", as_json(letter))?;
        }
    } else {
        writeln!(
            out,
            "{:>6}  {:<24}  {:<22}  {:>8}  {:<40}  detail",
            "id", "received_at", "reason", "seq", "subject"
        )?;
        for l in &letters {
            let state = if l.replayed_at.is_some() {
                " (replayed)"
            } else {
                ""
            };
            writeln!(
                out,
                "{:>6}  {:<24}  {:<22}  {:>8}  {:<40}  {}{state}",
                l.id, l.received_at, l.reason, l.stream_sequence, l.subject, l.detail
            )?;
        }
        writeln!(out, "{} dead letter(s)", letters.len())?;
    }
    Ok(())
}

fn as_json(l: &DeadLetter) -> serde_json::Value {
    let headers: serde_json::Value = serde_json::from_str(&l.headers_json).unwrap_or_default();
    let payload = match std::str::from_utf8(&l.payload) {
        Ok(text) => serde_json::json!({ "text": text }),
        Err(_) => {
            serde_json::json!({ "hex": l.payload.iter().map(|b| format!("{b:02x}")).collect::<String>() })
        }
    };
    serde_json::json!({
        "id": l.id,
        "subject": l.subject,
        "stream": l.stream,
        "streamSequence": l.stream_sequence,
        "publishedAt": l.published_at,
        "receivedAt": l.received_at,
        "reason": l.reason,
        "detail": l.detail,
        "headers": headers,
        "payload": payload,
        "replayedAt": l.replayed_at,
        "replayedEventId": l.replayed_event_id,
    })
}

/// Copies the SQLite database into PostgreSQL and checks every table's count.
async fn migrate_data(config: Config, args: &MigrateDataArgs) -> anyhow::Result<()> {
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
    let copied = copied.context("migrate-data")?;
    let mut out = std::io::stdout().lock();
    let differ: Vec<&str> = copied
        .iter()
        .filter(|t| t.source_rows != t.target_rows)
        .map(|t| t.table.as_str())
        .collect();
    if args.json {
        let tables: Vec<serde_json::Value> = copied
            .iter()
            .map(|t| serde_json::json!({"table": t.table, "sqlite": t.source_rows, "postgres": t.target_rows}))
            .collect();
        writeln!(out, "{}", serde_json::json!({ "tables": tables }))?;
    } else {
        writeln!(out, "{:<32} {:>12} {:>12}", "table", "sqlite", "postgres")?;
        for t in &copied {
            writeln!(
                out,
                "{:<32} {:>12} {:>12}",
                t.table, t.source_rows, t.target_rows
            )?;
        }
    }
    if !differ.is_empty() {
        bail!("the counts differ in {}", differ.join(", "));
    }
    if args.json {
        return Ok(());
    }
    writeln!(
        out,
        "every table copied; set storage.url to the PostgreSQL URL and start the pipeline"
    )?;
    Ok(())
}
