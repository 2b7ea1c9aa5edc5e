//! Butler analytics configuration (CONTRACT §5): a YAML file with snake_case keys,
//! every key optional, each overridable by a `BUTLER_ANALYTICS__SECTION__KEY`
//! environment variable. A bad file stops start-up with a message that names the key,
//! so that an operator never runs on a setting they did not mean.
//!
//! Layout:
//! - [`model`]: the typed [`Config`] and its defaults;
//! - [`load`]: reading the file, applying environment overrides, checking values;
//! - [`database`]: [`Database`], which database `storage` names, read by one rule;
//! - [`secret`]: [`Secret`], a string that never prints, and [`SecretUrl`], a URL
//!   (`nats.url`, `storage.url`) whose credentials never print.

pub mod database;
pub mod load;
pub mod model;
pub mod secret;

pub use database::Database;
pub use load::{ConfigError, ENV_PREFIX, load, load_from_str};
pub use model::*;
pub use secret::{Secret, SecretUrl};
