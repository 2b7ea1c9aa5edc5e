//! The `butler-analytics` binary's library: everything `main` wires together, so that
//! tests start the pipeline through the same code.
//!
//! Layout:
//! - [`cli`]: the command line; [`client`]: `query` and `report`, asking the running
//!   service over NATS;
//! - [`app`]: [`app::run`], the whole pipeline in one runtime until shutdown;
//! - [`aggregation`]: the aggregator's settings and the backfill command;
//! - [`reports`]: the report settings, object store and schedules from config;
//! - [`nats`]: the NATS connection from config (auth, TLS, reconnects);
//! - [`http`]: `/metrics`, `/healthz`, `/readyz`;
//! - [`commands`]: the one-shot subcommands (`migrate`, `check-config`,
//!   `dead-letters`), and [`publish`] for sending events by hand;
//! - [`output`]: each result's text and `--json` forms, and the one place that
//!   chooses between them;
//! - [`progress`]: how far a long command has got, as a bar or plain lines;
//! - [`telemetry`]: logs, human or JSON.

pub mod aggregation;
pub mod app;
pub mod cli;
pub mod client;
pub mod commands;
pub mod http;
pub mod nats;
pub mod output;
pub mod progress;
pub mod publish;
pub mod reload;
pub mod reports;
pub mod status;
pub mod tap;
pub mod telemetry;
