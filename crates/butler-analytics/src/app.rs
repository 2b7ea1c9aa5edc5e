//! The pipeline in one runtime: storage, NATS, the parts that `service` enables, and
//! the metrics endpoint, stopped together by one cancellation token.

use std::time::Duration;

use anyhow::Context;
use butler_config::Config;
use butler_consumer::{ConsumerSettings, IngestMetrics};
use butler_storage::{Storage, StorageOptions};
use prometheus::Registry;
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
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let schedules = crate::aggregation::schedules(&config)?;
    let report_schedules = crate::aggregation::report_schedules(&config)?;
    let storage = open_storage_waiting(&config, &shutdown).await?;
    let instance = instance_name(&config);
    // Every metric of this process carries its instance's name (Prometheus keeps
    // `instance` for the scrape target).
    let registry = Registry::new_custom(
        None,
        Some(std::collections::HashMap::from([(
            "pipeline_instance".to_owned(),
            instance.clone(),
        )])),
    )?;
    crate::telemetry::register_process_metrics(&registry)?;
    let nats = crate::nats::connect(&config.nats, &format!("butler-analytics/{instance}")).await?;
    let listener = tokio::net::TcpListener::bind(config.metrics.listen)
        .await
        .with_context(|| {
            format!(
                "config key `metrics.listen`: cannot listen on {}",
                config.metrics.listen
            )
        })?;
    let metrics_addr = listener.local_addr()?;

    let tasks = TaskTracker::new();
    let mut ingest_metrics = None;
    let consumer = if config.service.consumer && config.ingest.enabled {
        let metrics = IngestMetrics::register(&registry)?;
        ingest_metrics = Some(metrics.clone());
        let mut settings = ConsumerSettings::from_config(&config);
        if config.dashboard.live {
            settings.on_commit = Some(live_dashboards(
                &config, &storage, &nats, &registry, &tasks, &shutdown,
            )?);
        }
        Some(tasks.spawn(butler_consumer::run(
            nats.clone(),
            storage.clone(),
            settings,
            metrics,
            shutdown.clone(),
        )))
    } else {
        None
    };
    // Lease waits and leases held count every run of this process, scheduled or
    // asked over NATS.
    let aggregator_metrics = butler_aggregator::AggregatorMetrics::register(&registry)?;
    let aggregator = crate::aggregation::aggregator(storage.clone(), &config)
        .with_metrics(aggregator_metrics.clone());
    let report_objects = if config.service.query && config.reports.enabled {
        crate::aggregation::report_objects(&config, &nats)
    } else {
        None
    };
    let control: std::sync::Arc<dyn butler_query::admin::AggregationControl> =
        std::sync::Arc::new(crate::aggregation::AdminControl {
            aggregator: aggregator.clone(),
            schedules: schedules.clone(),
        });
    let query = if config.service.query {
        let context = butler_query::service::ServiceContext {
            storage: storage.clone(),
            zones: config.zones(),
            instance: instance.clone(),
            aggregation: control.clone(),
            metrics: butler_query::QueryMetrics::register(&registry)?,
            dashboard_cache: butler_query::dashboard::DashboardCache::new(
                config
                    .cache
                    .enabled
                    .then(|| std::time::Duration::from_millis(config.cache.ttl_ms)),
            ),
            reports: crate::aggregation::report_settings(&config, report_objects.clone()),
            client: nats.clone(),
            errors: butler_query::service::ErrorCounts::default(),
        };
        Some(tasks.spawn(butler_query::service::run(
            nats.clone(),
            std::sync::Arc::new(context),
            shutdown.clone(),
        )))
    } else {
        None
    };
    if config.service.query && config.reports.enabled && !report_schedules.is_empty() {
        let reports = butler_query::scheduled::ScheduledReports {
            storage: storage.clone(),
            settings: crate::aggregation::report_settings(&config, report_objects.clone()),
            zones: config.zones(),
            client: nats.clone(),
        };
        tasks.spawn(reports.run(report_schedules, shutdown.clone()));
    }
    let aggregator = if config.service.aggregator && config.aggregation.enabled {
        let metrics = aggregator_metrics;
        Some(tasks.spawn(butler_aggregator::schedule::run(
            aggregator,
            schedules,
            crate::aggregation::retention_days(&config),
            metrics,
            shutdown.clone(),
        )))
    } else {
        None
    };
    let mut state = HttpState::new(registry, storage.clone(), nats.clone())?;
    state.ingest = ingest_metrics;
    if config.http.live_pages {
        state.live = Some(std::sync::Arc::new(butler_query::live_page::LiveFeed {
            storage: storage.clone(),
            zones: config.zones(),
            aggregation: control,
            js: async_nats::jetstream::new(nats.clone()),
            bucket: config.dashboard.kv_bucket.clone(),
        }));
    }
    let http_shutdown = CancellationToken::new();
    let server = tokio::spawn(http::serve(listener, state, http_shutdown.clone()));
    tasks.close();
    tracing::info!(
        instance = %instance,
        metrics = %metrics_addr,
        database = %storage.describe(),
        consumer = consumer.is_some(),
        aggregator = aggregator.is_some(),
        query = query.is_some(),
        "butler-analytics running"
    );

    shutdown.cancelled().await;
    tracing::info!("shutting down: committing and acking the events in hand");
    tasks.wait().await;
    if let Some(handle) = aggregator {
        handle.await.context("aggregator task")?;
    }
    if let Some(handle) = query
        && let Err(err) = handle.await.context("query task")?
    {
        tracing::error!(error = %err, "query service failed");
    }
    let consumer_result = match consumer {
        Some(handle) => handle.await.context("consumer task")?.context("consumer"),
        None => Ok(()),
    };
    // The endpoint stays up until the work is done, so readiness can be watched.
    http_shutdown.cancel();
    if let Ok(Err(err)) = server.await {
        tracing::warn!(error = %err, "metrics endpoint failed");
    }
    if let Err(err) = nats.drain().await {
        tracing::debug!(error = %err, "nats drain");
    }
    storage.close().await;
    tracing::info!("stopped");
    consumer_result
}

/// Starts the live dashboards' writer beside the consumer whose commits it follows,
/// and returns the hook the consumer tells its commits to.
fn live_dashboards(
    config: &Config,
    storage: &Storage,
    nats: &async_nats::Client,
    registry: &Registry,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) -> anyhow::Result<butler_consumer::CommitHook> {
    use butler_query::live::{LiveDashboards, LiveMetrics, LiveSettings, PendingProperties};
    let pending = PendingProperties::default();
    let writer = LiveDashboards {
        storage: storage.clone(),
        zones: config.zones(),
        js: async_nats::jetstream::new(nats.clone()),
        settings: LiveSettings {
            bucket: config.dashboard.kv_bucket.clone(),
            push_interval: std::time::Duration::from_millis(config.dashboard.push_interval_ms),
            refresh: std::time::Duration::from_secs(config.dashboard.refresh_s),
            replicas: config.nats.stream_replicas,
        },
        pending: pending.clone(),
        metrics: LiveMetrics::register(registry)?,
    };
    tasks.spawn(writer.run(shutdown.clone()));
    Ok(butler_consumer::CommitHook(std::sync::Arc::new(
        move |properties| pending.mark(properties),
    )))
}

/// This process's name among the instances: `service.instance`, else the host name.
pub fn instance_name(config: &Config) -> String {
    if config.service.instance.is_empty() {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map_or_else(|_| "localhost".into(), |h| h.trim().to_owned())
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
