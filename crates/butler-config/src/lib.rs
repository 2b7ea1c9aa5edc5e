//! Butler analytics configuration: the YAML file, environment overrides and their validation.
