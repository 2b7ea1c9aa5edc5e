//! The configuration tree, with the defaults of CONTRACT §5.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{ConfigError, Database, Secret, SecretUrl};

/// The whole configuration. Every section and key is optional; unknown keys are
/// refused so that a typo does not silently fall back to a default.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the events come from.
    pub nats: NatsConfig,
    /// Where they go.
    pub storage: StorageConfig,
    /// How they are batched and judged (the seed's `collection`).
    pub ingest: IngestConfig,
    /// How they are rolled up.
    pub aggregation: AggregationConfig,
    /// How long each table keeps its rows, in days.
    pub retention: RetentionConfig,
    /// The dashboard reply cache.
    pub cache: CacheConfig,
    /// Generated reports.
    pub reports: ReportsConfig,
    /// Live dashboards in a key-value bucket (CONTRACT §7).
    pub dashboard: DashboardConfig,
    /// The operator's HTTP endpoint.
    pub metrics: MetricsConfig,
    /// Pages served beside the metrics.
    pub http: HttpConfig,
    /// Which parts this process runs.
    pub service: ServiceConfig,
    /// How the process stops.
    pub shutdown: ShutdownConfig,
    /// What the process logs.
    pub log: LogConfig,
    /// When each property is open, in its local time (CONTRACT §8).
    pub business_hours: BusinessHoursConfig,
    /// Service-level targets, in business time (CONTRACT §8).
    pub sla: SlaConfig,
}

/// NATS connection, stream and durable consumer.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// Server URL(s), comma-separated for a cluster; credentials in it never print.
    pub url: SecretUrl,
    /// Events are published on `<subject_prefix>.<eventType>`.
    pub subject_prefix: String,
    /// The JetStream stream holding the events.
    pub stream: String,
    /// The durable pull consumer; processes bound to the same name share the work.
    pub consumer: String,
    /// Create the stream (subjects `<prefix>.>`, file storage) when it does not exist.
    pub create_stream: bool,
    /// Replicas of a stream the pipeline creates (a NATS cluster keeps that many
    /// copies; 3 survives the loss of one server of three).
    pub stream_replicas: usize,
    /// How long the server waits for an ack before redelivering. Long enough to cover
    /// a commit that waits on a busy database; redeliveries are harmless (dedup by id)
    /// but cost work.
    pub ack_wait_ms: u64,
    /// Most unacknowledged messages the server hands out to all processes together.
    pub max_ack_pending: i64,
    /// Token authentication.
    pub token: Option<Secret>,
    /// User for user/password authentication.
    pub user: Option<String>,
    /// Password for user/password authentication.
    pub password: Option<Secret>,
    /// NKey seed (`SU…`) for NKey authentication.
    pub nkey_seed: Option<Secret>,
    /// A `.creds` file (JWT and NKey seed) for decentralized authentication.
    pub creds_file: Option<PathBuf>,
    /// TLS settings; absent means plain TCP unless the URL says `tls://`.
    pub tls: Option<TlsConfig>,
}

impl NatsConfig {
    /// The servers of `url`, one per comma-separated entry: a client of a cluster
    /// knows several, so that it reaches another when one is down.
    pub fn servers(&self) -> Vec<&str> {
        self.url
            .expose()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect()
    }
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: "nats://127.0.0.1:4222".into(),
            subject_prefix: "butler.events".into(),
            stream: "BUTLER_EVENTS".into(),
            consumer: "analytics-pipeline".into(),
            create_stream: true,
            stream_replicas: 1,
            ack_wait_ms: 60_000,
            max_ack_pending: 20_000,
            token: None,
            user: None,
            password: None,
            nkey_seed: None,
            creds_file: None,
            tls: None,
        }
    }
}

/// TLS to the NATS server.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Require TLS even when the URL says `nats://`.
    pub required: bool,
    /// PEM file of the CA that signed the server's certificate.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for servers that verify clients.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate.
    pub key_file: Option<PathBuf>,
}

