//! The command line.

use std::path::PathBuf;

use butler_aggregator::jobs::Job;
use butler_events::calendar::Granularity;
use butler_events::validate::RejectReason;
use butler_query::report::{ReportType, Section};
use clap::builder::PossibleValuesParser;
use clap::{Args, Parser, Subcommand};

/// The values a flag takes, listed in `--help` and by shell completions, and checked
/// before anything is sent.
fn one_of(values: impl IntoIterator<Item = &'static str>) -> PossibleValuesParser {
    PossibleValuesParser::new(values)
}

/// Butler Analytics: consumes Jack The Butler's analytics events from NATS JetStream
/// into SQLite or PostgreSQL, rolls them up, and answers dashboard queries over NATS.
#[derive(Debug, Parser)]
#[command(
    name = "butler-analytics",
    version = concat!(
        env!("CARGO_PKG_VERSION"),
        " (",
        env!("BUTLER_GIT_SHA"),
        ", built ",
        env!("BUTLER_BUILD_DATE"),
        ")"
    ),
    propagate_version = true
)]
#[command(
    after_help = "Every config key can also be set by an environment variable: \
BUTLER_ANALYTICS__ then the key path in upper case joined by __, e.g. \
BUTLER_ANALYTICS__NATS__URL=nats://10.0.0.5:4222."
)]
pub struct Cli {
    /// YAML config file (see config.example.yaml); without it the built-in defaults apply.
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the pipeline (consumer, metrics endpoint, and whatever else `service` enables)
    /// until SIGINT or SIGTERM. SIGHUP reloads the configuration: schedules, retention,
    /// the cache and the live dashboards' intervals take effect at once; other changed
    /// keys are named in a warning and wait for a restart; a bad file is refused.
    Run {
        /// Also reload whenever the config file changes.
        #[arg(long)]
        watch_config: bool,
    },
    /// Create or upgrade the database schema, then exit.
    Migrate {
        /// One JSON object (`{"database", "upToDate"}`) instead of a line.
        #[arg(long)]
        json: bool,
    },
    /// Check the configuration and print it as it will be used (secrets redacted).
    CheckConfig {
        /// The configuration as one JSON object instead of YAML.
        #[arg(long)]
        json: bool,
    },
    /// Check the deployment without changing it: the config, then NATS with the
    /// configured credentials, the stream and consumer, the subjects the pipeline
    /// subscribes to, the buckets, the database, the report folder and the metrics
    /// address; one line each, exit status 2 when any fails.
    Validate {
        /// One JSON object (`{"checks": [{check, outcome, detail}]}`) instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Recompute aggregate tables now (backfill): every bucket of the job that overlaps
    /// [--from, --to), for every property with events there.
    #[command(
        after_help = "Dates are YYYY-MM-DD (midnight in aggregation.timezone) or RFC 3339.\n\nExample: butler-analytics aggregate --job all --from 2026-11-01 --to 2026-12-01\n\n\
Buckets starting before the raw-event retention cutoff are left as they are."
    )]
    Aggregate(AggregateArgs),
    /// Delete what is past each table's retention now (the daily cleanup).
    Cleanup {
        /// One JSON object (`{"deleted": {table: rows}}`) instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// How the pipeline stands, from the database (works with the pipeline stopped):
    /// each job's last and next run, queue and lease; dead letters by reason.
    Status {
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write a consistent copy of the database to FILE while the pipeline runs.
    #[command(
        after_help = "Restore: stop the pipeline, replace storage.path with the copy \
(and remove any -wal and -shm files beside it), start the pipeline. Events acked after \
the backup began are not in the copy; they are still in the stream only while it \
retains them."
    )]
    Backup {
        /// The copy to write; it must not exist.
        file: PathBuf,
        /// One JSON object (`{"file", "bytes", "ms"}`) instead of a line.
        #[arg(long)]
        json: bool,
    },
    /// Copy a SQLite deployment's database into an empty PostgreSQL database, table by
    /// table, and compare the counts.
    #[command(
        after_help = "Stop the pipeline first, so nothing is written meanwhile; events it has \
not acked stay in the stream and are stored once it runs on PostgreSQL.\n\nExample: \
butler-analytics migrate-data --to postgres://butler:…@db:5432/analytics\n(then set \
storage.url to that URL and start the pipeline)"
    )]
    MigrateData(MigrateDataArgs),
    /// Inspect or replay rejected messages.
    #[command(subcommand)]
    DeadLetters(DeadLetterCommand),
    /// Ask the running query service (over NATS) for a dashboard or a time series.
    #[command(subcommand)]
    Query(QueryCommand),
    /// Ask the running query service for a report (also written under reports.storage).
    #[command(
        after_help = "Example: butler-analytics report --type daily --property prop_lisbon_01 \
--from 2026-11-24 --to 2026-11-25\nPrints a table by default, the JSON report with --json, \
the CSV with --format csv."
    )]
    Report(ReportArgs),
    /// Print a shell completion script: `source <(butler-analytics completions bash)`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Follow the events arriving on the stream, each judged by the pipeline's rules
    /// (a rejected one with its dead-letter reason), until --limit or Ctrl-C. Reads
    /// with an ordered consumer of its own: the pipeline's messages are not taken.
    #[command(
        after_help = "Examples:\n  butler-analytics tap\n  butler-analytics tap --property \
prop_lisbon_01 --type message.received --limit 20\n  butler-analytics tap --last 100 --json\n\n\
Under the shipped permissions, run it as the operator user \
(BUTLER_ANALYTICS__NATS__USER=operator BUTLER_ANALYTICS__NATS__PASSWORD=…)."
    )]
    Tap(TapArgs),
    /// Publish events to the stream by hand: one event, or a JSON-lines file.
    #[command(after_help = "Examples:\n  butler-analytics publish message.received \
