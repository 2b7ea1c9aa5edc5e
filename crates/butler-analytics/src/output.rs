//! What a one-shot subcommand prints: a result states its two forms once, the text for
//! people and the `--json` form for scripts, and [`print`] picks one. Subcommands then
//! compute a value and never branch on `--json` themselves, so a new field is added to
//! both forms in one place.

use std::io::Write;

/// A subcommand's result in both of the forms it can be printed in. Both write to
/// `out` rather than to stdout, so unit tests read the exact bytes a user would see.
pub trait Output {
    /// The form for scripts (`--json`): every line a JSON value, so that a change to
    /// the text form never breaks a script.
    ///
    /// # Errors
    /// When `out` cannot be written.
    fn json(&self, out: &mut dyn Write) -> anyhow::Result<()>;

    /// The form for people: aligned columns and sentences.
    ///
    /// # Errors
    /// When `out` cannot be written.
    fn text(&self, out: &mut dyn Write) -> anyhow::Result<()>;
}

/// Prints `result` on stdout in the form the command line asked for, so that every
/// subcommand's `--json` means the same thing.
///
/// # Errors
/// When stdout cannot be written (a closed pipe).
pub fn print(json: bool, result: &impl Output) -> anyhow::Result<()> {
    write(json, result, &mut std::io::stdout().lock())
}

/// Writes `result` to `out` in the form `json` picks: [`print`] on stdout, the tests
/// into a buffer, through the same choice.
fn write(json: bool, result: &impl Output, out: &mut dyn Write) -> anyhow::Result<()> {
    if json {
        result.json(out)
    } else {
        result.text(out)
    }
}

/// Writes `value` as one line of compact JSON, the usual `--json` form of a result.
///
/// # Errors
/// When `out` cannot be written.
pub fn json_line(out: &mut dyn Write, value: &serde_json::Value) -> anyhow::Result<()> {
    writeln!(out, "{value}")?;
    Ok(())
}

/// Renders `result` in one form as a string, for tests that check the exact output.
#[cfg(test)]
pub(crate) fn render(json: bool, result: &impl Output) -> String {
    let mut out = Vec::new();
    write(json, result, &mut out).expect("writing to a Vec cannot fail");
    String::from_utf8(out).expect("the forms are UTF-8")
}
