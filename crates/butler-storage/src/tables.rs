//! The aggregate tables of CONTRACT §3, each declared once: its name, granularity,
//! period column, key dimensions, the job that writes it, and each measure with how it
//! combines across the dimensions a request leaves out.
//!
//! From a declaration come the row type the roll-up fills ([`AggRow`]), the INSERT that
//! stores it, retention (by granularity and period column), the time-series catalogue
//! (metric names, combinations, dimensions), the measures report sections read, and
//! the schema test that holds each declaration equal to the migrations. Adding a
//! measure column is: the migration, one line here, and the roll-up that computes it.

use butler_events::Granularity;

/// How the rows of a bucket combine when fewer dimensions are asked for than the
/// table is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combine {
    /// Counts add up.
    Sum,
    /// An average, weighted by the named count column of the same row.
    WeightedBy(&'static str),
    /// The largest value.
    Max,
    /// The mean rating, recomputed from the `rating_1..rating_5` counts.
    MeanOfRatings,
    /// The NPS, recomputed from the `rating_1..rating_5` counts.
    NpsOfRatings,
    /// A derived rate, never stored: the sum of the first count column over the sum
    /// of the second, recomputed wherever rows combine (never an average of rates);
    /// undefined over a zero denominator.
    RatioOfSums(&'static str, &'static str),
    /// A percentile, or an average whose weight is not stored: only meaningful
    /// grouped by every dimension of its table.
    NotCombinable,
}

impl Combine {
    /// The combination's name in the metric catalogue.
    pub fn name(self) -> &'static str {
        match self {
            Combine::Sum => "sum",
            Combine::WeightedBy(_) => "weighted_average",
            Combine::Max => "max",
            Combine::MeanOfRatings => "mean_of_rating_counts",
            Combine::NpsOfRatings => "nps_of_rating_counts",
            Combine::RatioOfSums(..) => "ratio_of_sums",
            Combine::NotCombinable => "as_stored",
        }
    }
}

/// What a measure column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A count, or an average or percentile rounded to a whole number.
    Integer,
    /// A fraction, an average or a score.
    Real,
    /// A JSON document (the monthly summary's top intents and channels); not a
    /// metric.
    Json,
}

/// One measure column of an aggregate table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measure {
    /// The column.
    pub column: &'static str,
    /// What it holds.
    pub kind: Kind,
    /// How it combines across dimensions.
    pub combine: Combine,
}

impl Measure {
    /// Its label in reports: the column in camelCase (`conversations_started` →
    /// `conversationsStarted`).
    pub fn label(&self) -> String {
        let mut out = String::with_capacity(self.column.len());
        let mut upper = false;
        for c in self.column.chars() {
            if c == '_' {
                upper = true;
            } else if upper {
                out.extend(c.to_uppercase());
                upper = false;
            } else {
                out.push(c);
            }
        }
        out
    }

    /// Whether it is a number, and so a metric of the catalogue.
    pub fn is_numeric(&self) -> bool {
        self.kind != Kind::Json
    }
}

/// An aggregate table.
#[derive(Debug, PartialEq, Eq)]
pub struct AggTable {
    /// The SQL table.
    pub name: &'static str,
    /// The table part of its metric names: without `agg_` and its granularity.
    pub metric_prefix: &'static str,
    /// The seed's name of the job that writes it.
    pub job: &'static str,
    /// The width of its buckets.
    pub granularity: Granularity,
    /// The column holding each row's period key.
    pub period_column: &'static str,
    /// Key columns other than period and property, in key order.
    pub dimensions: &'static [&'static str],
    /// The other columns, in table order.
    pub measures: &'static [Measure],
    /// Rates derived from its count columns ([`Combine::RatioOfSums`]): metrics of
    /// the catalogue, not columns.
    pub rates: &'static [Measure],
}

impl AggTable {
    /// The measure `column`. In a `const`, a name that is not a measure of the table
    /// stops the build.
    ///
    /// # Panics
    /// When `column` is not one of its measures.
    pub const fn measure(&'static self, column: &str) -> &'static Measure {
        let mut i = 0;
        while i < self.measures.len() {
            if same(self.measures[i].column, column) {
                return &self.measures[i];
            }
            i += 1;
        }
        panic!("not a measure column of this table")
    }

    /// The measure `column`, if it is one.
    pub fn find_measure(&self, column: &str) -> Option<&'static Measure> {
        self.measures.iter().find(|m| m.column == column)
    }

