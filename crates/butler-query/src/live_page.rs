//! The live page (`GET /live/<propertyId>`, `http.live_pages`): one self-contained
//! HTML page, and the feed it follows — server-sent events: the property's current
//! live dashboard, then each new one published on its live subject, each with the
//! figures behind its comparison and today's and yesterday's messages per local hour,
//! and a heartbeat so the page knows the connection is alive while figures stand still.
//!
//! Server-sent events rather than the page as a NATS WebSocket client: the browser
//! needs no NATS credentials, the NATS server no WebSocket listener, and the page
//! reaches exactly one property through the pipeline's own HTTP port, which any
//! reverse proxy with authentication can front. The feed reads the bucket once (a
//! direct get) and then plainly subscribes: no consumer to create, so it works under
//! the pipeline's least-privilege permissions.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use butler_events::Zones;
use butler_events::calendar::start_of_local_date;
use butler_storage::Storage;
use chrono::{DateTime, Days, SecondsFormat, Timelike, Utc};
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use serde_json::Value;

use crate::admin::AggregationControl;
use crate::dashboard::compared_days;
use crate::live::{LiveError, as_of};
use crate::scoped::live_subject;
use crate::timeseries::{TimeseriesRequest, timeseries};

/// The page, served as it is: no build step, nothing fetched from elsewhere.
pub const PAGE_HTML: &str = include_str!("live_page.html");

/// How often the feed says it is alive when no new figures come; the page counts a
/// connection silent for three of these as lost.
pub const HEARTBEAT: Duration = Duration::from_secs(5);

/// One update of the feed.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedUpdate {
    /// The property has no live dashboard: no events in the last three days.
    Waiting,
    /// A new value: `{"dashboard": …, "days": {"today": …, "yesterday": …}, "hours":
    /// {"today": [24], "yesterday": [24]}}`.
    Dashboard(String),
    /// The server is alive: `{"serverTime": …}`.
    Heartbeat(String),
}

/// Messages (received and sent) per local hour of today and yesterday.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HourlyMessages {
    /// Today's hours 0–23 (a DST day's repeated hour adds up in one slot).
    pub today: [f64; 24],
    /// Yesterday's.
    pub yesterday: [f64; 24],
}

/// What the feed reads: the bucket and the live subjects for the dashboards, the
/// database for the figures around them.
pub struct LiveFeed {
    /// The database.
    pub storage: Storage,
    /// The zone of each property's local days.
    pub zones: Zones,
    /// For the real-time hours not materialized yet.
    pub aggregation: Arc<dyn AggregationControl>,
    /// The NATS connection the bucket is reached through.
    pub js: jetstream::Context,
    /// The same connection, for the live subjects.
    pub nats: async_nats::Client,
    /// `dashboard.kv_bucket`.
    pub bucket: String,
}

/// A feed being followed.
struct Following {
    feed: Arc<LiveFeed>,
    property: String,
    first: Option<FeedUpdate>,
    values: async_nats::Subscriber,
    heartbeat: tokio::time::Interval,
    newest: Option<DateTime<Utc>>,
}

impl LiveFeed {
    /// The updates of `property`: its current value (or [`FeedUpdate::Waiting`] when it
    /// has none), then each newer one and a heartbeat every [`HEARTBEAT`], until the
    /// subscription ends.
    ///
    /// # Errors
    /// When the live subject cannot be subscribed to or the bucket cannot be read.
    pub async fn follow(
        self: Arc<Self>,
        property: String,
    ) -> Result<impl Stream<Item = FeedUpdate> + Send + 'static, LiveError> {
        let subject = live_subject(&property);
        // Subscribed before the current value is read, so no value falls between.
        let values =
            self.nats
                .subscribe(subject.clone())
                .await
                .map_err(|e| LiveError::Subject {
                    subject,
                    reason: e.to_string(),
                })?;
        let failed = |reason: String| LiveError::Bucket {
            bucket: self.bucket.clone(),
            reason,
        };
        let store = self
            .js
            .get_key_value(&self.bucket)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let current = store
            .get(&property)
            .await
            .map_err(|e| failed(e.to_string()))?
            .and_then(|value| serde_json::from_slice::<Value>(&value).ok());
        let newest = current.as_ref().and_then(as_of);
        let first = match current {
            Some(dashboard) => self.update(&property, dashboard).await,
            None => FeedUpdate::Waiting,
        };
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.reset();
        let following = Following {
            feed: self,
            property,
            first: Some(first),
            values,
            heartbeat,
            newest,
        };
        Ok(futures_util::stream::unfold(following, next_update))
    }

    /// A dashboard with the figures the page shows around it.
    async fn update(&self, property: &str, dashboard: Value) -> FeedUpdate {
        let tz = self.zones.of(property);
        let at = as_of(&dashboard).unwrap_or_else(Utc::now);
        let (hours, days) = tokio::join!(
            self.hourly_messages(property),
            compared_days(&self.storage, tz, property, at),
        );
        let days = days
            .map_err(|e| tracing::debug!(property, error = %e, "live page: days not read"))
            .ok();
        FeedUpdate::Dashboard(
            serde_json::json!({ "dashboard": dashboard, "days": days, "hours": hours }).to_string(),
        )
    }

    /// Today's and yesterday's messages per local hour, from the real-time hourly
    /// series (the open hour included); `None` when it cannot be read.
    async fn hourly_messages(&self, property: &str) -> Option<HourlyMessages> {
        let tz = self.zones.of(property);
        let today = Utc::now().with_timezone(&tz).date_naive();
        let yesterday = today - Days::new(1);
        let request = TimeseriesRequest {
            metric: "message_counts.count".into(),
            granularity: "hour".into(),
            start_date: yesterday.to_string(),
            end_date: (today + Days::new(1)).to_string(),
            property_id: property.to_owned(),
            dimensions: Vec::new(),
            materialized_only: false,
        };
        let reply = timeseries(&self.storage, &*self.aggregation, &self.zones, request)
            .await
            .map_err(|e| tracing::debug!(property, error = %e, "live page: hours not read"))
            .ok()?;
        let mut hours = HourlyMessages {
            today: [0.0; 24],
            yesterday: [0.0; 24],
        };
        let today_start = start_of_local_date(tz, today);
        for (period, value) in reply.points() {
            let Ok(start) = chrono::DateTime::parse_from_rfc3339(period) else {
                continue;
            };
            let local = start.with_timezone(&tz);
            let slot = local.hour() as usize;
            let day = if start >= today_start {
                &mut hours.today
            } else {
                &mut hours.yesterday
            };
            if let Some(cell) = day.get_mut(slot) {
                *cell += value.unwrap_or(0.0);
            }
        }
        Some(hours)
    }
}

/// The next update of a followed feed: the first value, a newer value from the live
/// subject (an older one, crossed with the first read, is dropped), or a heartbeat.
async fn next_update(mut following: Following) -> Option<(FeedUpdate, Following)> {
    if let Some(first) = following.first.take() {
        return Some((first, following));
    }
    loop {
        tokio::select! {
            message = following.values.next() => {
                let message = message?;
                let Ok(dashboard) = serde_json::from_slice::<Value>(&message.payload) else {
                    continue;
                };
                let at = as_of(&dashboard);
                if at <= following.newest {
                    continue;
                }
                following.newest = at;
                let update = following.feed.update(&following.property, dashboard).await;
                return Some((update, following));
            }
            _ = following.heartbeat.tick() => {
                let now = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
                let beat = serde_json::json!({ "serverTime": now }).to_string();
                return Some((FeedUpdate::Heartbeat(beat), following));
            }
        }
    }
}
