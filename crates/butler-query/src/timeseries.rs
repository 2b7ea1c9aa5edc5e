//! `analytics.query.timeseries`: one metric of the catalogue for one property, real
//! time (CONTRACT §7): the periods its table holds as they stand come from the table,
//! the others (the open period, periods waiting for their job) are computed from the
//! raw events by the job's own definitions and marked `"partial": true`.

use std::collections::BTreeSet;
use std::time::Instant;

use butler_events::Zones;
use butler_storage::Storage;
use butler_storage::queries::{SeriesPoint, SeriesQuery};
use serde::{Deserialize, Serialize};

use crate::admin::AggregationControl;
use crate::catalogue::{self, parse_granularity};
use crate::{QueryError, check_property, request_range};

/// `{"metric","granularity","startDate","endDate","propertyId","dimensions"?}`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TimeseriesRequest {
    /// `<table>.<column>`, or a bare column unique at the granularity.
    pub metric: String,
    /// `hour|day|week|month`: the metric's table's.
    pub granularity: String,
    /// Start of the range; every period overlapping `[startDate, endDate)` is included.
    pub start_date: String,
    /// End of the range (exclusive).
    pub end_date: String,
    /// The property.
    pub property_id: String,
    /// Key columns to group by.
    #[serde(default)]
    pub dimensions: Vec<String>,
    /// Only what the table holds: no partial periods.
    #[serde(default)]
    pub materialized_only: bool,
}

/// Answers a time-series request.
///
/// # Errors
/// `bad_request` for anything malformed (named); `internal` when the database fails.
pub async fn timeseries(
    storage: &Storage,
    aggregation: &dyn AggregationControl,
    zones: &Zones,
    request: TimeseriesRequest,
) -> Result<TimeseriesReply, QueryError> {
    let started = Instant::now();
    check_property(&request.property_id)?;
    let granularity = parse_granularity(&request.granularity)?;
    let metric = catalogue::resolve(&request.metric, granularity)?;
    catalogue::check_dimensions(metric, &request.dimensions)?;
    let tz = zones.of(&request.property_id);
    let (from, to) = request_range(
        &request.start_date,
        &request.end_date,
        tz,
        ("startDate", "endDate"),
    )?;
    let (from_key, to_key) = granularity.key_range(tz, from, to);
    let dims: Vec<&str> = request.dimensions.iter().map(String::as_str).collect();
    let query = SeriesQuery {
        table: metric.table,
        measure: metric.measure,
        dimensions: &dims,
        property_id: &request.property_id,
        from_key: &from_key,
        to_key: &to_key,
        per_period: true,
    };
    let bad = |e: butler_storage::queries::SeriesError| QueryError::BadRequest(e.to_string());
    let stored = storage.series(&query).await?.map_err(bad)?;
    let mut points: Vec<Point> = Vec::with_capacity(stored.len());
    if request.materialized_only {
        points.extend(stored.into_iter().map(Point::stored));
    } else {
        let live = aggregation
            .unmaterialized(metric.table.job, &request.property_id, from, to)
            .await?;
        let recomputed: BTreeSet<&str> = live.iter().map(|(key, _)| key.as_str()).collect();
        points.extend(
            stored
                .into_iter()
                .filter(|p| !recomputed.contains(p.period.as_str()))
                .map(Point::stored),
        );
        for (_, rows) in &live {
            points.extend(
                query
                    .points_of(rows)
                    .map_err(bad)?
                    .into_iter()
                    .map(|p| Point { p, partial: true }),
            );
        }
        points.sort_by(|a, b| (&a.p.period, &a.p.dimensions).cmp(&(&b.p.period, &b.p.dimensions)));
    }
    let row_count = points.len();
    Ok(TimeseriesReply {
        data: SeriesData {
            dimensions: dims.iter().map(|d| (*d).to_owned()).collect(),
            points,
        },
        metadata: Metadata {
            query_time_ms: started.elapsed().as_secs_f64() * 1000.0,
            row_count,
        },
        query: Echo {
            dimensions: request.dimensions,
            end_date: request.end_date,
            granularity: granularity.as_str(),
            materialized_only: request.materialized_only,
            metric: metric.name.clone(),
            property_id: request.property_id,
            start_date: request.start_date,
        },
    })
}

/// The reply: `{"data":[{"period","value",<dimension>…}],"metadata","query"}`,
/// serialized straight from the rows (a year of days is hundreds of points).
#[derive(Debug, Serialize)]
pub struct TimeseriesReply {
    data: SeriesData,
    metadata: Metadata,
    query: Echo,
}

impl TimeseriesReply {
    /// Each point's period and value, in order.
    pub fn points(&self) -> impl Iterator<Item = (&str, Option<f64>)> {
        self.data
            .points
            .iter()
            .map(|p| (p.p.period.as_str(), p.p.value))
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    query_time_ms: f64,
    row_count: usize,
}

/// The request as understood, with the metric's full name.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Echo {
    dimensions: Vec<String>,
    end_date: String,
    granularity: &'static str,
    materialized_only: bool,
    metric: String,
    property_id: String,
    start_date: String,
}

/// A point of the reply: from the table, or computed because the table does not
/// hold its period as it stands yet.
#[derive(Debug)]
struct Point {
    p: SeriesPoint,
    partial: bool,
}

impl Point {
    fn stored(p: SeriesPoint) -> Point {
        Point { p, partial: false }
    }
}

/// The points, each an object of its period, value and dimension values, and
/// `"partial": true` when computed.
#[derive(Debug)]
struct SeriesData {
    dimensions: Vec<String>,
    points: Vec<Point>,
}

impl Serialize for SeriesData {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        // Keys in alphabetical order, the order these replies have always had.
        let mut order: Vec<(&str, Option<usize>)> =
            vec![("partial", None), ("period", None), ("value", None)];
        order.extend(
            self.dimensions
                .iter()
                .enumerate()
                .map(|(i, d)| (d.as_str(), Some(i))),
        );
        order.sort_by(|a, b| a.0.cmp(b.0));
        let mut seq = serializer.serialize_seq(Some(self.points.len()))?;
        for p in &self.points {
            seq.serialize_element(&PointFields { p, order: &order })?;
        }
        seq.end()
    }
}

struct PointFields<'a> {
    p: &'a Point,
    order: &'a [(&'a str, Option<usize>)],
}

impl Serialize for PointFields<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let len = self.order.len() - usize::from(!self.p.partial);
        let mut map = serializer.serialize_map(Some(len))?;
        let point = &self.p.p;
        for (key, dimension) in self.order {
            match (dimension, *key) {
                (None, "partial") if !self.p.partial => {}
                (None, "partial") => map.serialize_entry(key, &true)?,
                (Some(i), _) => map.serialize_entry(key, &point.dimensions[*i])?,
                (None, "period") => map.serialize_entry(key, &point.period)?,
                (None, _) => map.serialize_entry(key, &point.value.filter(|v| v.is_finite()))?,
            }
        }
        map.end()
    }
}