    /// What a series may read of it: its numeric measures, then its derived rates.
    pub fn metrics(&self) -> impl Iterator<Item = &'static Measure> {
        self.measures
            .iter()
            .filter(|m| m.is_numeric())
            .chain(self.rates.iter())
    }

    /// The metric named `name` (a numeric measure or a rate), if it is one.
    pub fn find_metric(&self, name: &str) -> Option<&'static Measure> {
        self.metrics().find(|m| m.column == name)
    }

    /// Every column, in table order: period, `property_id`, dimensions, measures.
    pub fn columns(&self) -> impl Iterator<Item = &'static str> {
        [self.period_column, "property_id"]
            .into_iter()
            .chain(self.dimensions.iter().copied())
            .chain(self.measures.iter().map(|m| m.column))
    }
}

/// Whether two strings are equal, in a `const`.
const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// A value of an aggregate row, as it is bound to its column.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Period, property, dimension, or JSON text.
    Text(String),
    /// An INTEGER column.
    Integer(Option<i64>),
    /// A REAL column.
    Real(Option<f64>),
}

impl Cell {
    /// A numeric cell's value; `None` for text and nulls.
    pub fn number(&self) -> Option<f64> {
        match self {
            Cell::Integer(v) => v.map(|v| v as f64),
            Cell::Real(v) => *v,
            Cell::Text(_) => None,
        }
    }
}

/// JSON text stored in a column.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JsonText(pub String);

/// The Rust types a measure field may have, and the kind of column each one fills.
pub trait ColumnType: Into<Cell> {
    /// The kind of column.
    const KIND: Kind;
}

impl From<String> for Cell {
    fn from(v: String) -> Cell {
        Cell::Text(v)
    }
}
impl From<JsonText> for Cell {
    fn from(v: JsonText) -> Cell {
        Cell::Text(v.0)
    }
}
impl From<i64> for Cell {
    fn from(v: i64) -> Cell {
        Cell::Integer(Some(v))
    }
}
impl From<Option<i64>> for Cell {
    fn from(v: Option<i64>) -> Cell {
        Cell::Integer(v)
    }
}
impl From<Option<f64>> for Cell {
    fn from(v: Option<f64>) -> Cell {
        Cell::Real(v)
    }
}
impl ColumnType for i64 {
    const KIND: Kind = Kind::Integer;
}
impl ColumnType for Option<i64> {
    const KIND: Kind = Kind::Integer;
}
impl ColumnType for Option<f64> {
    const KIND: Kind = Kind::Real;
}
impl ColumnType for JsonText {
    const KIND: Kind = Kind::Json;
}

/// A row of an aggregate table, as a roll-up computes it.
pub trait AggRow {
    /// Its table.
    const TABLE: &'static AggTable;
    /// Its values, in [`AggTable::columns`] order.
    fn into_cells(self) -> Vec<Cell>;
}

/// Declares each table: its row type, its [`AggTable`], and the one from the other.
macro_rules! aggregate_tables {
    ($(
        $(#[$doc:meta])*
        $TABLE:ident: $Row:ident {
            table $name:literal, metric $prefix:literal, job $job:literal,
            $granularity:ident by $period:ident,
            dimensions [$($dimension:ident),*],
            measures { $($column:ident: $ty:ty => $combine:expr),* $(,)? }
            $(rates { $($rate:ident = $numerator:ident / $denominator:ident),* $(,)? })?
        }
    )*) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, PartialEq, Default)]
            #[allow(missing_docs)]
            pub struct $Row {
                pub $period: String,
                pub property_id: String,
                $(pub $dimension: String,)*
                $(pub $column: $ty,)*
            }

            #[doc = concat!("`", $name, "`, written by `", $job, "`.")]
            pub static $TABLE: AggTable = AggTable {
                name: $name,
                metric_prefix: $prefix,
                job: $job,
                granularity: Granularity::$granularity,
                period_column: stringify!($period),
                dimensions: &[$(stringify!($dimension)),*],
                measures: &[$(Measure {
                    column: stringify!($column),
                    kind: <$ty as ColumnType>::KIND,
                    combine: $combine,
                }),*],
                rates: &[$($(Measure {
                    column: stringify!($rate),
                    kind: Kind::Real,
                    combine: RatioOfSums(stringify!($numerator), stringify!($denominator)),
                }),*)?],
            };

            impl AggRow for $Row {
                const TABLE: &'static AggTable = &$TABLE;
                fn into_cells(self) -> Vec<Cell> {
                    vec![
                        Cell::from(self.$period),
                        Cell::from(self.property_id),
                        $(Cell::from(self.$dimension),)*
                        $(Cell::from(self.$column),)*
                    ]
                }
            }
        )*

        /// Every aggregate table, in the order of its job's schedule.
        pub static AGG_TABLES: &[&AggTable] = &[$(&$TABLE),*];
    };
}

use Combine::*;

