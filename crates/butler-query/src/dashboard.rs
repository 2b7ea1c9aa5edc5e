//! `analytics.query.dashboard`: the seed's `DashboardMetrics`, computed from the raw
//! events of the property's local day and the live state, cached per property.

use std::sync::Arc;
use std::time::Duration;

use butler_events::EventType as T;
use butler_events::Zones;
use butler_events::calendar::{local_instant, start_of_local_date};
use butler_events::formulas::{escalation_rate, percent_change};
use butler_storage::Storage;
use chrono::{DateTime, Days, SecondsFormat, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::window::Window;
use crate::{QueryError, QueryMetrics, check_property};

/// `{"propertyId", "asOf"?}`. `asOf` (RFC 3339) computes today and the comparison as
/// of that instant instead of now; live counts are always current.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DashboardRequest {
    /// The property.
    pub property_id: String,
    /// Another "now", for replaying a past dashboard.
    pub as_of: Option<String>,
}

/// Today's figures.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Today {
    /// Equal to `activeConversations`.
    pub conversations_active: i64,
    /// `conversation.resolved` today.
    pub conversations_resolved: i64,
    /// `message.received` today.
    pub messages_received: i64,
    /// `message.sent` today.
    pub messages_sent: i64,
    /// Mean `durationMs` of today's `response.time_recorded` (0 when none).
    pub avg_response_time_ms: f64,
    /// Escalated ÷ started today (0 when none started).
    pub escalation_rate: f64,
}

/// Today so far against yesterday up to the same local clock time, in percent.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Comparison {
    /// Conversations started.
    pub conversations_change: f64,
    /// Mean response time.
    pub response_time_change: f64,
    /// Mean rating.
    pub satisfaction_change: f64,
}

/// The seed's `DashboardMetrics`, plus `asOf`.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DashboardMetrics {
    /// Today's figures.
    pub today: Today,
    /// Against yesterday.
    pub comparison: Comparison,
    /// Conversations whose latest lifecycle event is started or escalated.
    pub active_conversations: i64,
    /// Staff online.
    pub staff_online: i64,
    /// Tasks created and not completed.
    pub pending_tasks: i64,
    /// When these figures were computed (RFC 3339).
    pub as_of: String,
}

/// Today so far and yesterday up to the same local clock time: the two windows the
/// dashboard compares.
async fn today_and_yesterday(
    storage: &Storage,
    tz: Tz,
    property: &str,
    now: DateTime<Utc>,
) -> Result<(Window, Window), QueryError> {
    let local_now = now.with_timezone(&tz);
    let today = local_now.date_naive();
    let yesterday = today - Days::new(1);
    let today_start = start_of_local_date(tz, today);
    let yesterday_start = start_of_local_date(tz, yesterday);
    let yesterday_same_time =
        local_instant(tz, yesterday, local_now.time()).clamp(yesterday_start, today_start);
    Ok(tokio::try_join!(
        Window::read(storage, property, today_start, now),
        Window::read(storage, property, yesterday_start, yesterday_same_time),
    )?)
}

/// The mean response time; `None` over no responses.
fn response_ms(w: &Window) -> Option<f64> {
    w.mean_duration_ms(T::ResponseTimeRecorded)
}

fn started(w: &Window) -> i64 {
    w.count(T::ConversationStarted)
}

