//! Butler analytics consumer: JetStream events into durable storage.
