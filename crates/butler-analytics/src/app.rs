//! The pipeline in one runtime: storage, NATS, the parts that `service` enables, and
//! the metrics endpoint, stopped together by one cancellation token.
//!
//! [`run`] opens what every part shares, then starts each part with a builder of its
//! own ([`Parts`]), in an order that matters only for the metrics each registers.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use butler_aggregator::{Aggregator, AggregatorMetrics};
use butler_config::Config;
use butler_consumer::{ConsumerError, ConsumerSettings, IngestMetrics};
use butler_query::admin::AggregationControl;
use butler_query::objects::ReportObjects;
use butler_query::scheduled::ReportSchedule;
use butler_storage::{Storage, StorageOptions};
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::http::{self, HttpState};

/// The storage options of the `storage` section.
///
/// # Errors
/// A `storage.url` of no known scheme, naming the key (a config that did not come
/// through `load`, such as one a command pointed elsewhere).
pub fn storage_options(config: &Config) -> anyhow::Result<StorageOptions> {
    let mut options = StorageOptions::for_database(config.storage.database()?);
    options.busy_timeout = Duration::from_millis(config.storage.busy_timeout_ms);
    options.max_size_bytes =
        (config.storage.max_size_bytes > 0).then_some(config.storage.max_size_bytes);
    Ok(options)
}

/// The context of an error opening the database: the config key that chose it, and
/// the database as it may be shown.
fn database_context(options: &StorageOptions) -> String {
    let database = &options.database;
    format!("config key `{}` ({database})", database.key())
}

/// Opens the database with the `storage` settings, applying migrations.
///
/// # Errors
/// When the database cannot be opened or migrated.
pub async fn open_storage(config: &Config) -> anyhow::Result<Storage> {
    let options = storage_options(config)?;
    Storage::open(&options)
        .await
        .with_context(|| database_context(&options))
}

