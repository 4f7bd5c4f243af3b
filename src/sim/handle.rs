//! The handle on one simulated account: its state behind one lock, shared
//! by every route. Above `state`, below the HTTP modules.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};

use super::config::SimConfig;
use super::pusher::Pusher;
use super::state::State;
use crate::clock::{Clock, SystemClock};

/// A handle on one simulated WeChat account; clones share its state.
#[derive(Clone)]
pub struct Simulator {
    state: Arc<Mutex<State>>,
    clock: Arc<dyn Clock>,
    /// Pushes to the service, when push targets are configured.
    pusher: Option<Arc<Pusher>>,
}

impl Simulator {
    pub fn new(config: SimConfig) -> Self {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// A simulator whose WeChat keeps `clock`'s time (tests move it to
    /// expire tokens and codes without waiting).
    pub fn with_clock(config: SimConfig, clock: Arc<dyn Clock>) -> Self {
        let pusher = config.push.clone().and_then(|targets| {
            Pusher::new(targets, &config.appid, &config.oa_appid)
                .inspect_err(|err| tracing::error!(error = %err, "the simulator will not push"))
                .ok()
        });
        Self {
            state: Arc::new(Mutex::new(State::new(config, clock.now()))),
            clock,
            pusher,
        }
    }

    pub(super) fn pusher(&self) -> Option<&Arc<Pusher>> {
        self.pusher.as_ref()
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
