//! Butler analytics storage: the only crate that speaks SQL.