/// The database.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Which database: absent or `sqlite:` for the SQLite file at `path`,
    /// `sqlite:<file>` for another file, `postgres://user:password@host:port/db` for
    /// PostgreSQL (CONTRACT §6).
    pub url: Option<SecretUrl>,
    /// The SQLite database file; its directory is created when missing.
    pub path: PathBuf,
    /// How long a write waits for another process's lock before retrying.
    pub busy_timeout_ms: u64,
    /// Largest the database may grow, in bytes (0: no limit). At the limit, commits fail
    /// as on a full disk: nothing is acked until space is freed.
    pub max_size_bytes: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            url: None,
            path: "./data/analytics.db".into(),
            busy_timeout_ms: 5_000,
            max_size_bytes: 0,
        }
    }
}

/// Batching and validation of incoming events.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Run the consumer at all (the seed's `collection.enabled`).
    pub enabled: bool,
    /// Events per commit while the writer keeps up: a batch this large is handed to
    /// the writer at once.
    pub batch_size: usize,
    /// Group commit: while the writer is busy, the next batch keeps growing up to
    /// this many events, so a backlog is written in fewer, larger commits. Equal to
    /// `batch_size`, a commit never holds more than `batch_size`.
    pub max_batch: usize,
    /// Longest an event waits before its batch is handed to the writer (under light
    /// traffic, for its commit).
    pub flush_interval_ms: u64,
    /// Accepted `channel` values.
    pub channels: Vec<String>,
    /// How far in the future an event's timestamp may be.
    pub max_future_skew_s: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            enabled: true,
            batch_size: 1000,
            max_batch: 10_000,
            flush_interval_ms: 1000,
            channels: ["whatsapp", "sms", "email", "webchat"]
                .map(String::from)
                .to_vec(),
            max_future_skew_s: 86_400,
        }
    }
}

/// Roll-up settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AggregationConfig {
    /// Run the aggregation jobs at all.
    pub enabled: bool,
    /// IANA zone of local days, weeks and months, and of the cron schedules.
    pub timezone: String,
    /// Per-property IANA zones, overriding `timezone`.
    pub property_timezones: BTreeMap<String, String>,
    /// Cron expressions overriding the seed's schedules, by job name (and
    /// `retention_cleanup`); 5 fields, or 6 with seconds first.
    pub schedules: BTreeMap<String, String>,
    /// How long a job's lease lasts unless its holder renews it (every third of this
    /// while it runs): a process that dies holds its jobs up this long at most.
    pub lease_ms: u64,
}

impl Default for AggregationConfig {
    fn default() -> Self {
        AggregationConfig {
            enabled: true,
            timezone: "UTC".into(),
            property_timezones: BTreeMap::new(),
            schedules: BTreeMap::new(),
            lease_ms: 30_000,
        }
    }
}

/// Days each table keeps, by its own period column.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Raw events; older events are refused as `expired`.
    pub raw_events: u32,
    /// Hourly aggregate tables.
    pub hourly_aggregations: u32,
    /// Daily aggregate tables.
    pub daily_aggregations: u32,
    /// Weekly aggregate tables.
    pub weekly_aggregations: u32,
    /// Monthly aggregate tables.
    pub monthly_aggregations: u32,
    /// The dashboard's live state: conversations resolved or closed, staff offline and
    /// tasks completed longer ago than this are pruned; what still counts never is.
    pub live_state: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            raw_events: 90,
            hourly_aggregations: 30,
            daily_aggregations: 365,
            weekly_aggregations: 730,
            monthly_aggregations: 1095,
            live_state: 7,
        }
    }
}

/// Dashboard reply cache.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Cache dashboard replies at all.
    pub enabled: bool,
    /// How long a cached reply is served.
    pub ttl_ms: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: true,
            ttl_ms: 60_000,
        }
    }
}

/// A report file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportFormat {
    /// The seed's `Report` object.
    Json,
    /// Long format, `section,item,metric,value`.
    Csv,
}

