//! Progress of a long command (`aggregate`, `dead-letters replay`, `migrate-data`): a
//! bar on stderr when it is a terminal, and otherwise a plain line at each tenth and
//! at the end, so that a log or a CI job shows how far it got without a line per step.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// One task's progress, e.g. one job's buckets.
pub struct Progress {
    label: String,
    unit: &'static str,
    total: u64,
    bar: Option<ProgressBar>,
    /// The last tenth printed as a plain line.
    tenth: Option<u64>,
}

impl Progress {
    /// Progress of `total` `unit`s (e.g. "buckets") under `label`.
    pub fn new(label: &str, unit: &'static str, total: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let template = format!("{{msg:<28}} [{{bar:30}}] {{pos}}/{{len}} {unit} ({{eta}})");
            if let Ok(style) = ProgressStyle::with_template(&template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(label.to_owned());
            bar
        });
        Progress {
            label: label.to_owned(),
            unit,
            total,
            bar,
            tenth: None,
        }
    }

    /// `done` of the total are done.
    pub fn set(&mut self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            return;
        }
        let tenth = (done * 10).checked_div(self.total).unwrap_or(10);
        if self.tenth.is_none_or(|t| tenth > t) {
            self.tenth = Some(tenth);
            eprintln!(
                "{}: {done}/{} {} ({}%)",
                self.label,
                self.total,
                self.unit,
                (done * 100).checked_div(self.total).unwrap_or(100)
            );
        }
    }

    /// The task is over: the bar stays on screen, full.
    pub fn finish(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        } else if self.tenth != Some(10) {
            self.tenth = None;
            self.set(self.total);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar
            && !bar.is_finished()
        {
            bar.abandon();
        }
    }
}

/// A progress hook for the aggregator: one [`Progress`] per job, in turn.
pub fn aggregation_hook() -> butler_aggregator::runner::ProgressHook {
    let current: std::sync::Mutex<Option<(butler_aggregator::Job, Progress)>> =
        std::sync::Mutex::new(None);
    std::sync::Arc::new(move |job, done, total| {
        let Ok(mut current) = current.lock() else {
            return;
        };
        if current.as_ref().is_none_or(|(j, _)| *j != job) {
            if let Some((_, mut previous)) = current.take() {
                previous.finish();
            }
            *current = Some((job, Progress::new(job.name(), "buckets", total)));
        }
        if let Some((_, progress)) = current.as_mut() {
            progress.set(done);
            if done >= total {
                progress.finish();
                *current = None;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_come_at_each_tenth_and_at_the_end() {
        // Under `cargo test` stderr is captured, not a terminal: plain lines.
        let mut p = Progress::new("job", "buckets", 1000);
        assert!(p.bar.is_none());
        let mut printed = Vec::new();
        for done in (0..=1000).step_by(7) {
            p.set(done);
            printed.push(p.tenth);
        }
        printed.dedup();
        assert_eq!(printed.len(), 10, "{printed:?}");
        p.finish();
        assert_eq!(p.tenth, Some(10));
        let mut empty = Progress::new("job", "buckets", 0);
        empty.set(0);
        assert_eq!(empty.tenth, Some(10));
    }
}
