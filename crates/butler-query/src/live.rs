//! Live dashboards (CONTRACT §7): each active property's dashboard kept in a JetStream
//! key-value bucket, key = propertyId, so a screen watches one key instead of polling;
//! each value written is also published on the property's live subject
//! ([`live_subject`]), which a hotel's client follows with a plain subscribe.
//!
//! Commits mark their properties pending ([`PendingProperties`]); every
//! `push_interval` the pending ones are written once each, however many commits marked
//! them, and every `refresh` the properties with events in the last two local days are
//! rewritten, so the comparison with yesterday and local midnight move on. A value
//! whose figures equal the stored ones is not written again (the stored one is at most
//! a day old, well inside the bucket's TTL).
//!
//! Several instances may write one key. Each write is conditional on the revision read
//! just before its dashboard was computed, and a value is never written over one with
//! a later `asOf`: so watchers see `asOf` only move forward, and the value with the
//! latest `asOf` holds every commit made before that instant.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use butler_events::{EventTime, Zones};
use butler_storage::Storage;
use chrono::{DateTime, DurationRound, Utc};
use futures_util::StreamExt;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};
use serde_json::Value;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::QueryError;
use crate::dashboard::{DashboardCache, compute};
use crate::scoped::{is_subject_token, live_subject};

/// How long a key outlives its last write: properties quiet for longer than the two
/// local days they are refreshed for drop out of the bucket.
pub const KEY_TTL: Duration = Duration::from_secs(3 * 24 * 3600);
/// An unchanged value older than this is written again, so an active property's key
/// never reaches [`KEY_TTL`].
const REWRITE_UNCHANGED_AFTER: chrono::Duration = chrono::Duration::hours(24);
/// Dashboards computed and written at once.
const CONCURRENT_WRITES: usize = 8;
/// Conditional writes tried before leaving a key to the instance that keeps winning.
const WRITE_ATTEMPTS: usize = 5;

/// The `dashboard` section, as the writer takes it.
#[derive(Debug, Clone)]
pub struct LiveSettings {
    /// The bucket.
    pub bucket: String,
    /// The two intervals, replaced when the config is reloaded.
    pub intervals: tokio::sync::watch::Receiver<LiveIntervals>,
    /// Replicas of the bucket when it is created.
    pub replicas: usize,
}

/// How often the writer writes, the part of its settings a reload may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveIntervals {
    /// Longest a commit waits before its properties are written.
    pub push: Duration,
    /// How often active properties are rewritten.
    pub refresh: Duration,
}

/// Properties with committed events whose dashboards are not written yet, each with
/// its earliest such commit (for the lag metric) and the earliest timestamp of those
/// events (for freshness). Shared by the consumer's commit hook and the writer.
#[derive(Debug, Clone, Default)]
pub struct PendingProperties(Arc<Mutex<HashMap<String, Due>>>);

/// Why a property's dashboard is due, and since when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Due {
    /// The earliest commit not yet shown.
    since: Instant,
    /// The earliest timestamp among the events not yet shown; none when the property
    /// is due only for the periodic refresh.
    earliest_event: Option<EventTime>,
}

impl Due {
    /// The two dues of one property as one: the earlier of each.
    fn merge(self, other: Due) -> Due {
        Due {
            since: self.since.min(other.since),
            earliest_event: match (self.earliest_event, other.earliest_event) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
        }
    }
}

impl PendingProperties {
    /// Marks `properties` as committed just now, each with the earliest timestamp of
    /// its new recent events, if any. Ids that cannot be a key are left out: they have
    /// no live dashboard.
    pub fn mark(&self, properties: &[(&str, Option<EventTime>)]) {
        let now = Instant::now();
        if let Ok(mut pending) = self.0.lock() {
            for (property, earliest) in properties {
                if is_subject_token(property) {
                    let due = Due {
                        since: now,
                        earliest_event: *earliest,
                    };
                    pending
                        .entry((*property).to_owned())
                        .and_modify(|d| *d = d.merge(due))
                        .or_insert(due);
                }
            }
        }
    }

    fn take(&self) -> HashMap<String, Due> {
        self.0
            .lock()
            .map(|mut pending| std::mem::take(&mut *pending))
            .unwrap_or_default()
    }

    fn put_back(&self, property: String, due: Due) {
        if let Ok(mut pending) = self.0.lock() {
            pending
                .entry(property)
                .and_modify(|d| *d = d.merge(due))
                .or_insert(due);
        }
    }
}