/// Computes the dashboard of `property` as of `now`.
///
/// # Errors
/// `internal` when the database fails.
pub async fn compute(
    storage: &Storage,
    tz: Tz,
    property: &str,
    now: DateTime<Utc>,
) -> Result<DashboardMetrics, QueryError> {
    let ((t, y), live) =
        tokio::try_join!(today_and_yesterday(storage, tz, property, now), async {
            Ok(storage.live_counts(property).await?)
        },)?;
    // A mean over no events counts as 0 (CONTRACT §4).
    let response = |w: &Window| response_ms(w).unwrap_or(0.0);
    let rating = |w: &Window| w.ratings().mean().unwrap_or(0.0);
    Ok(DashboardMetrics {
        today: Today {
            conversations_active: live.active_conversations,
            conversations_resolved: t.count(T::ConversationResolved),
            messages_received: t.count(T::MessageReceived),
            messages_sent: t.count(T::MessageSent),
            avg_response_time_ms: response(&t),
            escalation_rate: escalation_rate(t.count(T::ConversationEscalated), started(&t)),
        },
        comparison: Comparison {
            conversations_change: percent_change(started(&t) as f64, started(&y) as f64),
            response_time_change: percent_change(response(&t), response(&y)),
            satisfaction_change: percent_change(rating(&t), rating(&y)),
        },
        active_conversations: live.active_conversations,
        staff_online: live.staff_online,
        pending_tasks: live.pending_tasks,
        as_of: now.to_rfc3339_opts(SecondsFormat::Millis, true),
    })
}

/// One side of the dashboard's comparison, with "none" kept apart from zero: what the
/// live page needs to show a score beside its change, and "no data" where a change
/// has nothing to compare with.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ComparedDay {
    /// `conversation.started`.
    pub conversations_started: i64,
    /// Mean `durationMs` of `response.time_recorded`; `None` when there was none.
    pub avg_response_time_ms: Option<f64>,
    /// Mean rating (1–5); `None` when there was none.
    pub satisfaction: Option<f64>,
}

/// The figures behind [`Comparison`]: today so far and yesterday up to the same
/// local clock time.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ComparedDays {
    /// Today so far.
    pub today: ComparedDay,
    /// Yesterday up to the same local clock time.
    pub yesterday: ComparedDay,
}

/// The figures behind the comparison of `property`'s dashboard as of `now`.
///
/// # Errors
/// `internal` when the database fails.
pub async fn compared_days(
    storage: &Storage,
    tz: Tz,
    property: &str,
    now: DateTime<Utc>,
) -> Result<ComparedDays, QueryError> {
    let (t, y) = today_and_yesterday(storage, tz, property, now).await?;
    let day = |w: &Window| ComparedDay {
        conversations_started: started(w),
        avg_response_time_ms: response_ms(w),
        satisfaction: w.ratings().mean(),
    };
    Ok(ComparedDays {
        today: day(&t),
        yesterday: day(&y),
    })
}

/// A cache key: the property and the `asOf` asked, if any.
type CacheKey = (String, Option<String>);

/// The cache itself, built for one TTL.
type Replies = moka::future::Cache<CacheKey, Arc<DashboardMetrics>>;

/// Dashboard replies by (property, asOf), each served for the configured TTL. Every
/// clone shares one cache, which a config reload replaces ([`DashboardCache::set_ttl`]).
#[derive(Clone)]
pub struct DashboardCache {
    cache: Arc<std::sync::RwLock<Option<Replies>>>,
}

impl DashboardCache {
    /// Keeps `dashboard` as the reply to a request for `property` without `asOf`,
    /// unless a reply computed later is there already.
    pub async fn offer(&self, property: &str, dashboard: DashboardMetrics) {
        let Some(cache) = self.current() else {
            return;
        };
        let key = (property.to_owned(), None);
        if let Some(kept) = cache.get(&key).await
            && kept.as_of >= dashboard.as_of
        {
            return;
        }
        cache.insert(key, Arc::new(dashboard)).await;
    }

    /// A cache keeping replies for `ttl`; `None` disables caching.
    pub fn new(ttl: Option<Duration>) -> DashboardCache {
        DashboardCache {
            cache: Arc::new(std::sync::RwLock::new(Self::build(ttl))),
        }
    }

    /// Keeps replies for `ttl` from now on (`None`: caching off). The replies kept so
    /// far are dropped: each was kept for the old TTL.
    pub fn set_ttl(&self, ttl: Option<Duration>) {
        if let Ok(mut cache) = self.cache.write() {
            *cache = Self::build(ttl);
        }
    }

