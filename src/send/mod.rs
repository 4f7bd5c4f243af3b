//! The send pipeline (docs/send-policy.md), the same for every channel: reserve the
//! recipient's next use, call WeChat with it under the central access
//! token, and settle the use by WeChat's answer ([`decision`] holds the
//! table; this module only carries it out, within the send's time bound).
//!
//! A channel ([`Channel`]) says what is reserved and from which ledger,
//! which WeChat call spends it, and which errcodes condemn it; the
//! channels themselves live in `crate::channels`.
//!
//! The lease outlives the whole attempt (`lease` > `budget`), so a process
//! that dies mid-send leaves a use that comes back at the lease deadline.
//! One request never becomes two messages: an attempt whose answer was lost
//! is re-checked with the same formId (never followed by the next
//! credential), counted spent when it cannot be checked, and otherwise held
//! for the request's Idempotency-Key to resolve later ([`Sender::resolve`]).
//! A send under an Idempotency-Key also notes each use in its [`Journal`]
//! before WeChat sees it, and holds it as long as the key lives: if the
//! process dies mid-send, the retry resolves that use rather than spending
//! another.

mod channel;
pub mod decision;

use std::sync::Arc;
use std::time::{Duration, Instant};

pub use channel::Channel;

use crate::ledger::{LeaseId, LedgerError, Settle};
use crate::metrics::{WECHAT_CALL_FAILURES, WECHAT_ERRCODES};
use crate::report::UsageRecorder;
use crate::store::Barrier;
use crate::wechat::{TokenError, TokenManager, WechatAnswer};
use decision::{Action, Failure, History, Recheck, Reply, Then};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendPolicy {
    /// Credentials tried (burned ones included) before giving up with 409.
    pub max_credentials: u32,
    /// Retries of one credential after -1, a call that never left, or a
    /// lost answer.
    pub transient_retries: u32,
    /// First backoff; doubled each retry.
    pub backoff: Duration,
    /// Bound of one WeChat call.
    pub call_timeout: Duration,
    /// Bound of the whole send, whatever WeChat does.
    pub budget: Duration,
    /// How long a reserved use is held before it comes back by itself.
    pub lease: Duration,
}

impl Default for SendPolicy {
    fn default() -> Self {
        Self {
            max_credentials: 5,
            transient_retries: 2,
            backoff: Duration::from_millis(100),
            call_timeout: Duration::from_secs(4),
            budget: Duration::from_secs(12),
            lease: Duration::from_secs(30),
        }
    }
}

/// A use whose attempt has an unknown outcome, held under its lease until
/// someone re-presents it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending<C> {
    pub lease: LeaseId,
    pub credential: C,
}

/// Where a send under an Idempotency-Key notes the use it is about to
/// present, before WeChat is called: if the process dies before the send
/// ends, the key's next request resolves that use ([`Sender::resolve`])
/// instead of spending another and delivering the message twice.
#[async_trait::async_trait]
pub trait Journal: Send + Sync {
    /// How long a noted use is held (as long as the note can be read).
    fn hold(&self) -> Duration;

    /// Notes `record` ([`Channel::to_record`] of the pending use). An error
    /// means the note may be missing: the use must not be presented.
    async fn note(&self, record: String) -> Result<(), LedgerError>;
}

/// How a send ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendResult<C> {
    Sent {
        credential: C,
        attempts: u32,
        /// Set when an earlier attempt's lost answer was confirmed as
        /// delivered by this errcode (41029) rather than sent again.
        confirmed_by: Option<i64>,
        /// The message's id, when WeChat gives one.
        msgid: Option<i64>,
    },
    /// Nothing was spent.
    NoValidCredential { attempts: u32 },
    /// WeChat refused the request itself; the use was refunded.
    Rejected {
        errcode: i64,
        errmsg: String,
        attempts: u32,
    },
    /// The account's daily quota is used up; the use was refunded.
    QuotaExceeded { attempts: u32 },
    /// WeChat kept failing or could not be reached; nothing was delivered
    /// and the use was refunded.
    Unavailable { reason: &'static str, attempts: u32 },
    /// WeChat may or may not have delivered the message. With `pending`,
    /// the use is held for a later check; without, it counts as spent.
    OutcomeUnknown {
        pending: Option<Pending<C>>,
        attempts: u32,
    },
}

pub struct Sender {
    tokens: Arc<TokenManager>,
    usage: Arc<UsageRecorder>,
    policy: SendPolicy,
    barrier: Barrier,
}

impl Sender {
    /// `barrier`: what a credential waits for before it is presented (the
    /// embedded store's disk: the use's reservation and note committed).
    pub fn new(
        tokens: Arc<TokenManager>,
        usage: Arc<UsageRecorder>,
        policy: SendPolicy,
        barrier: Barrier,
    ) -> Self {
        Self {
            tokens,
            usage,
            policy,
            barrier,
        }
    }