/// Writes, skips, failures and lag of the live dashboards.
#[derive(Clone)]
pub struct LiveMetrics {
    writes: IntCounter,
    skipped: IntCounterVec,
    failures: IntCounter,
    lag: Histogram,
    freshness: Histogram,
}

impl LiveMetrics {
    /// Creates the metrics in `registry`; `freshness` is the shared metric's
    /// `dashboard` series.
    ///
    /// # Errors
    /// When a metric of the same name is already registered.
    pub fn register(
        registry: &Registry,
        freshness: &butler_events::registry::Freshness,
    ) -> prometheus::Result<LiveMetrics> {
        let writes = IntCounter::new(
            "butler_analytics_live_dashboard_writes_total",
            "Live dashboard values written to the key-value bucket.",
        )?;
        let skipped = IntCounterVec::new(
            Opts::new(
                "butler_analytics_live_dashboard_skipped_total",
                "Live dashboard values not written, by reason: unchanged (the same figures are stored), newer (a later asOf is stored), contended (other instances kept writing).",
            ),
            &["reason"],
        )?;
        let failures = IntCounter::new(
            "butler_analytics_live_dashboard_failures_total",
            "Live dashboard writes that failed (NATS or the database); retried at the next push.",
        )?;
        let lag = Histogram::with_opts(
            HistogramOpts::new(
                "butler_analytics_live_dashboard_lag_seconds",
                "From the commit of a property's events to the write of its live dashboard.",
            )
            .buckets(vec![
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 5.0, 10.0, 30.0,
            ]),
        )?;
        registry.register(Box::new(writes.clone()))?;
        registry.register(Box::new(skipped.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(lag.clone()))?;
        for reason in ["unchanged", "newer", "contended"] {
            skipped.with_label_values(&[reason]);
        }
        Ok(LiveMetrics {
            writes,
            skipped,
            failures,
            lag,
            freshness: freshness.dashboard(),
        })
    }
}

/// Why a live dashboard was not written.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// The bucket could not be opened or created, or a read or write of it failed.
    #[error("key-value bucket {bucket}: {reason}")]
    Bucket {
        /// The bucket.
        bucket: String,
        /// What the server or client said.
        reason: String,
    },
    /// The live subject could not be subscribed to.
    #[error("live subject {subject}: {reason}")]
    Subject {
        /// The subject.
        subject: String,
        /// What the server or client said.
        reason: String,
    },
    /// The dashboard could not be computed.
    #[error("dashboard: {0}")]
    Dashboard(#[from] QueryError),
}

/// What became of one property's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Written,
    Unchanged,
    Newer,
    Contended,
}

/// The writer of the live dashboards.
pub struct LiveDashboards {
    /// The database the dashboards are computed from.
    pub storage: Storage,
    /// The zone of each property's local days.
    pub zones: Zones,
    /// The NATS connection the bucket is reached through.
    pub js: jetstream::Context,
    /// The same connection, for the live subjects.
    pub nats: async_nats::Client,
    /// The query service's dashboard replies: each value written becomes the reply
    /// to a request without `asOf`, so a client that asks, then follows the live
    /// subject, never starts from older figures than the bucket holds.
    pub cache: DashboardCache,
    /// The `dashboard` section.
    pub settings: LiveSettings,
    /// What commits marked.
    pub pending: PendingProperties,
    /// Writes, skips, failures, lag.
    pub metrics: LiveMetrics,
}

impl LiveDashboards {
    /// Writes pending and active properties until `shutdown`, then writes what is
    /// pending once more and returns.
    pub async fn run(self, shutdown: CancellationToken) {
        // Opened at start, so watchers find the bucket before the first event; when
        // NATS cannot create it yet, the first write tries again.
        let mut store = match open_bucket(&self.js, &self.settings).await {
            Ok(store) => Some(store),
            Err(err) => {
                tracing::warn!(error = %err, "live dashboards: bucket not available yet");
                None
            }
        };
        let mut reloads = self.settings.intervals.clone();
        let ticking = |every: Duration| {
            let mut interval = tokio::time::interval(every);
            interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
            interval
        };
        let intervals = *reloads.borrow_and_update();
        let (mut push, mut refresh) = (ticking(intervals.push), ticking(intervals.refresh));
        let mut reloadable = true;
        loop {
            let due = tokio::select! {
                () = shutdown.cancelled() => break,
                changed = reloads.changed(), if reloadable => {
                    if changed.is_err() {
                        reloadable = false;
                        continue;
                    }
                    let intervals = *reloads.borrow_and_update();
                    push = ticking(intervals.push);
                    refresh = ticking(intervals.refresh);
                    tracing::info!(push_ms = intervals.push.as_millis() as u64, refresh_s = intervals.refresh.as_secs(), "live dashboard intervals reloaded");
                    continue;
                }
                _ = push.tick() => self.pending.take(),
                _ = refresh.tick() => self.active_properties().await,
            };
            if !due.is_empty() {
                self.write_all(&mut store, due).await;
            }
        }
        let due = self.pending.take();
        if !due.is_empty() {
            self.write_all(&mut store, due).await;
        }
    }

