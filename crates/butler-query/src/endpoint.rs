//! The query service's endpoints, each declared once: the name `$SRV.INFO` shows, the
//! subject it answers, its property-scoped twin where it has one (CONTRACT §7), and the
//! handler that answers it. The service registers from here and the command-line
//! client sends to the subjects named here, so a subject is written in one place.

use crate::reply::parse;
use crate::service::ServiceContext;
use crate::{QueryError, admin};

/// An endpoint of the query service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `analytics.query.dashboard`: a property's dashboard.
    Dashboard,
    /// `analytics.query.report`: a report over a range of local days.
    Report,
    /// `analytics.query.timeseries`: one metric of the catalogue over a range.
    Timeseries,
    /// `analytics.query.metrics`: the catalogue of metrics.
    Metrics,
    /// `analytics.admin.aggregate`: recompute a range now.
    AdminAggregate,
    /// `analytics.admin.status`: the aggregation jobs as they stand.
    AdminStatus,
}

/// What differs between endpoints, besides the handler.
struct Spec {
    /// The name in `$SRV.INFO`.
    name: &'static str,
    /// The subject.
    subject: &'static str,
    /// The property-scoped twin's name and subject, where there is one.
    scoped: Option<(&'static str, &'static str)>,
}

/// What a handler answers: a JSON body, or a report, which the service sends as the
/// reply or, when it is larger than a message, as a note naming where it is.
pub(crate) enum Answer {
    /// The reply body.
    Body(Vec<u8>),
    /// A report, to send as its size allows.
    Report(crate::report::Report),
}

impl Endpoint {
    /// Every endpoint, in the order the service registers them.
    pub const ALL: [Endpoint; 6] = [
        Endpoint::Dashboard,
        Endpoint::Report,
        Endpoint::Timeseries,
        Endpoint::Metrics,
        Endpoint::AdminAggregate,
        Endpoint::AdminStatus,
    ];

    /// The one table of names and subjects.
    const fn spec(self) -> Spec {
        match self {
            Endpoint::Dashboard => Spec {
                name: "dashboard",
                subject: "analytics.query.dashboard",
                scoped: Some(("dashboard_property", "analytics.query.dashboard.*")),
            },
            Endpoint::Report => Spec {
                name: "report",
                subject: "analytics.query.report",
                scoped: Some(("report_property", "analytics.query.report.*")),
            },
            Endpoint::Timeseries => Spec {
                name: "timeseries",
                subject: "analytics.query.timeseries",
                scoped: Some(("timeseries_property", "analytics.query.timeseries.*")),
            },
            Endpoint::Metrics => Spec {
                name: "metrics",
                subject: "analytics.query.metrics",
                scoped: None,
            },
            Endpoint::AdminAggregate => Spec {
                name: "admin_aggregate",
                subject: "analytics.admin.aggregate",
                scoped: None,
            },
            Endpoint::AdminStatus => Spec {
                name: "admin_status",
                subject: "analytics.admin.status",
                scoped: None,
            },
        }
    }

    /// The name in `$SRV.INFO`, whose `$SRV.STATS` entry carries its error counts.
    pub const fn name(self) -> &'static str {
        self.spec().name
    }

    /// The subject it answers, and the label of its request metrics.
    pub const fn subject(self) -> &'static str {
        self.spec().subject
    }

    /// The name in `$SRV.INFO` of its property-scoped twin, if it has one.
    pub const fn scoped_name(self) -> Option<&'static str> {
        match self.spec().scoped {
            Some((name, _)) => Some(name),
            None => None,
        }
    }

    /// The subject of its property-scoped twin, `<subject>.*`, if it has one: the
    /// subject's last token is the property, so server permissions can confine a
    /// hotel to its own.
    pub const fn scoped_subject(self) -> Option<&'static str> {
        match self.spec().scoped {
            Some((_, subject)) => Some(subject),
            None => None,
        }
    }

    /// Answers one request body. Each endpoint's work is boxed: the service spawns a
    /// task per request, and a task's future is copied whole when it is spawned, so it
    /// is kept small (the report's and the admin runs' state machines are large).
    pub(crate) async fn answer(
        self,
        body: &[u8],
        context: &ServiceContext,
    ) -> Result<Answer, QueryError> {
        match self {
            Endpoint::Dashboard => {
                let dashboard = Box::pin(crate::dashboard::dashboard(
                    &context.storage,
                    &context.dashboard_cache,
                    &context.metrics,
                    &context.zones,
                    parse(body)?,
                ))
                .await?;
                to_body(&*dashboard)
            }
            Endpoint::Report => Box::pin(crate::report::report(
                &context.storage,
                &context.reports,
                &context.zones,
                parse(body)?,
            ))
            .await
            .map(Answer::Report),
            Endpoint::Timeseries => {
                let series = Box::pin(crate::timeseries::timeseries(
                    &context.storage,
                    &*context.aggregation,
                    &context.zones,
                    parse(body)?,
                ))
                .await?;
                to_body(&series)
            }
            Endpoint::Metrics => {
                parse::<admin::StatusRequest>(body)?;
                to_body(&crate::catalogue::describe())
            }
            Endpoint::AdminAggregate => {
                let runs = Box::pin(admin::aggregate(
                    &*context.aggregation,
                    &context.zones,
                    parse(body)?,
                ))
                .await?;
                to_body(&runs)
            }
            Endpoint::AdminStatus => {
                parse::<admin::StatusRequest>(body)?;
                let status =
                    Box::pin(admin::status(&*context.aggregation, &context.instance)).await?;
                to_body(&status)
            }
        }
    }
}

/// A reply body, serialized straight from the reply's type.
fn to_body<T: serde::Serialize + ?Sized>(v: &T) -> Result<Answer, QueryError> {
    serde_json::to_vec(v)
        .map(Answer::Body)
        .map_err(|e| QueryError::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The subjects are the contract's, and each scoped twin is its endpoint's subject
    /// and name with `.*` and `_property` appended.
    #[test]
    fn subjects_are_the_contracts() {
        let subjects = Endpoint::ALL.map(Endpoint::subject);
        assert_eq!(
            subjects,
            [
                "analytics.query.dashboard",
                "analytics.query.report",
                "analytics.query.timeseries",
                "analytics.query.metrics",
                "analytics.admin.aggregate",
                "analytics.admin.status",
            ]
        );
        for endpoint in Endpoint::ALL {
            if let Some(scoped) = endpoint.scoped_subject() {
                assert_eq!(scoped, format!("{}.*", endpoint.subject()));
            }
            assert_eq!(
                endpoint.scoped_name().map(str::to_owned),
                endpoint
                    .scoped_subject()
                    .map(|_| format!("{}_property", endpoint.name()))
            );
        }
        assert_eq!(
            Endpoint::ALL.map(Endpoint::name),
            [
                "dashboard",
                "report",
                "timeseries",
                "metrics",
                "admin_aggregate",
                "admin_status",
            ]
        );
        let scoped: Vec<_> = Endpoint::ALL
            .iter()
            .filter_map(|e| e.scoped_subject())
            .collect();
        assert_eq!(
            scoped,
            [
                "analytics.query.dashboard.*",
                "analytics.query.report.*",
                "analytics.query.timeseries.*",
            ]
        );
    }
}