aggregate_tables! {
    /// Hourly message counts (seed).
    MESSAGE_COUNTS_HOURLY: MessageCountRow {
        table "agg_message_counts_hourly", metric "message_counts", job "hourly_message_counts",
        Hour by period_start,
        dimensions [channel, direction],
        measures {
            count: i64 => Sum,
        }
    }

    /// Hourly response times (added: the seed's `hourly_response_times` job had no
    /// table).
    RESPONSE_TIMES_HOURLY: ResponseTimeRow {
        table "agg_response_times_hourly", metric "response_times", job "hourly_response_times",
        Hour by period_start,
        dimensions [channel],
        measures {
            count: i64 => Sum,
            avg_ms: Option<i64> => WeightedBy("count"),
            p50_ms: Option<i64> => NotCombinable,
            p95_ms: Option<i64> => NotCombinable,
            p99_ms: Option<i64> => NotCombinable,
            max_ms: Option<i64> => Max,
        }
    }

    /// Daily conversation metrics (seed), with §8's business-time and automation
    /// columns.
    CONVERSATION_METRICS_DAILY: ConversationMetricsRow {
        table "agg_conversation_metrics_daily", metric "conversation_metrics",
        job "daily_conversation_metrics",
        Day by period_date,
        dimensions [channel],
        measures {
            conversations_started: i64 => Sum,
            conversations_resolved: i64 => Sum,
            conversations_escalated: i64 => Sum,
            avg_first_response_ms: Option<i64> => NotCombinable,
            p50_first_response_ms: Option<i64> => NotCombinable,
            p95_first_response_ms: Option<i64> => NotCombinable,
            avg_resolution_minutes: Option<i64> => NotCombinable,
            p50_resolution_minutes: Option<i64> => NotCombinable,
            p95_resolution_minutes: Option<i64> => NotCombinable,
            ai_handled_count: i64 => Sum,
            ai_escalated_count: i64 => Sum,
            conversations_active: i64 => Sum,
            first_responses: i64 => Sum,
            avg_first_response_business_ms: Option<i64> => WeightedBy("first_responses"),
            p50_first_response_business_ms: Option<i64> => NotCombinable,
            p95_first_response_business_ms: Option<i64> => NotCombinable,
            first_response_sla_met: i64 => Sum,
            resolutions_timed: i64 => Sum,
            avg_resolution_business_minutes: Option<i64> => WeightedBy("resolutions_timed"),
            ai_resolved_count: i64 => Sum,
        }
        rates {
            ai_involvement_rate = ai_handled_count / conversations_active,
            automation_rate = ai_resolved_count / conversations_active,
            first_response_sla_rate = first_response_sla_met / first_responses,
        }
    }

    /// Daily staff performance (seed).
    STAFF_PERFORMANCE_DAILY: StaffPerformanceRow {
        table "agg_staff_performance_daily", metric "staff_performance",
        job "daily_staff_performance",
        Day by period_date,
        dimensions [staff_id],
        measures {
            conversations_handled: i64 => Sum,
            tasks_completed: i64 => Sum,
            avg_response_time_ms: Option<i64> => NotCombinable,
            satisfaction_avg: Option<f64> => WeightedBy("satisfaction_count"),
            satisfaction_count: i64 => Sum,
        }
    }

    /// Daily intent distribution (seed), with §8's knowledge gaps.
    INTENT_DISTRIBUTION_DAILY: IntentDistributionRow {
        table "agg_intent_distribution_daily", metric "intent_distribution",
        job "daily_intent_distribution",
        Day by period_date,
        dimensions [intent],
        measures {
            count: i64 => Sum,
            avg_confidence: Option<f64> => NotCombinable,
            action_taken_count: i64 => Sum,
            escalated_count: i64 => Sum,
            low_confidence_count: i64 => Sum,
            feedback_count: i64 => Sum,
        }
        rates {
            low_confidence_rate = low_confidence_count / count,
        }
    }

    /// Daily message delivery per channel (CONTRACT §8).
    CHANNEL_DELIVERY_DAILY: ChannelDeliveryRow {
        table "agg_channel_delivery_daily", metric "channel_delivery",
        job "daily_channel_delivery",
        Day by period_date,
        dimensions [channel],
        measures {
            sent: i64 => Sum,
            delivered: i64 => Sum,
            read: i64 => Sum,
            failed: i64 => Sum,
        }
        rates {
            delivery_rate = delivered / sent,
            read_rate = read / delivered,
            failure_rate = failed / sent,
        }
    }

    /// Daily task performance (CONTRACT §8): completion times from each task's
    /// earliest creation.
    TASK_PERFORMANCE_DAILY: TaskPerformanceRow {
        table "agg_task_performance_daily", metric "task_performance",
        job "daily_task_performance",
        Day by period_date,
        dimensions [],
        measures {
            tasks_created: i64 => Sum,
            tasks_assigned: i64 => Sum,
            tasks_completed: i64 => Sum,
            sla_breached: i64 => Sum,
            completions_timed: i64 => Sum,
            avg_completion_minutes: Option<i64> => WeightedBy("completions_timed"),
            p50_completion_minutes: Option<i64> => NotCombinable,
            p95_completion_minutes: Option<i64> => NotCombinable,
        }
        rates {
            sla_breach_rate = sla_breached / tasks_created,
        }
    }

    /// Staff presence per local day (CONTRACT §8): online time and sessions, from the
    /// state each staff event leaves.
    STAFF_PRESENCE_DAILY: StaffPresenceRow {
        table "agg_staff_presence_daily", metric "staff_presence",
        job "daily_staff_presence",
        Day by period_date,
        dimensions [staff_id],
        measures {
            online_minutes: i64 => Sum,
            sessions: i64 => Sum,
        }
    }

    /// Weekly satisfaction trends (seed); the period is the ISO week's Monday.
    SATISFACTION_WEEKLY: SatisfactionRow {
        table "agg_satisfaction_weekly", metric "satisfaction", job "weekly_satisfaction_trends",
        Week by period_start,
        dimensions [channel],
        measures {
            surveys_sent: i64 => Sum,
            responses_received: i64 => Sum,
            rating_1: i64 => Sum,
            rating_2: i64 => Sum,
            rating_3: i64 => Sum,
            rating_4: i64 => Sum,
            rating_5: i64 => Sum,
            avg_rating: Option<f64> => MeanOfRatings,
            nps_score: Option<f64> => NpsOfRatings,
        }
    }

    /// Monthly summary (seed).
    MONTHLY_SUMMARY: MonthlySummaryRow {
        table "agg_monthly_summary", metric "monthly_summary", job "monthly_summary",
        Month by period_month,
        dimensions [],
        measures {
            total_conversations: i64 => Sum,
            total_messages: i64 => Sum,
            total_tasks: i64 => Sum,
            ai_resolution_rate: Option<f64> => NotCombinable,
            avg_satisfaction: Option<f64> => NotCombinable,
            avg_response_time_minutes: Option<f64> => NotCombinable,
            top_intents: JsonText => NotCombinable,
            channel_breakdown: JsonText => NotCombinable,
        }
    }
}