    /// Properties with events in the last two local days (whole UTC hours overlapping
    /// the last 50 hours), due now.
    async fn active_properties(&self) -> HashMap<String, Due> {
        let now = Utc::now();
        match self
            .storage
            .properties_with_events(now - chrono::Duration::hours(50), now)
            .await
        {
            Ok(properties) => properties
                .into_iter()
                .filter(|p| is_subject_token(p))
                .map(|p| {
                    let due = Due {
                        since: Instant::now(),
                        earliest_event: None,
                    };
                    (p, due)
                })
                .collect(),
            Err(err) => {
                tracing::warn!(error = %err, "live dashboards: listing active properties failed");
                HashMap::new()
            }
        }
    }

    /// Writes each due property once; a failed one is marked pending again.
    async fn write_all(&self, store: &mut Option<kv::Store>, due: HashMap<String, Due>) {
        let bucket = match store {
            Some(bucket) => bucket.clone(),
            None => match open_bucket(&self.js, &self.settings).await {
                Ok(bucket) => store.insert(bucket).clone(),
                Err(err) => {
                    tracing::warn!(error = %err, "live dashboards: bucket not available; retrying at the next push");
                    self.metrics.failures.inc();
                    for (property, due) in due {
                        self.pending.put_back(property, due);
                    }
                    return;
                }
            },
        };
        let bucket = &bucket;
        futures_util::stream::iter(due)
            .for_each_concurrent(CONCURRENT_WRITES, |(property, due)| async move {
                match self.write_one(bucket, &property).await {
                    Ok(outcome) => {
                        let reason = match outcome {
                            Outcome::Written => {
                                self.metrics.writes.inc();
                                self.metrics.lag.observe(due.since.elapsed().as_secs_f64());
                                if let Some(earliest) = due.earliest_event {
                                    self.metrics.freshness.observe(
                                        butler_events::registry::seconds_since(earliest, Utc::now()),
                                    );
                                }
                                return;
                            }
                            Outcome::Unchanged => "unchanged",
                            Outcome::Newer => "newer",
                            Outcome::Contended => "contended",
                        };
                        self.metrics.skipped.with_label_values(&[reason]).inc();
                    }
                    Err(err) => {
                        tracing::warn!(property = %property, error = %err, "live dashboard not written; retrying at the next push");
                        self.metrics.failures.inc();
                        self.pending.put_back(property, due);
                    }
                }
            })
            .await;
    }

    /// Computes and writes one property's dashboard, conditional on the revision read
    /// before computing it.
    async fn write_one(&self, bucket: &kv::Store, property: &str) -> Result<Outcome, LiveError> {
        let failed = |reason: String| LiveError::Bucket {
            bucket: self.settings.bucket.clone(),
            reason,
        };
        for _ in 0..WRITE_ATTEMPTS {
            let current = bucket
                .entry(property)
                .await
                .map_err(|e| failed(e.to_string()))?;
            // Milliseconds, as `asOf` says it: the request/reply dashboard asked for
            // this `asOf` covers exactly the same window.
            let now = Utc::now()
                .duration_trunc(chrono::Duration::milliseconds(1))
                .unwrap_or_else(|_| Utc::now());
            let dashboard = compute(&self.storage, self.zones.of(property), property, now).await?;
            let value = serde_json::to_value(&dashboard).map_err(|e| failed(e.to_string()))?;
            self.cache.offer(property, dashboard).await;
            let revision = match current {
                None => 0,
                Some(entry) => {
                    if entry.operation == kv::Operation::Put
                        && let Ok(stored) = serde_json::from_slice::<Value>(&entry.value)
                    {
                        match as_of(&stored) {
                            Some(stored_as_of) if stored_as_of >= now => {
                                return Ok(Outcome::Newer);
                            }
                            Some(stored_as_of)
                                if same_figures(&stored, &value)
                                    && now - stored_as_of < REWRITE_UNCHANGED_AFTER =>
                            {
                                return Ok(Outcome::Unchanged);
                            }
                            _ => {}
                        }
                    }
                    entry.revision
                }
            };
            let body =
                bytes::Bytes::from(serde_json::to_vec(&value).map_err(|e| failed(e.to_string()))?);
            match bucket.update(property, body.clone(), revision).await {
                Ok(_) => {
                    // Core NATS: a follower that misses a value (disconnected at that
                    // moment) gets the next one, or asks for the current figures.
                    if let Err(err) = self.nats.publish(live_subject(property), body).await {
                        tracing::warn!(property, error = %err, "live dashboard written but not published on its live subject");
                    }
                    return Ok(Outcome::Written);
                }
                Err(err) if err.kind() == kv::UpdateErrorKind::WrongLastRevision => {}
                Err(err) => return Err(failed(err.to_string())),
            }
        }
        Ok(Outcome::Contended)
    }
}

