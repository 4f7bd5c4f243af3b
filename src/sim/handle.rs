//! The handle on one simulated account: its state behind one lock, shared
//! by every route. Above `state`, below the HTTP modules.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};

use super::config::SimConfig;
use super::state::State;
use crate::clock::{Clock, SystemClock};

/// A handle on one simulated WeChat account; clones share its state.
#[derive(Clone)]
pub struct Simulator {
    state: Arc<Mutex<State>>,
    clock: Arc<dyn Clock>,
}

impl Simulator {
    pub fn new(config: SimConfig) -> Self {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// A simulator whose WeChat keeps `clock`'s time (tests move it to
    /// expire tokens and codes without waiting).
    pub fn with_clock(config: SimConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            state: Arc::new(Mutex::new(State::new(config, clock.now()))),
            clock,
        }
    }

    pub(super) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// No handler holds the lock across an await or panics under it, so a
    /// poisoned lock still guards consistent state.
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
