//! §8's business hours and SLA targets as the jobs read them: one value shared by
//! every clone of the aggregator and replaced whole on a reload, so the rules in
//! force when a bucket is computed are the ones applied to it.

use std::sync::{Arc, RwLock};

use butler_events::business::BusinessRules;

/// The current rules and their generation (raised by each replacement, so what was
/// computed under older rules is not served from a cache).
#[derive(Debug, Clone, Default)]
pub struct SharedRules {
    current: Arc<RwLock<(u64, Arc<BusinessRules>)>>,
}

impl SharedRules {
    /// Rules to start with.
    pub fn new(rules: BusinessRules) -> SharedRules {
        SharedRules {
            current: Arc::new(RwLock::new((0, Arc::new(rules)))),
        }
    }

    /// The rules in force, and their generation.
    pub fn get(&self) -> (u64, Arc<BusinessRules>) {
        let current = self
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (current.0, Arc::clone(&current.1))
    }

    /// Replaces the rules, for every clone, from the next bucket computed on.
    pub fn set(&self, rules: BusinessRules) {
        let mut current = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *current = (current.0 + 1, Arc::new(rules));
    }
}