/// [`open_storage`], waiting (and saying so) while the database server cannot be
/// reached yet, until it can or `shutdown` is cancelled.
///
/// # Errors
/// Anything but an unreachable server, and a shutdown while waiting.
async fn open_storage_waiting(
    config: &Config,
    shutdown: &CancellationToken,
) -> anyhow::Result<Storage> {
    let options = storage_options(config)?;
    let mut delay = Duration::from_millis(250);
    loop {
        match Storage::open(&options).await {
            Ok(storage) => return Ok(storage),
            Err(err) if err.is_unreachable() => {
                tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64,
                    "database unreachable; waiting for it");
                tokio::select! {
                    () = shutdown.cancelled() => {
                        return Err(err).with_context(|| database_context(&options));
                    }
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(err) => return Err(err).with_context(|| database_context(&options)),
        }
    }
}

/// Runs until `shutdown` is cancelled, then stops fetching, commits and acks what is
/// in hand, and returns.
///
/// # Errors
/// Start-up failures (database, metrics address); a part that fails while running
/// is reported after the others have stopped.
pub async fn run(
    config: Config,
    reload: crate::reload::ReloadSource,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (plans, plan_updates) =
        tokio::sync::watch::channel(crate::aggregation::schedule_plan(&config)?);
    let report_schedules = crate::reports::report_schedules(&config)?;
    let storage = open_storage_waiting(&config, &shutdown).await?;
    let instance = instance_name(&config);
    let registry = metrics_registry(&instance)?;
    let nats = crate::nats::connect(&config.nats, &format!("butler-analytics/{instance}")).await?;
    let listener = bind_metrics(&config).await?;
    let metrics_addr = listener.local_addr()?;

    let tasks = TaskTracker::new();
    let dashboard_cache =
        butler_query::dashboard::DashboardCache::new(crate::reload::cache_ttl(&config));
    let (live_intervals, live_interval_updates) =
        tokio::sync::watch::channel(crate::reload::live_intervals(&config));
    let parts = Parts {
        config: &config,
        storage: &storage,
        nats: &nats,
        registry: &registry,
        tasks: &tasks,
        shutdown: &shutdown,
        dashboard_cache: &dashboard_cache,
        live_intervals: &live_interval_updates,
    };
    let (consumer, ingest_metrics) = parts.consumer()?.unzip();
    let (aggregator, aggregator_metrics) = parts.aggregator()?;
    let rules = aggregator.settings().rules.clone();
    let report_objects = parts.report_objects();
    let control: Arc<dyn AggregationControl> = Arc::new(crate::aggregation::AdminControl {
        aggregator: aggregator.clone(),
        plans: plan_updates.clone(),
    });
    let query = parts.query_service(&instance, &control, report_objects.as_ref())?;
    parts.scheduled_reports(report_schedules, report_objects.as_ref());
    let aggregator = parts.aggregation_schedule(aggregator, aggregator_metrics, plan_updates);
    let (server, http_shutdown) = parts.http(listener, ingest_metrics, control)?;
    let reloads = crate::reload::Reloader {
        running: config.clone(),
        source: reload,
        plans,
        dashboard_cache: dashboard_cache.clone(),
        live_intervals,
        rules,
        metrics: crate::reload::ReloadMetrics::register(&registry)?,
    };
    tasks.spawn(reloads.run(shutdown.clone()));
    tasks.close();
    tracing::info!(
        instance = %instance,
        metrics = %metrics_addr,
        database = %storage.describe(),
        consumer = consumer.is_some(),
        aggregator = aggregator.is_some(),
        query = query.is_some(),
        live_dashboards = config.dashboard.live && consumer.is_some(),
        live_pages = config.http.live_pages,
        "butler-analytics running"
    );

    shutdown.cancelled().await;
    let running = Running {
        consumer,
        aggregator,
        query,
        server,
        http_shutdown,
    };
    running
        .stop(
            &tasks,
            &nats,
            &storage,
            Duration::from_secs(config.shutdown.grace_s),
        )
        .await
}

/// A registry whose every metric carries this instance's name (Prometheus keeps
/// `instance` for the scrape target), with the process metrics in it.
///
/// # Errors
/// When a metric cannot be registered.
fn metrics_registry(instance: &str) -> anyhow::Result<Registry> {
    let registry = Registry::new_custom(
        None,
        Some(std::collections::HashMap::from([(
            "pipeline_instance".to_owned(),
            instance.to_owned(),
        )])),
    )?;
    crate::telemetry::register_process_metrics(&registry)?;
    Ok(registry)
}

/// The listener of `metrics.listen`, bound before any part starts, so a taken
/// address stops the start naming the key.
///
/// # Errors
/// When the address cannot be listened on.
async fn bind_metrics(config: &Config) -> anyhow::Result<TcpListener> {
    TcpListener::bind(config.metrics.listen)
        .await
        .with_context(|| {
            format!(
                "config key `metrics.listen`: cannot listen on {}",
                config.metrics.listen
            )
        })
}

/// The consumer's task: its error is the process's.
type ConsumerTask = JoinHandle<Result<(), ConsumerError>>;

/// The query service's task: its error is logged.
type QueryTask = JoinHandle<Result<(), async_nats::Error>>;

/// What every part is built from: the config, the database, the NATS connection, the
/// metrics registry, the tracker the parts' tasks run on, the shutdown token, and the
/// dashboard replies the live writer refreshes and the query service answers from.
struct Parts<'a> {
    config: &'a Config,
    storage: &'a Storage,
    nats: &'a async_nats::Client,
    registry: &'a Registry,
    tasks: &'a TaskTracker,
    shutdown: &'a CancellationToken,
    dashboard_cache: &'a butler_query::dashboard::DashboardCache,
    live_intervals: &'a tokio::sync::watch::Receiver<butler_query::live::LiveIntervals>,
}

