//! The handle on the simulated WeChat: one or more accounts (a mini-program
//! with its official account each), every one with its own state behind its
//! own lock, and the [`Account`] a request is for. Above `state`, below the
//! HTTP modules.
//!
//! A request names its account the way WeChat's calls do: by `appid` (token
//! and login calls; a control route's optional `appid`, in the query or the
//! body) or by the `access_token` it presents. Without either it is the
//! first account's, so single-account callers never name one.

use std::future::{Ready, ready};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use chrono::{DateTime, Utc};

use super::config::SimConfig;
use super::errors::ControlError;
use super::pusher::Pusher;
use super::state::State;
use crate::clock::{Clock, SystemClock};

/// One simulated account: its state and its pushes.
struct Slot {
    state: Mutex<State>,
    appid: String,
    oa_appid: String,
    pusher: Option<Arc<Pusher>>,
}

/// A handle on the simulated WeChat; clones share its state.
#[derive(Clone)]
pub struct Simulator {
    accounts: Arc<Vec<Slot>>,
    clock: Arc<dyn Clock>,
}

/// The appid a request's body named, kept for [`Account`] by the body
/// reader that took it out.
#[derive(Debug, Clone)]
pub(super) struct NamedAppid(pub String);

impl Simulator {
    pub fn new(config: SimConfig) -> Self {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// A simulator whose WeChat keeps `clock`'s time (tests move it to
    /// expire tokens and codes without waiting).
    pub fn with_clock(config: SimConfig, clock: Arc<dyn Clock>) -> Self {
        let accounts = config
            .accounts()
            .into_iter()
            .map(|account| {
                // An account pushes where its own targets say (only the
                // first's and sandbox apps' have any).
                let pusher = account.push.clone().and_then(|targets| {
                    Pusher::new(targets, &account.appid, &account.oa_appid)
                        .inspect_err(|err| tracing::error!(error = %err, "the simulator will not push"))
                        .ok()
                });
                Slot {
                    appid: account.appid.clone(),
                    oa_appid: account.oa_appid.clone(),
                    state: Mutex::new(State::new(account, clock.now())),
                    pusher,
                }
            })
            .collect();
        Self {
            accounts: Arc::new(accounts),
            clock,
        }
    }

    pub(super) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The first account (the one every unnamed request is for).
    pub(super) fn first(&self) -> Account {
        self.account(0)
    }

    fn account(&self, index: usize) -> Account {
        Account {
            sim: self.clone(),
            index,
        }
    }

    /// The account whose mini-program or official account is `appid`.
    pub(super) fn by_appid(&self, appid: &str) -> Option<Account> {
        self.accounts
            .iter()
            .position(|slot| slot.appid == appid || slot.oa_appid == appid)
            .map(|index| self.account(index))
    }

    /// The account that issued `token`, or the first (which refuses it).
    pub(super) fn by_token(&self, token: &str) -> Account {
        let index = (0..self.accounts.len())
            .find(|&index| self.account(index).lock().owns_token(token))
            .unwrap_or(0);
        self.account(index)
    }

    /// The account a request is for: the appid it names (body, then
    /// query), else the access token it presents, else the first.
    pub(super) fn of_request(&self, req: &HttpRequest) -> Result<Account, ControlError> {
        let query = web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
            .map(web::Query::into_inner)
            .unwrap_or_default();
        let named = req
            .extensions()
            .get::<NamedAppid>()
            .map(|n| n.0.clone())
            .or_else(|| query.get("appid").cloned());
        if let Some(appid) = named {
            return match self.by_appid(&appid) {
                Some(account) => Ok(account),
                // WeChat's own routes judge an unknown appid themselves (40013).
                None if req.path().contains("/wechat/") => Ok(self.first()),
                None => Err(ControlError::invalid(format!(
                    "no simulated app has appid {appid}"
                ))),
            };
        }
        Ok(match query.get("access_token") {
            Some(token) => self.by_token(token),
            None => self.first(),
        })
    }
}

/// One simulated account, as a request sees it.
pub struct Account {
    sim: Simulator,
    index: usize,
}

impl Account {
    fn slot(&self) -> &Slot {
        &self.sim.accounts[self.index]
    }

    /// No handler holds the lock across an await or panics under it, so a
    /// poisoned lock still guards consistent state.
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.slot().state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn pusher(&self) -> Option<&Arc<Pusher>> {
        self.slot().pusher.as_ref()
    }

    pub(super) fn now(&self) -> DateTime<Utc> {
        self.sim.now()
    }
}

impl FromRequest for Account {
    type Error = ControlError;
    type Future = Ready<Result<Self, ControlError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let sim = req.app_data::<web::Data<Simulator>>().cloned();
        ready(match sim {
            Some(sim) => sim.of_request(req),
            None => Err(ControlError::invalid("the simulator is not mounted here")),
        })
    }
}
