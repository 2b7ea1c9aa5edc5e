//! The NATS micro service: endpoints registered under one name and queue group.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use async_nats::service::{Request, ServiceExt};
use butler_events::Zones;
use butler_storage::Storage;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::reply::{self, parse};
use crate::{QueryError, QueryMetrics, admin};

/// The service name in `$SRV` discovery.
pub const SERVICE_NAME: &str = "butler-analytics";

/// What the handlers need.
pub struct ServiceContext {
    /// The database.
    pub storage: Storage,
    /// The zone of each property's local days.
    pub zones: Zones,
    /// This instance's name (`service.instance`).
    pub instance: String,
    /// For `analytics.admin.aggregate` and `analytics.admin.status`.
    pub aggregation: Arc<dyn admin::AggregationControl>,
    /// Request metrics.
    pub metrics: QueryMetrics,
    /// Dashboard replies, per property.
    pub dashboard_cache: crate::dashboard::DashboardCache,
    /// Where reports go and which formats are allowed.
    pub reports: crate::report::ReportSettings,
    /// The client, for the server's max payload.
    pub client: async_nats::Client,
    /// Error replies per endpoint, for `$SRV.STATS`.
    pub errors: ErrorCounts,
}

/// Error replies per endpoint subject, with the last message, for `$SRV.STATS`. The
/// library counts an error only when it sends it with an empty body, and ours carry a
/// JSON body, so each endpoint's `data` holds the counts instead:
/// `{"num_errors": n, "last_error": "…"}`.
#[derive(Debug, Clone, Default)]
pub struct ErrorCounts(Arc<std::sync::Mutex<HashMap<&'static str, (u64, String)>>>);

impl ErrorCounts {
    fn record(&self, subject: &'static str, err: &QueryError) {
        if let Ok(mut counts) = self.0.lock() {
            let entry = counts.entry(subject).or_default();
            entry.0 += 1;
            entry.1 = format!("{} {err}", err.status());
        }
    }

    /// The `data` of endpoint `name` in `$SRV.STATS`.
    fn stats_of(&self, name: &str) -> serde_json::Value {
        let subject = ENDPOINTS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s);
        let (n, last) = subject
            .and_then(|s| self.0.lock().ok()?.get(s).cloned())
            .unwrap_or_default();
        serde_json::json!({ "num_errors": n, "last_error": last })
    }
}

/// The endpoints: (name in `$SRV.INFO`, subject). A subject ending in `.*` is the
/// property-scoped twin of the endpoint without it (CONTRACT §7).
const ENDPOINTS: [(&str, &str); 9] = [
    ("dashboard", "analytics.query.dashboard"),
    ("report", "analytics.query.report"),
    ("timeseries", "analytics.query.timeseries"),
    ("dashboard_property", "analytics.query.dashboard.*"),
    ("report_property", "analytics.query.report.*"),
    ("timeseries_property", "analytics.query.timeseries.*"),
    ("metrics", "analytics.query.metrics"),
    ("admin_aggregate", "analytics.admin.aggregate"),
    ("admin_status", "analytics.admin.status"),
];

/// Registers the service and answers requests until `shutdown`; requests run
/// concurrently, each on its own task.
///
/// # Errors
/// When the service or an endpoint cannot be registered.
pub async fn run(
    client: async_nats::Client,
    context: Arc<ServiceContext>,
    shutdown: CancellationToken,
) -> Result<(), async_nats::Error> {
    let errors = context.errors.clone();
    let service = client
        .service_builder()
        .description("Butler analytics: dashboards, time series, reports and aggregation control")
        .stats_handler(move |name, _| errors.stats_of(&name))
        .queue_group(SERVICE_NAME)
        .start(SERVICE_NAME, env!("CARGO_PKG_VERSION"))
        .await?;
    let mut loops = tokio::task::JoinSet::new();
    for (name, subject) in ENDPOINTS {
        let mut endpoint = service.endpoint_builder().name(name).add(subject).await?;
        let context = context.clone();
        let shutdown = shutdown.clone();
        loops.spawn(async move {
            let inflight = tokio_util::task::TaskTracker::new();
            loop {
                let request = tokio::select! {
                    () = shutdown.cancelled() => break,
                    next = endpoint.next() => match next {
                        Some(request) => request,
                        None => break,
                    },
                };
                let context = context.clone();
                inflight.spawn(async move { handle(subject, request, &context).await });
            }
            inflight.close();
            inflight.wait().await;
        });
    }
    tracing::info!(service = SERVICE_NAME, "query service listening");
    while loops.join_next().await.is_some() {}
    if let Err(err) = service.stop().await {
        tracing::debug!(error = %err, "stopping the query service");
    }
    Ok(())
}