impl Parts<'_> {
    /// The consumer, with the live dashboards on its commits, when this process
    /// consumes (`service.consumer` and `ingest.enabled`); its metrics go to `/readyz`.
    fn consumer(&self) -> anyhow::Result<Option<(ConsumerTask, IngestMetrics)>> {
        let config = self.config;
        if !(config.service.consumer && config.ingest.enabled) {
            return Ok(None);
        }
        let freshness = butler_events::registry::Freshness::register(self.registry)?;
        let metrics = IngestMetrics::register(self.registry, &freshness)?;
        let mut settings = ConsumerSettings::from_config(config);
        if config.dashboard.live {
            settings.on_commit = Some(live_dashboards(self, &freshness)?);
        }
        let handle = self.tasks.spawn(butler_consumer::run(
            self.nats.clone(),
            self.storage.clone(),
            settings,
            metrics.clone(),
            self.shutdown.clone(),
        ));
        Ok(Some((handle, metrics)))
    }

    /// The aggregator, built whether or not this process runs the schedule: the admin
    /// requests use it too. Its metrics (lease waits, leases held) count every run of
    /// this process, scheduled or asked over NATS.
    fn aggregator(&self) -> anyhow::Result<(Aggregator, AggregatorMetrics)> {
        let metrics = AggregatorMetrics::register(self.registry)?;
        let aggregator = crate::aggregation::aggregator(self.storage.clone(), self.config)
            .with_metrics(metrics.clone());
        Ok((aggregator, metrics))
    }

    /// The object store reports also go to, when this process serves reports.
    fn report_objects(&self) -> Option<ReportObjects> {
        let config = self.config;
        if config.service.query && config.reports.enabled {
            crate::reports::report_objects(config, self.nats)
        } else {
            None
        }
    }

    /// The NATS query service, when `service.query` is on.
    fn query_service(
        &self,
        instance: &str,
        control: &Arc<dyn AggregationControl>,
        report_objects: Option<&ReportObjects>,
    ) -> anyhow::Result<Option<QueryTask>> {
        let config = self.config;
        if !config.service.query {
            return Ok(None);
        }
        let context = butler_query::service::ServiceContext {
            storage: self.storage.clone(),
            zones: config.zones(),
            instance: instance.to_owned(),
            aggregation: control.clone(),
            metrics: butler_query::QueryMetrics::register(self.registry)?,
            dashboard_cache: self.dashboard_cache.clone(),
            reports: crate::reports::report_settings(config, report_objects.cloned()),
            client: self.nats.clone(),
            errors: butler_query::service::ErrorCounts::default(),
        };
        Ok(Some(self.tasks.spawn(butler_query::service::run(
            self.nats.clone(),
            Arc::new(context),
            self.shutdown.clone(),
        ))))
    }

    /// The reports of `reports.schedule`, made where the query service runs.
    fn scheduled_reports(
        &self,
        schedules: Vec<ReportSchedule>,
        report_objects: Option<&ReportObjects>,
    ) {
        let config = self.config;
        if !(config.service.query && config.reports.enabled && !schedules.is_empty()) {
            return;
        }
        let reports = butler_query::scheduled::ScheduledReports {
            storage: self.storage.clone(),
            settings: crate::reports::report_settings(config, report_objects.cloned()),
            zones: config.zones(),
            client: self.nats.clone(),
        };
        self.tasks
            .spawn(reports.run(schedules, self.shutdown.clone()));
    }

    /// The aggregation jobs on their schedules, when this process runs them
    /// (`service.aggregator` and `aggregation.enabled`).
    fn aggregation_schedule(
        &self,
        aggregator: Aggregator,
        metrics: AggregatorMetrics,
        plans: tokio::sync::watch::Receiver<butler_aggregator::schedule::SchedulePlan>,
    ) -> Option<JoinHandle<()>> {
        let config = self.config;
        if !(config.service.aggregator && config.aggregation.enabled) {
            return None;
        }
        Some(self.tasks.spawn(butler_aggregator::schedule::run(
            aggregator,
            plans,
            metrics,
            self.shutdown.clone(),
        )))
    }

    /// The HTTP endpoint (metrics, health, and the live pages when `http.live_pages`
    /// is on), with the token that stops it. It is not on the tracker: it stays up
    /// until the parts have stopped, so readiness can be watched.
    ///
    /// # Errors
    /// When its gauges cannot be registered.
    fn http(
        &self,
        listener: TcpListener,
        ingest: Option<IngestMetrics>,
        control: Arc<dyn AggregationControl>,
    ) -> anyhow::Result<(JoinHandle<std::io::Result<()>>, CancellationToken)> {
        let config = self.config;
        let mut state = HttpState::new(
            self.registry.clone(),
            self.storage.clone(),
            self.nats.clone(),
        )?;
        state.ingest = ingest;
        if config.http.live_pages {
            state.live = Some(Arc::new(butler_query::live_page::LiveFeed {
                storage: self.storage.clone(),
                zones: config.zones(),
                aggregation: control,
                js: async_nats::jetstream::new(self.nats.clone()),
                nats: self.nats.clone(),
                bucket: config.dashboard.kv_bucket.clone(),
            }));
        }
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(http::serve(listener, state, shutdown.clone()));
        Ok((server, shutdown))
    }
}

