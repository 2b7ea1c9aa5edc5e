//! The results: one table for people, one JSON file for comparing runs.

use std::path::Path;

use anyhow::Result;
use serde::Serialize;

/// A target a figure is held to.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Target {
    /// The figure must be at least this.
    AtLeast(f64),
    /// The figure must be at most this.
    AtMost(f64),
}

impl Target {
    fn met(self, value: f64) -> bool {
        match self {
            Target::AtLeast(t) => value >= t,
            Target::AtMost(t) => value <= t,
        }
    }

    fn text(self, unit: &str) -> String {
        match self {
            Target::AtLeast(t) => format!(">= {} {unit}", number(t)),
            Target::AtMost(t) => format!("<= {} {unit}", number(t)),
        }
    }
}

/// One measured figure, with how it was produced.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// `ingest`, `aggregation`, `queries`.
    pub group: &'static str,
    /// What was measured.
    pub name: String,
    /// The measurement.
    pub value: f64,
    /// Its unit.
    pub unit: &'static str,
    /// The target, if the figure has one.
    pub target: Option<Target>,
    /// Whether the target is met.
    pub met: Option<bool>,
    /// The workload and settings behind it.
    pub how: String,
}

impl Figure {
    /// A figure, checked against its target.
    pub fn new(
        group: &'static str,
        name: impl Into<String>,
        value: f64,
        unit: &'static str,
        target: Option<Target>,
        how: impl Into<String>,
    ) -> Figure {
        Figure {
            group,
            name: name.into(),
            value,
            unit,
            met: target.map(|t| t.met(value)),
            target,
            how: how.into(),
        }
    }
}

fn number(v: f64) -> String {
    if v.abs() >= 1000.0 {
        let n = v.round() as i64;
        let s = n.abs().to_string();
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        if n < 0 { format!("-{out}") } else { out }
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The table printed at the end of a run.
pub fn table(figures: &[Figure]) -> String {
    let rows: Vec<[String; 5]> = figures
        .iter()
        .map(|f| {
            [
                f.group.to_owned(),
                f.name.clone(),
                format!("{} {}", number(f.value), f.unit),
                f.target.map(|t| t.text(f.unit)).unwrap_or_default(),
                match f.met {
                    Some(true) => "yes".into(),
                    Some(false) => "NO".into(),
                    None => String::new(),
                },
            ]
        })
        .collect();
    let head = ["group", "figure", "value", "target", "met"];
    let mut widths = head.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: [&str; 5]| {
        let mut s = String::from("|");
        for (c, w) in cells.iter().zip(widths) {
            s.push_str(&format!(" {c:<w$} |"));
        }
        s.push('\n');
        s
    };
    let mut out = line(head);
    out.push_str(&line(
        widths.map(|w| "-".repeat(w)).each_ref().map(String::as_str),
    ));
    for r in &rows {
        out.push_str(&line(r.each_ref().map(String::as_str)));
    }
    out
}

/// Writes the run as JSON: `run` describes the machine and command.
pub fn write_json(path: &Path, run: &serde_json::Value, figures: &[Figure]) -> Result<()> {
    let doc = serde_json::json!({ "run": run, "figures": figures });
    std::fs::write(path, serde_json::to_string_pretty(&doc)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_checked_and_numbers_grouped() {
        let f = Figure::new(
            "ingest",
            "x",
            85_000.0,
            "events/s",
            Some(Target::AtLeast(80_000.0)),
            "",
        );
        assert_eq!(f.met, Some(true));
        let g = Figure::new("queries", "y", 21.0, "ms", Some(Target::AtMost(20.0)), "");
        assert_eq!(g.met, Some(false));
        let t = table(&[f, g]);
        assert!(t.contains("85,000 events/s"), "{t}");
        assert!(t.contains("| NO "), "{t}");
    }
}