/// Answers one request. Each endpoint's work is boxed: the handler is spawned as a
/// task per request, and a task's future is copied whole when it is spawned, so it is
/// kept small (the report's and the admin runs' state machines are large).
async fn handle(subject: &'static str, request: Request, context: &ServiceContext) {
    let started = Instant::now();
    let scoped;
    let (endpoint, body) = match subject.strip_suffix(".*") {
        None => (subject, &request.message.payload[..]),
        Some(endpoint) => {
            let property = request.message.subject.rsplit('.').next().unwrap_or("");
            match crate::scoped::unscoped_body(&request.message.payload, property) {
                Ok(body) => {
                    scoped = body;
                    (endpoint, &scoped[..])
                }
                Err(err) => {
                    finish(subject, &request, Err(err), context, started).await;
                    return;
                }
            }
        }
    };
    if endpoint == "analytics.query.report" {
        let code = Box::pin(answer_report(subject, &request, body, context)).await;
        context
            .metrics
            .observe(subject, started.elapsed().as_secs_f64(), code);
        return;
    }
    let result: Result<Vec<u8>, QueryError> = match endpoint {
        "analytics.query.dashboard" => match parse(body) {
            Ok(req) => Box::pin(crate::dashboard::dashboard(
                &context.storage,
                &context.dashboard_cache,
                &context.metrics,
                &context.zones,
                req,
            ))
            .await
            .and_then(|d| to_body(&*d)),
            Err(e) => Err(e),
        },
        "analytics.query.timeseries" => match parse(body) {
            Ok(req) => Box::pin(crate::timeseries::timeseries(
                &context.storage,
                &*context.aggregation,
                &context.zones,
                req,
            ))
            .await
            .and_then(|r| to_body(&r)),
            Err(e) => Err(e),
        },
        "analytics.query.metrics" => match parse::<admin::StatusRequest>(body) {
            Ok(_) => to_body(&crate::catalogue::describe()),
            Err(e) => Err(e),
        },
        "analytics.admin.aggregate" => match parse(body) {
            Ok(req) => Box::pin(admin::aggregate(&*context.aggregation, &context.zones, req))
                .await
                .and_then(|r| to_body(&r)),
            Err(e) => Err(e),
        },
        "analytics.admin.status" => match parse::<admin::StatusRequest>(body) {
            Ok(_) => Box::pin(admin::status(&*context.aggregation, &context.instance))
                .await
                .and_then(|r| to_body(&r)),
            Err(e) => Err(e),
        },
        other => Err(QueryError::NotFound(format!("no endpoint {other}"))),
    };
    finish(subject, &request, result, context, started).await;
}

/// Sends a result as the reply and records it under the endpoint's subject.
async fn finish(
    subject: &'static str,
    request: &Request,
    result: Result<Vec<u8>, QueryError>,
    context: &ServiceContext,
    started: Instant,
) {
    let code = result.as_ref().err().map(QueryError::code);
    if let Err(err) = &result {
        context.errors.record(subject, err);
        if matches!(err, QueryError::Internal(_)) {
            tracing::warn!(endpoint = subject, error = %err, "request failed");
        }
    }
    if let Err(err) = reply::send(request, result).await {
        tracing::warn!(endpoint = subject, error = %err, "reply not sent");
    }
    context
        .metrics
        .observe(subject, started.elapsed().as_secs_f64(), code);
}

/// A reply body, serialized straight from the reply's type.
fn to_body<T: serde::Serialize + ?Sized>(v: &T) -> Result<Vec<u8>, QueryError> {
    serde_json::to_vec(v).map_err(|e| QueryError::Internal(e.to_string()))
}

/// Replies with the report itself or, when it is larger than the server lets a message
/// be, with its object in the object store (or its file when there is none). Returns
/// the error code, if any.
async fn answer_report(
    subject: &'static str,
    request: &Request,
    body: &[u8],
    context: &ServiceContext,
) -> Option<&'static str> {
    let result = match parse(body) {
        Ok(req) => {
            crate::report::report(&context.storage, &context.reports, &context.zones, req).await
        }
        Err(e) => Err(e),
    };
    let report = match result {
        Ok(report) => report,
        Err(err) => {
            context.errors.record(subject, &err);
            if matches!(err, QueryError::Internal(_)) {
                tracing::warn!(endpoint = subject, error = %err, "request failed");
            }
            if let Err(e) = reply::send_error(request, &err).await {
                tracing::warn!(error = %e, "reply not sent");
            }
            return Some(err.code());
        }
    };
    let max_payload = context.client.server_info().max_payload;
    let sent = if report.body.len() + 512 > max_payload {
        let note = match &report.object {
            Some(object) => serde_json::json!({ "objectStore": object }),
            None => serde_json::json!({
                "file": report.path.display().to_string(),
                "format": report.format,
                "bytes": report.body.len(),
                "message": format!("the report is larger than the server's max payload of {max_payload} bytes; read it from the file (or set reports.object_store)"),
            }),
        };
        request
            .respond(Ok(bytes::Bytes::from(note.to_string())))
            .await
    } else if report.format == "csv" {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Content-Type", "text/csv");
        request
            .respond_with_headers(Ok(bytes::Bytes::from(report.body)), headers)
            .await
    } else {
        request.respond(Ok(bytes::Bytes::from(report.body))).await
    };
    if let Err(e) = sent {
        tracing::warn!(error = %e, "reply not sent");
    }
    None
}