/// What [`run`] started and stops at shutdown.
struct Running {
    consumer: Option<ConsumerTask>,
    aggregator: Option<JoinHandle<()>>,
    query: Option<QueryTask>,
    server: JoinHandle<std::io::Result<()>>,
    http_shutdown: CancellationToken,
}

impl Running {
    /// Waits for the parts (the consumer commits and acks what it holds), then stops
    /// the HTTP endpoint, drains NATS and closes the database, waiting at most `grace`
    /// for connections still busy (a commit abandoned at the end of the grace, blocked
    /// on a lock). The consumer's failure, if any, is the result; the others are
    /// logged.
    async fn stop(
        self,
        tasks: &TaskTracker,
        nats: &async_nats::Client,
        storage: &Storage,
        grace: Duration,
    ) -> anyhow::Result<()> {
        tracing::info!("shutting down: committing and acking the events in hand");
        tasks.wait().await;
        if let Some(handle) = self.aggregator {
            handle.await.context("aggregator task")?;
        }
        if let Some(handle) = self.query
            && let Err(err) = handle.await.context("query task")?
        {
            tracing::error!(error = %err, "query service failed");
        }
        let consumer_result = match self.consumer {
            Some(handle) => handle.await.context("consumer task")?.context("consumer"),
            None => Ok(()),
        };
        // The endpoint stays up until the work is done, so readiness can be watched.
        self.http_shutdown.cancel();
        if let Ok(Err(err)) = self.server.await {
            tracing::warn!(error = %err, "metrics endpoint failed");
        }
        if let Err(err) = nats.drain().await {
            tracing::debug!(error = %err, "nats drain");
        }
        if tokio::time::timeout(grace, storage.close()).await.is_err() {
            tracing::warn!(
                "database connections still busy after shutdown.grace_s; exiting anyway (the database rolls back what they held)"
            );
        }
        tracing::info!("stopped");
        consumer_result
    }
}

/// Starts the live dashboards' writer beside the consumer whose commits it follows,
/// and returns the hook the consumer tells its commits to.
fn live_dashboards(
    parts: &Parts<'_>,
    freshness: &butler_events::registry::Freshness,
) -> anyhow::Result<butler_consumer::CommitHook> {
    use butler_query::live::{LiveDashboards, LiveMetrics, LiveSettings, PendingProperties};
    let Parts {
        config,
        storage,
        nats,
        registry,
        tasks,
        shutdown,
        dashboard_cache,
        live_intervals,
    } = *parts;
    let pending = PendingProperties::default();
    let writer = LiveDashboards {
        storage: storage.clone(),
        zones: config.zones(),
        js: async_nats::jetstream::new(nats.clone()),
        nats: nats.clone(),
        cache: dashboard_cache.clone(),
        settings: LiveSettings {
            bucket: config.dashboard.kv_bucket.clone(),
            intervals: live_intervals.clone(),
            replicas: config.nats.stream_replicas,
        },
        pending: pending.clone(),
        metrics: LiveMetrics::register(registry, freshness)?,
    };
    tasks.spawn(writer.run(shutdown.clone()));
    Ok(butler_consumer::CommitHook(std::sync::Arc::new(
        move |properties| pending.mark(properties),
    )))
}

/// This process's name among the instances: `service.instance`, else the host name,
/// from uname(2) as gethostname(2) reads it (the shipped systemd unit's
/// `ProcSubset=pid` hides `/proc/sys/kernel/hostname`).
pub fn instance_name(config: &Config) -> String {
    if config.service.instance.is_empty() {
        let host = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .trim()
            .to_owned();
        if host.is_empty() {
            "localhost".into()
        } else {
            host
        }
    } else {
        config.service.instance.clone()
    }
}

/// A token cancelled by the first SIGINT or SIGTERM.
///
/// # Errors
/// When the signal handlers cannot be installed.
pub fn shutdown_on_signals() -> anyhow::Result<CancellationToken> {
    use tokio::signal::unix::{SignalKind, signal};
    let token = CancellationToken::new();
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let cancel = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!(signal = "SIGTERM", "signal received"),
            _ = int.recv() => tracing::info!(signal = "SIGINT", "signal received"),
        }
        cancel.cancel();
    });
    Ok(token)
}