'{\"propertyId\":\"prop_lisbon_01\",\"channel\":\"whatsapp\"}'\n  \
butler-analytics publish --file tests/fixtures/sample-events.jsonl")]
    Publish(PublishArgs),
}

/// `migrate-data` options.
#[derive(Debug, Clone, Args)]
pub struct MigrateDataArgs {
    /// The SQLite database to copy, as `sqlite:<file>`; the configured one when absent.
    #[arg(long, value_name = "URL")]
    pub from: Option<String>,
    /// The PostgreSQL database to copy into, `postgres://user:password@host:port/db`;
    /// it is migrated first and must hold no events.
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// Print each table's row counts as JSON: `{"tables":[{table, sqlite,
    /// postgres}]}`.
    #[arg(long)]
    pub json: bool,
}

/// `query` subcommands.
#[derive(Debug, Subcommand)]
pub enum QueryCommand {
    /// Today's figures, the comparison with yesterday, and live counts.
    Dashboard(DashboardArgs),
    /// One metric of the catalogue over a range (`analytics.query.metrics` lists them).
    #[command(
        after_help = "Example: butler-analytics query timeseries --metric message_counts.count \
--granularity hour --from 2026-11-24 --to 2026-11-25 --property prop_lisbon_01 --dimension channel"
    )]
    Timeseries(TimeseriesArgs),
    /// The catalogue the time series draws from: each granularity's metrics, how each
    /// combines across dimensions, and the dimensions it may be grouped by.
    Metrics {
        /// Print the JSON reply.
        #[arg(long)]
        json: bool,
    },
}

/// `query dashboard` options.
#[derive(Debug, Clone, Args)]
pub struct DashboardArgs {
    /// The property.
    #[arg(long)]
    pub property: String,
    /// Compute today and the comparison as of this RFC 3339 time instead of now.
    #[arg(long)]
    pub as_of: Option<String>,
    /// Print the JSON reply.
    #[arg(long)]
    pub json: bool,
}

/// `query timeseries` options.
#[derive(Debug, Clone, Args)]
pub struct TimeseriesArgs {
    /// `<table>.<column>`, e.g. response_times.p95_ms.
    #[arg(long)]
    pub metric: String,
    /// The metric's table's granularity.
    #[arg(long, value_parser = one_of(Granularity::ALL.map(Granularity::as_str)))]
    pub granularity: String,
    /// Start of the range (YYYY-MM-DD or RFC 3339).
    #[arg(long)]
    pub from: String,
    /// End of the range (exclusive).
    #[arg(long)]
    pub to: String,
    /// The property.
    #[arg(long)]
    pub property: String,
    /// Group by this dimension (repeatable); the metric's own are in `query metrics`.
    #[arg(long = "dimension", value_parser = one_of(butler_query::catalogue::all_dimensions()))]
    pub dimensions: Vec<String>,
    /// Print the JSON reply.
    #[arg(long)]
    pub json: bool,
}

/// `report` options.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// The report's period.
    #[arg(long = "type", default_value = "daily", value_parser = one_of(ReportType::ALL.map(ReportType::as_str)))]
    pub report_type: String,
    /// The property.
    #[arg(long, required_unless_present = "fetch")]
    pub property: Option<String>,
    /// First local day (YYYY-MM-DD).
    #[arg(long, required_unless_present = "fetch")]
    pub from: Option<String>,
    /// First local day not included.
    #[arg(long, required_unless_present = "fetch")]
    pub to: Option<String>,
    /// Instead of asking for a report: print the object of that name from
    /// `reports.object_store` as it is, e.g. one that `analytics.reports.generated`
    /// announced (`<propertyId>/<type>_<start>_<end>.<format>`).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["property", "from", "to", "sections", "json", "format"])]
    pub fetch: Option<String>,
    /// Only this section (repeatable); all seven by default.
    #[arg(long = "section", value_parser = one_of(Section::ALL.map(Section::as_str)))]
    pub sections: Vec<String>,
    /// Print the JSON report.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// Print the report in this format as the service writes it.
    #[arg(long, value_parser = one_of(["json", "csv"]))]
    pub format: Option<String>,
}