/// The rating count columns a rating combination reads, 1 to 5.
pub const RATING_COLUMNS: [&str; 5] = ["rating_1", "rating_2", "rating_3", "rating_4", "rating_5"];

/// Every combination names columns its table has: a weight is an INTEGER measure of
/// the same table, a rating combination's table has the rating counts, and a JSON
/// column is never combined. Checked while building, so a slip stops the build.
const fn check(tables: &'static [&'static AggTable]) {
    let mut t = 0;
    while t < tables.len() {
        let table = tables[t];
        let mut m = 0;
        while m < table.measures.len() {
            let measure = &table.measures[m];
            match measure.combine {
                WeightedBy(weight) => {
                    assert!(
                        matches!(table.measure(weight).kind, Kind::Integer),
                        "a weight must be an INTEGER column"
                    );
                }
                MeanOfRatings | NpsOfRatings => {
                    let mut r = 0;
                    while r < RATING_COLUMNS.len() {
                        table.measure(RATING_COLUMNS[r]);
                        r += 1;
                    }
                }
                RatioOfSums(..) => panic!("a rate is not a column"),
                Sum | Max | NotCombinable => {}
            }
            assert!(
                !matches!(measure.kind, Kind::Json) || matches!(measure.combine, NotCombinable),
                "a JSON column cannot be combined"
            );
            m += 1;
        }
        let mut r = 0;
        while r < table.rates.len() {
            if let RatioOfSums(numerator, denominator) = table.rates[r].combine {
                assert!(
                    matches!(table.measure(numerator).combine, Sum)
                        && matches!(table.measure(denominator).combine, Sum),
                    "a rate divides summed count columns"
                );
            }
            r += 1;
        }
        t += 1;
    }
}

const _: () = check(AGG_TABLES);

/// The rows of one bucket of one table, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketRows {
    /// The table.
    pub table: &'static AggTable,
    /// Each row's values, in [`AggTable::columns`] order.
    pub rows: Vec<Vec<Cell>>,
}

impl BucketRows {
    /// The rows a roll-up computed (none: the bucket's rows are deleted).
    pub fn of<R: AggRow>(rows: Vec<R>) -> BucketRows {
        BucketRows {
            table: R::TABLE,
            rows: rows.into_iter().map(AggRow::into_cells).collect(),
        }
    }

    /// How many rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

#[cfg(test)]
mod tests;