    pub fn policy(&self) -> &SendPolicy {
        &self.policy
    }

    /// Sends `message`, spending at most one use, noting each use in
    /// `journal` (if any) before presenting it. Errors only when the
    /// ledger store is unreachable before anything was sent.
    #[tracing::instrument(skip_all)]
    pub async fn send<C: Channel>(
        &self,
        channel: &C,
        message: &C::Message,
        journal: Option<&dyn Journal>,
    ) -> Result<SendResult<C::Credential>, LedgerError> {
        let started = Instant::now();
        let mut attempts = 0;
        for _ in 0..self.policy.max_credentials {
            let lease = LeaseId::random();
            let hold = journal.map_or(self.policy.lease, |j| j.hold().max(self.policy.lease));
            // The lease id makes a retried reserve find its own lease rather
            // than take a second use, so a lost reply is safe to retry.
            let reserved = match channel.reserve(message, lease, hold).await {
                Err(LedgerError::Unavailable(why)) => {
                    tracing::warn!(error = %why, "reserve failed; retrying once with the same lease");
                    channel.reserve(message, lease, hold).await?
                }
                other => other?,
            };
            let Some(credential) = reserved else {
                return Ok(SendResult::NoValidCredential { attempts });
            };
            if let Some(journal) = journal
                && let Err(err) = journal.note(C::to_record(lease, &credential)).await
            {
                tracing::warn!(error = %err, "the use could not be noted, so it is not presented");
                self.settle(channel, message, lease, Settle::Refund).await;
                return Err(err);
            }
            let attempted = self
                .attempt(
                    channel,
                    message,
                    &credential,
                    started,
                    &mut attempts,
                    History::default(),
                )
                .await;
            let (how, then, answer) = match attempted {
                Ok(attempted) => attempted,
                // The token's store is down before anything could be sent:
                // the use goes back and the caller hears it was the store.
                Err(err) => {
                    self.settle(channel, message, lease, Settle::Refund).await;
                    return Err(err);
                }
            };
            self.settle(channel, message, lease, how).await;
            match then {
                Then::NextCredential => continue,
                then => return Ok(ending(then, how, lease, credential, answer, attempts)),
            }
        }
        Ok(SendResult::NoValidCredential { attempts })
    }

    /// Presents a held use again to learn what became of an earlier attempt
    /// whose answer was lost: 0 or 41029 mean sent (once), and nothing ever
    /// moves on to another credential. A use that cannot be checked so
    /// (a prepay_id's, a grant, an official-account message past WeChat's
    /// `client_msg_id` window) is never presented again: it counts as spent
    /// and the outcome stays unknown.
    #[tracing::instrument(skip_all)]
    pub async fn resolve<C: Channel>(
        &self,
        channel: &C,
        message: &C::Message,
        pending: Pending<C::Credential>,
    ) -> SendResult<C::Credential> {
        if channel.recheck(&pending.credential) == Recheck::Impossible {
            self.settle(channel, message, pending.lease, Settle::Commit).await;
            return SendResult::OutcomeUnknown {
                pending: None,
                attempts: 0,
            };
        }
        let mut attempts = 0;
        let history = History {
            unknown: true,
            token_refreshed: false,
        };
        // An earlier attempt's outcome is unknown, so a store outage now
        // leaves the use held for the next try, never refunded.
        let (how, then, answer) = self
            .attempt(
                channel,
                message,
                &pending.credential,
                Instant::now(),
                &mut attempts,
                history,
            )
            .await
            .unwrap_or((Settle::Hold, Then::Fail(Failure::OutcomeUnknown), None));
        self.settle(channel, message, pending.lease, how).await;
        ending(then, how, pending.lease, pending.credential, answer, attempts)
    }

    /// Settles a lease, retrying once: a settle is idempotent (a repeated one
    /// finds no lease and changes nothing), so a lost reply is safe to retry.
    async fn settle<C: Channel>(&self, channel: &C, message: &C::Message, lease: LeaseId, how: Settle) {
        for attempt in 1..=2 {
            match channel.settle(message, lease, how).await {
                Ok(()) => return,
                // Not confirmed: if the settle reached the store it stands
                // (only its replication is in doubt); if not, the lease
                // comes back at its deadline. Nothing is spent twice: a use
                // WeChat did take is burned on its next 41029.
                Err(err) if attempt == 2 => tracing::error!(
                    error = %err,
                    ?how,
                    "settle not confirmed: it stands if it reached the store, else the lease lapses back"
                ),
                Err(err) => tracing::warn!(error = %err, ?how, "settle failed; retrying once"),
            }
        }
    }