/// `aggregate` options.
#[derive(Debug, Clone, Args)]
pub struct AggregateArgs {
    /// A job, or `all`.
    #[arg(long, default_value = "all", value_parser = one_of(Job::all().map(Job::name).chain(["all"])))]
    pub job: String,
    /// First date of the range (inclusive).
    #[arg(long, required_unless_present = "due", conflicts_with = "due")]
    pub from: Option<String>,
    /// End of the range (exclusive).
    #[arg(long, required_unless_present = "due", conflicts_with = "due")]
    pub to: Option<String>,
    /// Instead of a range: run the job as its schedule would, recomputing the closed
    /// buckets that received events since its last run (for external schedulers).
    #[arg(long)]
    pub due: bool,
    /// How long to wait, in seconds, for a job another process is running; past it
    /// the command exits with code 3.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub wait: u64,
    /// One JSON object, as `analytics.admin.aggregate` answers, instead of lines.
    #[arg(long)]
    pub json: bool,
}

/// `tap` options.
#[derive(Debug, Clone, Args)]
pub struct TapArgs {
    /// Only this property's messages (a rejected message counts when its payload
    /// names the property).
    #[arg(long)]
    pub property: Option<String>,
    /// Only this event type's subject.
    #[arg(long = "type", value_name = "TYPE", value_parser = one_of(butler_events::EventType::ALL.map(butler_events::EventType::as_str)))]
    pub event_type: Option<String>,
    /// Stop after this many messages shown.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Start this many messages back in the stream instead of with the next one.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub last: Option<u64>,
    /// One JSON object per message (`outcome` valid or rejected, with the event's
    /// fields or the dead-letter reason).
    #[arg(long)]
    pub json: bool,
}

/// `publish` options.
#[derive(Debug, Clone, Args)]
pub struct PublishArgs {
    /// Event type, the subject suffix.
    #[arg(required_unless_present = "file", requires = "payload", value_parser = one_of(butler_events::EventType::ALL.map(butler_events::EventType::as_str)))]
    pub event_type: Option<String>,
    /// The JSON payload.
    pub payload: Option<String>,
    /// A file of JSON lines: either `{"subject": …, "payload": …}` (the samples'
    /// format; a string payload is sent as is) or a bare event with its `eventType`.
    #[arg(long, conflicts_with = "event_type")]
    pub file: Option<PathBuf>,
    /// Print what the stream stored as JSON: `{"published":[{subject, stream,
    /// sequence, duplicate}]}`.
    #[arg(long)]
    pub json: bool,
}

/// `dead-letters` subcommands.
#[derive(Debug, Subcommand)]
pub enum DeadLetterCommand {
    /// List rejected messages, oldest first.
    List(DeadLetterListArgs),
    /// Validate rejected messages again with the current config and store those that
    /// now pass (run it after fixing the cause, e.g. adding a channel).
    Replay(DeadLetterReplayArgs),
}

/// Which dead letters.
#[derive(Debug, Clone, Args)]
pub struct DeadLetterSelection {
    /// Only this reason.
    #[arg(long, value_parser = one_of(RejectReason::ALL.map(RejectReason::as_str)))]
    pub reason: Option<String>,
    /// Only these dead-letter ids (repeatable).
    #[arg(long = "id")]
    pub ids: Vec<i64>,
    /// At most this many.
    #[arg(long)]
    pub limit: Option<u32>,
}

/// `dead-letters replay` options.
#[derive(Debug, Clone, Args)]
pub struct DeadLetterReplayArgs {
    /// Which dead letters.
    #[command(flatten)]
    pub selection: DeadLetterSelection,
    /// One JSON object (`{"stored", "alreadyStored", "stillRejected"}`) instead of a line.
    #[arg(long)]
    pub json: bool,
}

/// `dead-letters list` options.
#[derive(Debug, Clone, Args)]
pub struct DeadLetterListArgs {
    /// Which dead letters.
    #[command(flatten)]
    pub selection: DeadLetterSelection,
    /// Include those already replayed.
    #[arg(long)]
    pub all: bool,
    /// One JSON object per line instead of a table (payload as text when it is UTF-8,
    /// else hex).
    #[arg(long)]
    pub json: bool,
}
