//! The operator's endpoint: `/metrics` (Prometheus text format), `/healthz` (the
//! process is alive) and `/readyz` (NATS connected, the durable consumer subscribed
//! when this process consumes, and the database writable); with `http.live_pages`,
//! `/live/<propertyId>` and the server-sent events it follows.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use butler_query::live_page::{FeedUpdate, LiveFeed, PAGE_HTML};
use butler_query::scoped::is_subject_token;
use butler_storage::Storage;
use futures_util::StreamExt;
use prometheus::{Encoder, IntGauge, Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What the handlers read.
#[derive(Clone)]
pub struct HttpState {
    /// Every metric of the process.
    pub registry: Registry,
    /// For readiness and the size gauge.
    pub storage: Storage,
    /// For readiness.
    pub nats: async_nats::Client,
    /// `butler_analytics_storage_database_size_bytes`, refreshed on each scrape.
    pub database_size: IntGauge,
    /// `butler_analytics_storage_write_failing`: 1 while writes fail (full disk, IO).
    pub write_failing: IntGauge,
    /// `butler_analytics_nats_connected`: 1 while connected to NATS.
    pub nats_connected: IntGauge,
    /// The consumer's metrics when this process consumes: readiness waits for its
    /// subscription to the durable consumer.
    pub ingest: Option<butler_consumer::IngestMetrics>,
    /// The live pages' feed, when `http.live_pages` is on.
    pub live: Option<Arc<LiveFeed>>,
    /// Ends the live pages' event streams, which would otherwise hold the graceful
    /// shutdown open.
    pub closing: CancellationToken,
}

impl HttpState {
    /// State with the storage gauges registered in `registry`.
    ///
    /// # Errors
    /// When the gauge is already registered.
    pub fn new(
        registry: Registry,
        storage: Storage,
        nats: async_nats::Client,
    ) -> prometheus::Result<HttpState> {
        let database_size = IntGauge::new(
            "butler_analytics_storage_database_size_bytes",
            "Size of the database file and its write-ahead log.",
        )?;
        registry.register(Box::new(database_size.clone()))?;
        let write_failing = IntGauge::new(
            "butler_analytics_storage_write_failing",
            "1 while the last database write failed for another reason than a busy lock (disk full, IO error).",
        )?;
        registry.register(Box::new(write_failing.clone()))?;
        let nats_connected = IntGauge::new(
            "butler_analytics_nats_connected",
            "1 while connected to NATS.",
        )?;
        registry.register(Box::new(nats_connected.clone()))?;
        Ok(HttpState {
            registry,
            storage,
            nats,
            database_size,
            write_failing,
            nats_connected,
            ingest: None,
            live: None,
            closing: CancellationToken::new(),
        })
    }
}

/// Serves until `shutdown`.
///
/// # Errors
/// When the listener fails.
pub async fn serve(
    listener: TcpListener,
    state: HttpState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let mut router = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz));
    if state.live.is_some() {
        router = router
            .route("/live/{property}", get(live_page))
            .route("/live/{property}/events", get(live_events));
    }
    let closing = state.closing.clone();
    let router = router.with_state(state);
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.cancelled().await;
            closing.cancel();
        })
        .await
}

/// A property the live pages serve: one that can be a key of the bucket.
fn live_property(property: &str) -> Result<(), (StatusCode, String)> {
    if is_subject_token(property) {
        Ok(())
    } else {
        Err((
            StatusCode::BAD_REQUEST,
            format!(
                "{property:?} has no live dashboard: a propertyId with only letters, digits, -, _, = and / has one\n"
            ),
        ))
    }
}

async fn live_page(Path(property): Path<String>) -> impl IntoResponse {
    live_property(&property).map(|()| Html(PAGE_HTML))
}

async fn live_events(
    State(state): State<HttpState>,
    Path(property): Path<String>,
) -> Result<impl IntoResponse, (StatusCode, String)> {
    live_property(&property)?;
    let feed = state
        .live
        .clone()
        .ok_or((StatusCode::NOT_FOUND, "live pages are off\n".to_owned()))?;
    let updates = feed
        .follow(property)
        .await
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")))?;
    let events = updates
        .map(|update| {
            Ok::<_, Infallible>(match update {
                FeedUpdate::Waiting => Event::default().event("waiting").data("{}"),
                FeedUpdate::Dashboard(json) => Event::default().event("dashboard").data(json),
                FeedUpdate::Heartbeat(json) => Event::default().event("heartbeat").data(json),
            })
        })
        .take_until(state.closing.cancelled_owned());
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    // A size that cannot be read now (a database briefly unreachable) leaves the
    // gauge at its last value.
    if let Ok(Ok(bytes)) =
        tokio::time::timeout(Duration::from_secs(1), state.storage.size_bytes()).await
    {
        state
            .database_size
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }
    state
        .write_failing
        .set(i64::from(state.storage.write_failing()));
    let connected = state.nats.connection_state() == async_nats::connection::State::Connected;
    state.nats_connected.set(i64::from(connected));
    let mut body = Vec::new();
    let encoder = TextEncoder::new();
    match encoder.encode(&state.registry.gather(), &mut body) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, encoder.format_type().to_owned())],
            body,
        ),
        Err(err) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain".to_owned())],
            err.to_string().into_bytes(),
        ),
    }
}

async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    let mut problems = Vec::new();
    if state.nats.connection_state() != async_nats::connection::State::Connected {
        problems.push("nats: not connected".to_owned());
    }
    if let Some(ingest) = &state.ingest
        && !ingest.is_consuming()
    {
        problems.push("ingest: not subscribed to the durable consumer".to_owned());
    }
    if state.storage.write_failing() {
        problems.push("database: the last write failed".to_owned());
    } else {
        match tokio::time::timeout(Duration::from_secs(2), state.storage.check_writable()).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => problems.push(format!("database: {err}")),
            Err(_) => problems.push("database: write lock not available within 2 s".to_owned()),
        }
    }
    if problems.is_empty() {
        (StatusCode::OK, "ready\n".to_owned())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready\n{}\n", problems.join("\n")),
        )
    }
}
