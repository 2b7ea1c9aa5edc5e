//! Butler analytics aggregator: scheduled roll-ups of raw events into aggregate tables.
