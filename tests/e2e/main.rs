//! End-to-end tests: the real `butler-analytics` binary against a real `nats-server`
//! (started per test on a free port with a temporary store; `NATS_SERVER_BIN` picks
//! the binary) and real SQLite files. Build the binary first
//! (`cargo build -p butler-analytics`, which `make test` does).

// A harness failure should stop the test where it happens, with its cause.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin;
mod aggregation;
mod client;
mod config;
mod dead_letters;
mod deploy;
mod faults;
mod helpers;
mod hotel_clients;
mod ingest;
mod leases;
mod operations;
mod operator_tools;
mod postgres;
mod query;
mod reload;
mod report;
mod scale_out;
mod security;
mod tenants;
