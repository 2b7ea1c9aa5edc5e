//! One property's events over a time window, as the hour tallies give them: what the
//! dashboard's today and yesterday, and the report's summary and satisfaction
//! sections, count and average.

use std::collections::BTreeMap;

use butler_events::formulas::{Ratings, ratio};
use butler_events::{EventTime, EventType};
use butler_storage::tallies::Tally;
use butler_storage::{Storage, StorageError};
use chrono::{DateTime, Utc};

/// The tallies of a window, per event type (and channel, for the satisfaction types).
#[derive(Debug, Clone, Default)]
pub struct Window {
    tallies: Vec<Tally>,
}

/// A channel's satisfaction over a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelSatisfaction {
    /// `satisfaction.survey_sent`.
    pub surveys_sent: i64,
    /// `satisfaction.rating_received`, by value.
    pub ratings: Ratings,
}

impl Window {
    /// The events of `property` in `[start, end)`.
    ///
    /// # Errors
    /// Any database error.
    pub async fn read(
        storage: &Storage,
        property: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Window, StorageError> {
        let tallies = storage
            .tallies(
                property,
                EventTime::from_datetime(&start),
                EventTime::from_datetime(&end),
            )
            .await?;
        Ok(Window { tallies })
    }

    fn of(&self, event_type: EventType) -> impl Iterator<Item = &Tally> {
        self.tallies
            .iter()
            .filter(move |t| t.event_type == event_type)
    }

    /// How many events of `event_type`.
    pub fn count(&self, event_type: EventType) -> i64 {
        self.of(event_type).map(|t| t.events).sum()
    }

    /// The mean `durationMs` of the events of `event_type` that carry one.
    pub fn mean_duration_ms(&self, event_type: EventType) -> Option<f64> {
        let (sum, n) = self.of(event_type).fold((0, 0), |(s, n), t| {
            (s + t.duration_sum, n + t.duration_count)
        });
        ratio(sum as f64, n)
    }

    /// Every rating, over all channels.
    pub fn ratings(&self) -> Ratings {
        let mut all = Ratings::default();
        for t in self.of(EventType::SatisfactionRatingReceived) {
            all.merge(t.ratings);
        }
        all
    }

    /// Surveys and ratings per channel (`unknown` for none), in channel order.
    pub fn satisfaction_by_channel(&self) -> BTreeMap<&str, ChannelSatisfaction> {
        let mut by_channel: BTreeMap<&str, ChannelSatisfaction> = BTreeMap::new();
        for t in &self.tallies {
            match t.event_type {
                EventType::SatisfactionSurveySent => {
                    by_channel.entry(&t.channel).or_default().surveys_sent += t.events;
                }
                EventType::SatisfactionRatingReceived => {
                    by_channel
                        .entry(&t.channel)
                        .or_default()
                        .ratings
                        .merge(t.ratings);
                }
                _ => {}
            }
        }
        by_channel
    }
}