/// Opens the bucket, creating it when absent: history 1 (watchers want the latest
/// value), a TTL that drops quiet properties. The bucket's stream is created as the
/// key-value convention lays it out (`KV_<bucket>` over `$KV.<bucket>.>`) rather than
/// through the client's `create_key_value`, whose account-info request nats-server 2.9
/// answers in a form the client does not read.
///
/// # Errors
/// When the bucket is neither there nor can be created.
pub async fn open_bucket(
    js: &jetstream::Context,
    settings: &LiveSettings,
) -> Result<kv::Store, LiveError> {
    let failed = |reason: String| LiveError::Bucket {
        bucket: settings.bucket.clone(),
        reason,
    };
    if let Ok(store) = js.get_key_value(&settings.bucket).await {
        return Ok(store);
    }
    js.get_or_create_stream(jetstream::stream::Config {
        name: format!("KV_{}", settings.bucket),
        description: Some("Butler analytics live dashboards, key = propertyId".into()),
        subjects: vec![format!("$KV.{}.>", settings.bucket)],
        max_messages_per_subject: 1,
        max_age: KEY_TTL,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: jetstream::stream::DiscardPolicy::New,
        num_replicas: settings.replicas.max(1),
        duplicate_window: Duration::from_secs(120),
        ..jetstream::stream::Config::default()
    })
    .await
    .map_err(|e| failed(e.to_string()))?;
    js.get_key_value(&settings.bucket)
        .await
        .map_err(|e| failed(e.to_string()))
}

/// A stored value's `asOf`.
pub(crate) fn as_of(value: &Value) -> Option<DateTime<Utc>> {
    let text = value.get("asOf")?.as_str()?;
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Whether two dashboards hold the same figures, whatever their `asOf`.
fn same_figures(a: &Value, b: &Value) -> bool {
    match (a.as_object(), b.as_object()) {
        (Some(a), Some(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(k, v)| k == "asOf" || b.get(k).is_some_and(|w| w == v))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_compared_without_as_of() {
        let a = serde_json::json!({"today": {"messagesReceived": 3}, "asOf": "2026-12-01T10:00:00.000Z"});
        let b = serde_json::json!({"today": {"messagesReceived": 3}, "asOf": "2026-12-01T10:01:00.000Z"});
        let c = serde_json::json!({"today": {"messagesReceived": 4}, "asOf": "2026-12-01T10:01:00.000Z"});
        assert!(same_figures(&a, &b));
        assert!(!same_figures(&a, &c));
        assert_eq!(
            as_of(&b).map(|t| t.to_rfc3339()),
            Some("2026-12-01T10:01:00+00:00".into())
        );
    }

    #[test]
    fn pending_properties_keep_their_earliest_commit_and_event() {
        let pending = PendingProperties::default();
        let at = EventTime::from_millis;
        pending.mark(&[
            ("a", Some(at(2_000))),
            ("b", Some(at(1_000))),
            ("bad.id", Some(at(0))),
        ]);
        // A later commit keeps the earlier timestamp and the earlier commit.
        pending.mark(&[("a", Some(at(5_000))), ("b", None)]);
        let first = pending.take();
        assert_eq!(first.len(), 2);
        assert_eq!(first["a"].earliest_event, Some(at(2_000)));
        assert_eq!(first["b"].earliest_event, Some(at(1_000)));
        assert!(pending.take().is_empty());
        let earlier = first["a"];
        pending.mark(&[("a", Some(at(9_000)))]);
        pending.put_back("a".into(), earlier);
        assert_eq!(pending.take()["a"], earlier);
        let refresh = Due {
            since: earlier.since,
            earliest_event: None,
        };
        assert_eq!(refresh.merge(earlier).earliest_event, Some(at(2_000)));
        assert_eq!(earlier.merge(refresh).earliest_event, Some(at(2_000)));
        assert_eq!(refresh.merge(refresh).earliest_event, None);
    }
}
