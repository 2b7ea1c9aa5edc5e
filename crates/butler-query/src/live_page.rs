//! The live page (`GET /live/<propertyId>`, `http.live_pages`): one self-contained
//! HTML page, and the feed it follows — server-sent events, each a change of the
//! property's key in the live dashboard bucket with today's and yesterday's messages
//! per local hour.
//!
//! Server-sent events rather than the page as a NATS WebSocket client: the browser
//! needs no NATS credentials, the NATS server no WebSocket listener, and the page
//! reaches exactly one key through the pipeline's own HTTP port, which any reverse
//! proxy with authentication can front.

use std::sync::Arc;

use async_nats::jetstream::{self, kv};
use butler_events::Zones;
use butler_events::calendar::start_of_local_date;
use butler_storage::Storage;
use chrono::{Days, Timelike, Utc};
use futures_util::{Stream, StreamExt};
use serde::Serialize;

use crate::admin::AggregationControl;
use crate::live::LiveError;
use crate::timeseries::{TimeseriesRequest, timeseries};

/// The page, served as it is: no build step, nothing fetched from elsewhere.
pub const PAGE_HTML: &str = include_str!("live_page.html");

/// One update of the feed.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedUpdate {
    /// The property has no live dashboard yet.
    Waiting,
    /// A new value: `{"dashboard": …, "hours": {"today": [24], "yesterday": [24]}}`.
    Dashboard(String),
}

/// Messages (received and sent) per local hour of today and yesterday.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HourlyMessages {
    /// Today's hours 0–23 (a DST day's repeated hour adds up in one slot).
    pub today: [f64; 24],
    /// Yesterday's.
    pub yesterday: [f64; 24],
}

/// What the feed reads: the bucket for the dashboards, the database for the hours.
pub struct LiveFeed {
    /// The database.
    pub storage: Storage,
    /// The zone of each property's local days.
    pub zones: Zones,
    /// For the real-time hours not materialized yet.
    pub aggregation: Arc<dyn AggregationControl>,
    /// The NATS connection the bucket is reached through.
    pub js: jetstream::Context,
    /// `dashboard.kv_bucket`.
    pub bucket: String,
}

impl LiveFeed {
    /// The updates of `property`'s key: its current value (or [`FeedUpdate::Waiting`]
    /// when it has none yet), then each new one, until the watch ends.
    ///
    /// # Errors
    /// When the bucket cannot be opened or watched.
    pub async fn follow(
        self: Arc<Self>,
        property: String,
    ) -> Result<impl Stream<Item = FeedUpdate> + Send + 'static, LiveError> {
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
            .map_err(|e| failed(e.to_string()))?;
        let watch = store
            .watch_with_history(&property)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let first = current.is_none().then_some(FeedUpdate::Waiting);
        let feed = self.clone();
        let updates = watch.filter_map(move |entry| {
            let (feed, property) = (feed.clone(), property.clone());
            async move {
                let entry = entry.ok()?;
                if entry.operation != kv::Operation::Put {
                    return None;
                }
                let dashboard: serde_json::Value = serde_json::from_slice(&entry.value).ok()?;
                let hours = feed.hourly_messages(&property).await;
                Some(FeedUpdate::Dashboard(
                    serde_json::json!({ "dashboard": dashboard, "hours": hours }).to_string(),
                ))
            }
        });
        Ok(futures_util::stream::iter(first).chain(updates))
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