/// A report period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportType {
    /// One local day.
    Daily,
    /// One ISO week.
    Weekly,
    /// One calendar month.
    Monthly,
}

/// A report generated on a schedule.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSchedule {
    /// Which period the report covers (the one just closed).
    #[serde(rename = "type")]
    pub report_type: ReportType,
    /// When to generate it, in `aggregation.timezone`.
    pub cron: String,
}

/// Generated reports.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportsConfig {
    /// Serve and schedule reports at all.
    pub enabled: bool,
    /// Formats a report may be asked for.
    pub formats: Vec<ReportFormat>,
    /// Directory of report files, `<propertyId>/<type>_<start>_<end>.<format>`.
    pub storage: PathBuf,
    /// A JetStream object store bucket that also holds each report, under the same
    /// name, so a client on any host can fetch one larger than a message may be.
    pub object_store: Option<String>,
    /// Scheduled reports.
    pub schedule: Vec<ReportSchedule>,
}

impl Default for ReportsConfig {
    fn default() -> Self {
        ReportsConfig {
            enabled: true,
            formats: vec![ReportFormat::Json, ReportFormat::Csv],
            storage: "./data/reports".into(),
            object_store: None,
            schedule: Vec::new(),
        }
    }
}

/// Live dashboards: each active property's dashboard kept in a JetStream key-value
/// bucket, so a hotel's screen watches one key instead of polling.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardConfig {
    /// Keep live dashboards at all (where this process consumes events).
    pub live: bool,
    /// The bucket; key = propertyId.
    pub kv_bucket: String,
    /// Longest a commit waits before its properties' dashboards are rewritten; the
    /// commits of one interval make one write per property.
    pub push_interval_ms: u64,
    /// How often the dashboards of properties with events in the last two local
    /// days are rewritten, so the comparison and local midnight move on.
    pub refresh_s: u64,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            live: true,
            kv_bucket: "butler_dashboard".into(),
            push_interval_ms: 1000,
            refresh_s: 60,
        }
    }
}

/// Pages on the HTTP listener besides metrics and health.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Serve `GET /live/<propertyId>`, a page that follows the live dashboard. It has
    /// no authentication of its own: for trusted networks, or behind a proxy that has.
    pub live_pages: bool,
}

/// The HTTP endpoint with `/metrics`, `/healthz` and `/readyz`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address to listen on; port 0 picks a free one.
    #[serde(deserialize_with = "listen_address")]
    pub listen: SocketAddr,
}

/// An IP address and port, or `localhost:<port>`; anything else is refused with an
/// example of what is meant.
fn listen_address<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    if let Ok(address) = text.trim().parse() {
        return Ok(address);
    }
    if let Some(port) = text.trim().strip_prefix("localhost:")
        && let Ok(port) = port.parse::<u16>()
    {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    Err(serde::de::Error::custom(format!(
        "{text:?} is not an address to listen on: an IP address and a port, e.g. \
         127.0.0.1:9464, 0.0.0.0:9464 or [::]:9464 (or localhost:9464)"
    )))
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
        }
    }
}

/// What the process logs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// The level, or `RUST_LOG`-style directives (`info,butler_analytics=debug`); a
    /// reload applies it. Absent: `RUST_LOG`, else `info` for `run` and `warn` for
    /// the one-shot commands.
    pub level: Option<String>,
}

/// Opening hours: `default` for every property, or a property's own schedule, which
/// replaces it whole.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusinessHoursConfig {
    /// The schedule of every property without its own; `{}` is always open.
    pub default: WeekConfig,
    /// Schedules by property id.
    pub properties: BTreeMap<String, WeekConfig>,
}

/// One schedule as written: open intervals (`"08:00-12:00"`) per weekday, lower-case
/// keys `mon`…`sun`; once any weekday is named an unnamed one is closed, and with none
/// named it is open around the clock. Holidays (`YYYY-MM-DD`, local dates) are closed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
#[allow(missing_docs)]
pub struct WeekConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mon: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tue: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wed: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thu: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fri: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sat: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sun: Option<Vec<String>>,
    pub holidays: Vec<String>,
}

