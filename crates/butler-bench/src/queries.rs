//! Requesters: several concurrent clients asking the query service over NATS, each
//! request timed from send to reply.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use bytes::Bytes;

/// Makes the i-th request body.
pub type Body = Arc<dyn Fn(usize) -> String + Send + Sync>;

/// Sends `total` requests from `concurrency` clients at once; `body(i)` makes the
/// i-th request. Returns every latency. Any error reply fails the run.
pub async fn concurrent(
    client: &async_nats::Client,
    subject: &'static str,
    total: usize,
    concurrency: usize,
    body: Body,
) -> Result<Vec<Duration>> {
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let client = client.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            let mut i = worker;
            while i < total {
                let payload = Bytes::from(body(i));
                let started = Instant::now();
                let reply = client
                    .request(subject, payload)
                    .await
                    .map_err(|e| anyhow::anyhow!("{subject}: {e}"))?;
                out.push(started.elapsed());
                if reply
                    .headers
                    .as_ref()
                    .is_some_and(|h| h.get("Nats-Service-Error-Code").is_some())
                {
                    bail!(
                        "{subject} answered an error: {}",
                        String::from_utf8_lossy(&reply.payload)
                    );
                }
                i += concurrency;
            }
            anyhow::Ok(out)
        }));
    }
    let mut all = Vec::with_capacity(total);
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(all)
}
