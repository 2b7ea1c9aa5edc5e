//! Butler analytics query service: dashboards, time series and reports over NATS request/reply.
