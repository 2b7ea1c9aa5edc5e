//! Job leases that follow their holder's life: taken for a short time
//! (`aggregation.lease_ms`, default 30 s) and renewed every third of it while the run
//! goes on, so a live holder's lease never lapses however long the run, and a dead
//! holder's is free within one lease period. A holder on this host whose process is
//! gone is taken over at once. The run's writes are fenced: each renews the lease in
//! its own transaction and is refused once another process holds it.
//!
//! The same design on both backends: a row per lease in `agg_job_leases`. (PostgreSQL
//! session advisory locks would also end with their session, but SQLite has none, and
//! one design keeps status replies and tests the same.)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use butler_storage::Storage;
use butler_storage::aggregation::{Lease, LeaseFence};
use tokio::task::JoinHandle;

use crate::metrics::AggregatorMetrics;
use crate::runner::AggregateError;

/// This process's name in leases: `host:pid`.
pub fn this_holder() -> String {
    format!("{}:{}", hostname(), std::process::id())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map_or_else(|_| "localhost".into(), |h| h.trim().to_owned())
}

/// Whether `holder` (`host:pid`) is a process of this host that no longer runs. A
/// holder on another host cannot be checked: its lease lapses instead.
pub fn holder_is_gone(holder: &str) -> bool {
    let Some((host, pid)) = holder.rsplit_once(':') else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    host == hostname()
        && pid != std::process::id()
        && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// A lease this process holds, renewed in the background until released.
pub(crate) struct JobLease {
    name: String,
    holder: String,
    storage: Storage,
    ttl: Duration,
    /// Set when a renewal found another holder, or renewals failed for a whole period:
    /// the run must stop writing.
    lost: Arc<AtomicBool>,
    heartbeat: JoinHandle<()>,
    metrics: Option<AggregatorMetrics>,
}

impl JobLease {
    /// Takes the lease `name` for `holder`, taking it over from a holder of this host
    /// whose process is gone.
    ///
    /// # Errors
    /// [`AggregateError::Busy`] with the holder when another live process has it; a
    /// database error.
    pub(crate) async fn acquire(
        storage: &Storage,
        job: &'static str,
        holder: &str,
        ttl: Duration,
        metrics: Option<&AggregatorMetrics>,
    ) -> Result<JobLease, AggregateError> {
        let name = crate::jobs::lease_name(job);
        let taken = match storage.acquire_lease(&name, holder, ttl).await? {
            Ok(()) => true,
            Err(other) if holder_is_gone(&other.holder) => {
                tracing::info!(job, gone = %other.holder, "taking over the lease of a process that is gone");
                storage
                    .take_over_lease(&name, &other.holder, holder, ttl)
                    .await?
            }
            Err(other) => {
                if let Some(m) = metrics {
                    m.lease_waited();
                }
                return Err(AggregateError::Busy { job, lease: other });
            }
        };
        if !taken {
            // Another process took it over first.
            let lease = storage
                .leases()
                .await?
                .into_iter()
                .find(|l| l.name == name)
                .unwrap_or_else(|| Lease::vacant(&name));
            return Err(AggregateError::Busy { job, lease });
        }
        if let Some(m) = metrics {
            m.lease_taken();
        }
        let lost = Arc::new(AtomicBool::new(false));
        let heartbeat = tokio::spawn(renew(
            storage.clone(),
            name.clone(),
            holder.to_owned(),
            ttl,
            lost.clone(),
        ));
        Ok(JobLease {
            name,
            holder: holder.to_owned(),
            storage: storage.clone(),
            ttl,
            lost,
            heartbeat,
            metrics: metrics.cloned(),
        })
    }

    /// Whether the run may go on writing.
    ///
    /// # Errors
    /// [`AggregateError::LeaseLost`] when another process may hold the job now.
    pub(crate) fn check(&self, job: &'static str) -> Result<(), AggregateError> {
        if self.lost.load(Ordering::Relaxed) {
            return Err(AggregateError::LeaseLost(job));
        }
        Ok(())
    }

    /// The fence the run's writes go under: each renews the lease as it commits, and
    /// fails once another process holds it.
    pub(crate) fn fence(&self) -> LeaseFence {
        LeaseFence {
            name: self.name.clone(),
            holder: self.holder.clone(),
            ttl: self.ttl,
        }
    }

    /// Stops renewing and gives the lease back.
    ///
    /// # Errors
    /// A database error (the lease then lapses by itself within its period).
    pub(crate) async fn release(self) -> Result<(), AggregateError> {
        self.heartbeat.abort();
        if let Some(m) = &self.metrics {
            m.lease_given_back();
        }
        self.storage.release_lease(&self.name, &self.holder).await?;
        Ok(())
    }
}

/// Renews `name` every third of `ttl`. A renewal that finds another holder, or no
/// successful renewal for a whole period (the database unreachable), sets `lost`.
async fn renew(
    storage: Storage,
    name: String,
    holder: String,
    ttl: Duration,
    lost: Arc<AtomicBool>,
) {
    let mut renewed = Instant::now();
    loop {
        tokio::time::sleep(ttl / 3).await;
        match storage.renew_lease(&name, &holder, ttl).await {
            Ok(true) => renewed = Instant::now(),
            Ok(false) => {
                tracing::warn!(lease = %name, "the lease was taken over: the run stops");
                lost.store(true, Ordering::Relaxed);
                return;
            }
            Err(err) => {
                tracing::warn!(lease = %name, error = %err, "the lease could not be renewed");
                if renewed.elapsed() >= ttl {
                    lost.store(true, Ordering::Relaxed);
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_of_this_host_is_gone_when_its_process_is() {
        assert!(!holder_is_gone(&this_holder()), "this process runs");
        let host = hostname();
        assert!(holder_is_gone(&format!("{host}:{}", u32::MAX - 7)));
        assert!(!holder_is_gone(&format!(
            "elsewhere-{host}:{}",
            u32::MAX - 7
        )));
        assert!(!holder_is_gone("not a holder"));
        assert!(!holder_is_gone(&format!("{host}:1")), "pid 1 runs");
    }
}
