//! NATS requests as the tests make them: with a deadline, and the micro headers read
//! back.

use std::time::Duration;

use bytes::Bytes;

/// Sends `body` to `subject` and returns the reply; panics after 30 s without one.
pub async fn request(
    client: &async_nats::Client,
    subject: &str,
    body: impl Into<String>,
) -> async_nats::Message {
    tokio::time::timeout(
        Duration::from_secs(30),
        client.request(subject.to_owned(), Bytes::from(body.into())),
    )
    .await
    .expect("a reply within 30 s")
    .expect("a reply")
}

/// The value of header `name`, if the reply has it.
pub fn header<'a>(msg: &'a async_nats::Message, name: &str) -> Option<&'a str> {
    msg.headers
        .as_ref()
        .and_then(|h| h.get(name))
        .map(|v| v.as_str())
}

/// The micro protocol's `Nats-Service-Error-Code` of an error reply.
pub fn error_code(msg: &async_nats::Message) -> Option<&str> {
    header(msg, "Nats-Service-Error-Code")
}
