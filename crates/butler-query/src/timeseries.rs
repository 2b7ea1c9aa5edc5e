//! `analytics.query.timeseries`: one metric of the catalogue for one property.

use std::time::Instant;

use butler_events::Zones;
use butler_storage::Storage;
use butler_storage::queries::{SeriesPoint, SeriesQuery};
use serde::{Deserialize, Serialize};

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
}

/// Answers a time-series request.
///
/// # Errors
/// `bad_request` for anything malformed (named); `internal` when the database fails.
pub async fn timeseries(
    storage: &Storage,
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
    let points = storage
        .series(&SeriesQuery {
            table: metric.table,
            measure: metric.measure,
            dimensions: &dims,
            property_id: &request.property_id,
            from_key: &from_key,
            to_key: &to_key,
            per_period: true,
        })
        .await?
        .map_err(|e| QueryError::BadRequest(e.to_string()))?;
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
    metric: String,
    property_id: String,
    start_date: String,
}

/// The points, each an object of its period, value and dimension values.
#[derive(Debug)]
struct SeriesData {
    dimensions: Vec<String>,
    points: Vec<SeriesPoint>,
}

impl Serialize for SeriesData {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        // Keys in alphabetical order, the order these replies have always had.
        let mut order: Vec<(&str, Option<usize>)> = vec![("period", None), ("value", None)];
        order.extend(
            self.dimensions
                .iter()
                .enumerate()
                .map(|(i, d)| (d.as_str(), Some(i))),
        );
        order.sort_by(|a, b| a.0.cmp(b.0));
        let mut seq = serializer.serialize_seq(Some(self.points.len()))?;
        for p in &self.points {
            seq.serialize_element(&Point { p, order: &order })?;
        }
        seq.end()
    }
}

struct Point<'a> {
    p: &'a SeriesPoint,
    order: &'a [(&'a str, Option<usize>)],
}

impl Serialize for Point<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.order.len()))?;
        for (key, dimension) in self.order {
            match (dimension, *key) {
                (Some(i), _) => map.serialize_entry(key, &self.p.dimensions[*i])?,
                (None, "period") => map.serialize_entry(key, &self.p.period)?,
                (None, _) => map.serialize_entry(key, &self.p.value.filter(|v| v.is_finite()))?,
            }
        }
        map.end()
    }
}