impl WeekConfig {
    /// The schedule it describes.
    ///
    /// # Errors
    /// What [`butler_events::business::Schedule::parse`] refuses.
    pub fn schedule(
        &self,
    ) -> Result<butler_events::business::Schedule, butler_events::business::ScheduleError> {
        let days = [
            ("mon", &self.mon),
            ("tue", &self.tue),
            ("wed", &self.wed),
            ("thu", &self.thu),
            ("fri", &self.fri),
            ("sat", &self.sat),
            ("sun", &self.sun),
        ];
        let named: Vec<(&str, &[String])> = days
            .iter()
            .filter_map(|(day, intervals)| intervals.as_deref().map(|i| (*day, i)))
            .collect();
        butler_events::business::Schedule::parse(&named, &self.holidays)
    }
}

/// Service-level targets.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlaConfig {
    /// The first-response target in business milliseconds.
    pub first_response_ms: u64,
    /// Targets by property id, replacing `first_response_ms`.
    pub properties: BTreeMap<String, u64>,
}

impl Default for SlaConfig {
    fn default() -> Self {
        SlaConfig {
            first_response_ms: 300_000,
            properties: BTreeMap::new(),
        }
    }
}

/// How the process stops.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// Seconds the batches in hand may still take to commit once SIGTERM or SIGINT
    /// came; past it a batch stays unacked and is redelivered to the next process.
    /// Keep it below the service manager's stop timeout (the shipped unit: 60 s).
    pub grace_s: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig { grace_s: 10 }
    }
}

/// Which parts this process runs, so they can be split over processes.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// The JetStream consumer (also needs `ingest.enabled`).
    pub consumer: bool,
    /// The scheduled aggregation jobs (also needs `aggregation.enabled`).
    pub aggregator: bool,
    /// The NATS query service.
    pub query: bool,
    /// This process's name among the instances sharing the consumer and the
    /// database: in its logs, as the `pipeline_instance` label of its metrics, and in
    /// status replies. Empty: the host name.
    pub instance: String,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            instance: String::new(),
            consumer: true,
            aggregator: true,
            query: true,
        }
    }
}

impl StorageConfig {
    /// The database to open, read from `url` and `path` by [`Database::of`].
    ///
    /// # Errors
    /// A `url` of another scheme, naming `storage.url` (refused at load time too).
    pub fn database(&self) -> Result<Database, ConfigError> {
        Database::of(self.url.as_ref(), &self.path)
    }
}

impl Config {
    /// The business hours and SLA targets of §8. Both were checked at load time; a
    /// schedule that does not parse (a config built in code and never checked)
    /// stands for always open.
    pub fn business_rules(&self) -> butler_events::business::BusinessRules {
        use butler_events::business::{BusinessHours, BusinessRules, SlaTargets};
        let schedule = |week: &WeekConfig| week.schedule().unwrap_or_default();
        let ms = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        BusinessRules {
            hours: BusinessHours::new(
                schedule(&self.business_hours.default),
                self.business_hours
                    .properties
                    .iter()
                    .map(|(property, week)| (property.clone(), schedule(week)))
                    .collect(),
            ),
            sla: SlaTargets::new(
                ms(self.sla.first_response_ms),
                self.sla
                    .properties
                    .iter()
                    .map(|(property, v)| (property.clone(), ms(*v)))
                    .collect(),
            ),
        }
    }

    /// The zone of each property's local days: its own, else `aggregation.timezone`.
    /// Both were checked at load time; a zone that does not parse (a config built in
    /// code and never checked) stands for UTC.
    pub fn zones(&self) -> butler_events::Zones {
        let parse = |name: &str| name.parse().unwrap_or(chrono_tz::UTC);
        butler_events::Zones::new(
            parse(&self.aggregation.timezone),
            self.aggregation
                .property_timezones
                .iter()
                .map(|(property, zone)| (property.clone(), parse(zone)))
                .collect(),
        )
    }
}
