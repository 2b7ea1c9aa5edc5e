//! The NATS micro service: endpoints registered under one name and queue group.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use async_nats::service::{Request, ServiceExt};
use butler_events::Zones;
use butler_storage::Storage;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::endpoint::{Answer, Endpoint};
use crate::reply;
use crate::report::Report;
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
        let subject = routes().find(|r| r.name == name).map(|r| r.subject);
        let (n, last) = subject
            .and_then(|s| self.0.lock().ok()?.get(s).cloned())
            .unwrap_or_default();
        serde_json::json!({ "num_errors": n, "last_error": last })
    }
}

/// One subject the service answers: an endpoint's own, or its property-scoped twin's.
#[derive(Debug, Clone, Copy)]
struct Route {
    /// The endpoint that answers.
    endpoint: Endpoint,
    /// The name in `$SRV.INFO`.
    name: &'static str,
    /// The subject, which labels the request metrics and error counts.
    subject: &'static str,
    /// Whether the subject's last token is the property.
    scoped: bool,
}

/// Every subject the service answers: each endpoint's, followed by its scoped twin's.
fn routes() -> impl Iterator<Item = Route> {
    Endpoint::ALL.into_iter().flat_map(|endpoint| {
        let own = Route {
            endpoint,
            name: endpoint.name(),
            subject: endpoint.subject(),
            scoped: false,
        };
        let twin = endpoint
            .scoped_name()
            .zip(endpoint.scoped_subject())
            .map(|(name, subject)| Route {
                endpoint,
                name,
                subject,
                scoped: true,
            });
        std::iter::once(own).chain(twin)
    })
}

/// Every subject the running service subscribes to: its endpoints' and discovery's
/// (`$SRV.PING|INFO|STATS`, alone, by name and by id, the id being `*` here), so that
/// `validate` asks the server for the same grants the service will need.
pub fn subscribed_subjects() -> Vec<String> {
    let discovery = ["PING", "INFO", "STATS"].into_iter().flat_map(|verb| {
        [
            format!("$SRV.{verb}"),
            format!("$SRV.{verb}.{SERVICE_NAME}"),
            format!("$SRV.{verb}.{SERVICE_NAME}.*"),
        ]
    });
    routes()
        .map(|route| route.subject.to_owned())
        .chain(discovery)
        .collect()
}

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
    for route in routes() {
        let mut endpoint = service
            .endpoint_builder()
            .name(route.name)
            .add(route.subject)
            .await?;
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
                inflight.spawn(async move { handle(route, request, &context).await });
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

/// Answers one request: a scoped subject's body is first made the unscoped
/// endpoint's, then the endpoint answers it.
async fn handle(route: Route, request: Request, context: &ServiceContext) {
    let started = Instant::now();
    let scoped;
    let body = if route.scoped {
        let property = request.message.subject.rsplit('.').next().unwrap_or("");
        match crate::scoped::unscoped_body(&request.message.payload, property) {
            Ok(body) => {
                scoped = body;
                &scoped[..]
            }
            Err(err) => {
                finish(route.subject, &request, Err(err), context, started).await;
                return;
            }
        }
    } else {
        &request.message.payload[..]
    };
    let result = route.endpoint.answer(body, context).await;
    finish(route.subject, &request, result, context, started).await;
}

/// Sends a result as the reply and records it under the endpoint's subject.
async fn finish(
    subject: &'static str,
    request: &Request,
    result: Result<Answer, QueryError>,
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
    let sent = match result {
        Ok(Answer::Body(body)) => reply::send(request, Ok(body)).await,
        Ok(Answer::Report(report)) => send_report(request, report, context).await,
        Err(err) => reply::send_error(request, &err).await,
    };
    if let Err(err) = sent {
        tracing::warn!(endpoint = subject, error = %err, "reply not sent");
    }
    context
        .metrics
        .observe(subject, started.elapsed().as_secs_f64(), code);
}

/// Replies with the report itself or, when it is larger than the server lets a message
/// be, with a note naming its object in the object store (or its file when there is
/// none).
async fn send_report(
    request: &Request,
    report: Report,
    context: &ServiceContext,
) -> Result<(), async_nats::PublishError> {
    let max_payload = context.client.server_info().max_payload;
    if report.body.len() + 512 > max_payload {
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
    }
}