    /// Calls WeChat with one reserved credential until the decision table
    /// says how to settle it; also returns WeChat's last answer. Errors
    /// when the store (the access token's, or the disk the use's lease must
    /// be on first) fails and no call of this attempt can have reached
    /// WeChat.
    async fn attempt<C: Channel>(
        &self,
        channel: &C,
        message: &C::Message,
        credential: &C::Credential,
        started: Instant,
        attempts: &mut u32,
        mut history: History,
    ) -> Result<(Settle, Then, Option<WechatAnswer>), LedgerError> {
        // What a crash must not forget (the use's lease, its note) is
        // committed before WeChat sees the credential.
        self.barrier.wait().await?;
        let recheck = channel.recheck(credential);
        let mut retries = 0;
        let mut last_answer = None;
        loop {
            let remaining = self
                .policy
                .budget
                .checked_sub(started.elapsed())
                .filter(|r| !r.is_zero());
            let action = match remaining {
                None => decision::out_of_time(history),
                Some(remaining) => {
                    let reply = match self.tokens.token().await {
                        Ok(token) => {
                            *attempts += 1;
                            let timeout = self.policy.call_timeout.min(remaining);
                            let reply = self.call(channel, &token, message, credential, timeout).await;
                            Some((token, reply))
                        }
                        Err(TokenError::Store(why)) if !history.unknown => {
                            return Err(LedgerError::Unavailable(why));
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, "no access token; WeChat not called");
                            None
                        }
                    };
                    let retries_left = retries < self.policy.transient_retries;
                    let reply = reply.map(|(token, (reply, answer))| {
                        last_answer = answer.or(last_answer.take());
                        (token, reply)
                    });
                    let action = match &reply {
                        Some((_, reply)) => {
                            decision::decide(*reply, history, recheck, retries_left, C::is_credential_error)
                        }
                        // Without a token nothing was sent, and retrying now
                        // would not find one either.
                        None => {
                            decision::decide(Reply::NotSent, history, recheck, false, C::is_credential_error)
                        }
                    };
                    match (&reply, &action) {
                        (
                            Some((token, _)),
                            Action::Retry {
                                refresh_token: true, ..
                            },
                        ) => {
                            history.token_refreshed = true;
                            self.tokens.invalidate(token).await;
                        }
                        (Some((_, Reply::Unknown)), _) => history.unknown = true,
                        _ => {}
                    }
                    if let (Action::Retry { backoff: true, .. }, true) = (&action, retries_left) {
                        retries += 1;
                        let backoff = self.policy.backoff * 2u32.pow(retries - 1);
                        let jitter =
                            Duration::from_millis(rand::random_range(0..=backoff.as_millis() as u64 / 2));
                        tracing::warn!(
                            retry_in_ms = (backoff + jitter).as_millis() as u64,
                            "retrying the WeChat call"
                        );
                        tokio::time::sleep((backoff + jitter).min(remaining)).await;
                    }
                    action
                }
            };
            if let Action::Settle(how, then) = action {
                return Ok((how, then, last_answer));
            }
        }
    }

    async fn call<C: Channel>(
        &self,
        channel: &C,
        token: &str,
        message: &C::Message,
        credential: &C::Credential,
        timeout: Duration,
    ) -> (Reply, Option<WechatAnswer>) {
        match channel.call(token, message, credential, timeout).await {
            Ok(answer) => {
                let code = answer.errcode;
                self.usage.wechat_errcode(self.usage.now(), code);
                metrics::counter!(WECHAT_ERRCODES, "errcode" => code.to_string()).increment(1);
                (Reply::Errcode(code), Some(answer))
            }
            Err(err) => {
                metrics::counter!(WECHAT_CALL_FAILURES, "kind" => err.kind()).increment(1);
                tracing::warn!(error = %err, "WeChat call failed");
                let reply = if err.outcome_unknown() {
                    Reply::Unknown
                } else {
                    Reply::NotSent
                };
                (reply, None)
            }
        }
    }
}

fn ending<C>(
    then: Then,
    how: Settle,
    lease: LeaseId,
    credential: C,
    answer: Option<WechatAnswer>,
    attempts: u32,
) -> SendResult<C> {
    match then {
        Then::Sent { confirmed_by } => SendResult::Sent {
            credential,
            attempts,
            confirmed_by,
            msgid: answer.and_then(|a| a.msgid),
        },
        // The table never moves on after an unknown attempt; reaching here
        // means the credentials ran out.
        Then::NextCredential => SendResult::NoValidCredential { attempts },
        Then::Fail(Failure::Rejected(errcode)) => SendResult::Rejected {
            errcode,
            errmsg: answer.map(|a| a.errmsg).unwrap_or_default(),
            attempts,
        },
        Then::Fail(Failure::QuotaExceeded) => SendResult::QuotaExceeded { attempts },
        Then::Fail(Failure::Unavailable(reason)) => SendResult::Unavailable { reason, attempts },
        Then::Fail(Failure::OutcomeUnknown) => SendResult::OutcomeUnknown {
            pending: (how == Settle::Hold).then_some(Pending { lease, credential }),
            attempts,
        },
    }
}