    fn build(ttl: Option<Duration>) -> Option<Replies> {
        ttl.map(|ttl| {
            moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ttl)
                .build()
        })
    }

    /// The cache as it is now (a handle sharing its entries), or `None` when off.
    fn current(&self) -> Option<Replies> {
        self.cache.read().ok().and_then(|cache| cache.clone())
    }
}

/// Answers a dashboard request, from the cache when a fresh reply is there; requests
/// that miss together wait for one computation.
///
/// # Errors
/// `bad_request` for a bad property or `asOf`; `internal` when the database fails.
pub async fn dashboard(
    storage: &Storage,
    cache: &DashboardCache,
    metrics: &QueryMetrics,
    zones: &Zones,
    request: DashboardRequest,
) -> Result<Arc<DashboardMetrics>, QueryError> {
    check_property(&request.property_id)?;
    let now = match &request.as_of {
        None => Utc::now(),
        Some(t) => DateTime::parse_from_rfc3339(t)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| QueryError::BadRequest(format!("asOf {t:?} is not an RFC 3339 time")))?,
    };
    let tz = zones.of(&request.property_id);
    let Some(cache) = cache.current() else {
        return Ok(Arc::new(
            compute(storage, tz, &request.property_id, now).await?,
        ));
    };
    let key = (request.property_id.clone(), request.as_of.clone());
    // Concurrent misses of one key share one computation: the first computes, the
    // others wait for its reply.
    let computed = std::sync::atomic::AtomicBool::new(false);
    let reply = cache
        .try_get_with(key, async {
            computed.store(true, std::sync::atomic::Ordering::Relaxed);
            compute(storage, tz, &request.property_id, now)
                .await
                .map(Arc::new)
        })
        .await
        .map_err(|e| (*e).clone());
    if computed.load(std::sync::atomic::Ordering::Relaxed) {
        metrics.cache_miss();
    } else {
        metrics.cache_hit();
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;
    use butler_storage::StorageOptions;

    /// Requests that miss together are answered by one computation.
    #[tokio::test]
    async fn concurrent_misses_share_one_computation() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(&StorageOptions::new(dir.path().join("a.db")))
            .await
            .unwrap();
        let registry = prometheus::Registry::new();
        let metrics = QueryMetrics::register(&registry).unwrap();
        let cache = DashboardCache::new(Some(Duration::from_secs(60)));
        let zones = Zones::default();
        let ask = || {
            dashboard(
                &storage,
                &cache,
                &metrics,
                &zones,
                DashboardRequest {
                    property_id: "p".into(),
                    as_of: Some("2026-11-25T12:00:00Z".into()),
                },
            )
        };
        let replies = futures_util::future::join_all((0..16).map(|_| ask())).await;
        assert!(
            replies
                .iter()
                .all(|r| r.as_ref().ok() == replies[0].as_ref().ok())
        );
        let count = |result: &str| {
            registry
                .gather()
                .iter()
                .find(|f| f.name() == "butler_analytics_query_cache_requests_total")
                .and_then(|f| {
                    f.get_metric()
                        .iter()
                        .find(|m| m.get_label()[0].value() == result)
                        .map(|m| m.get_counter().get_value())
                })
                .unwrap()
        };
        assert_eq!((count("miss"), count("hit")), (1.0, 15.0));

        // A reload turning the cache off: every clone computes each request again.
        let shared = cache.clone();
        shared.set_ttl(None);
        let _ = ask().await;
        let _ = ask().await;
        assert_eq!(
            (count("miss"), count("hit")),
            (1.0, 15.0),
            "no cache, no count"
        );
        assert!(cache.current().is_none());
        // And on again, with a new TTL: a miss, then a hit.
        shared.set_ttl(Some(Duration::from_secs(5)));
        let _ = ask().await;
        let _ = ask().await;
        assert_eq!((count("miss"), count("hit")), (2.0, 16.0));
        storage.close().await;
    }
}
