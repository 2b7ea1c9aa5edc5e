//! The butler-analytics binary: wires consumer, aggregator, query service and metrics endpoint into one runtime.
