//! The send pipeline (SPEC §6): reserve the user's oldest use, call
//! `templateMessage.send`, then commit, burn or refund by WeChat's answer.
//!
//! | WeChat answer                        | credential | next                               |
//! |--------------------------------------|------------|------------------------------------|
//! | 0                                    | commit     | sent                               |
//! | 41028, 41029                         | burn       | next credential (at most 5)        |
//! | 40001, 40014, 42001                  | (kept)     | invalidate token, retry once       |
//! | -1, HTTP error, timeout, no answer   | (kept)     | retry with backoff, then refund 503|
//! | 45009                                | refund     | 429                                |
//! | 41001 (no token: our bug)            | refund     | 503, no retry                      |
//! | 40037, 41030, 47003, other           | refund     | 422 with the errcode               |
//!
//! The lease outlives the whole attempt (`lease` > `budget`), so a process
//! that dies mid-send leaves a use that comes back at the lease deadline;
//! if WeChat had in fact accepted it, the next send gets 41029 and burns it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::domain::{CredentialKind, OpenId};
use crate::ledger::{LeaseId, Ledger, LedgerError, Reservation, Settle};
use crate::metrics::{WECHAT_CALL_FAILURES, WECHAT_ERRCODES};
use crate::report::UsageRecorder;
use crate::wechat::{CallError, TemplateMessage, TokenManager, WechatClient, errcode};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendPolicy {
    /// Credentials tried (burned ones included) before giving up with 409.
    pub max_credentials: u32,
    /// Retries of one call after -1 / HTTP errors / timeouts.
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

/// How a send ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendResult {
    Sent {
        kind: CredentialKind,
        expires_at: DateTime<Utc>,
        attempts: u32,
    },
    /// Nothing was spent.
    NoValidCredential { attempts: u32 },
    /// WeChat refused the request itself; the use was refunded.
    Rejected { errcode: i64, attempts: u32 },
    /// The account's daily quota is used up; the use was refunded.
    QuotaExceeded { attempts: u32 },
    /// WeChat kept failing or could not be reached; the use was refunded.
    Unavailable { reason: String, attempts: u32 },
}

/// What one credential's attempts came to.
enum Verdict {
    Commit,
    Burn,
    Refund(SendResult),
}

pub struct Sender {
    ledger: Arc<dyn Ledger>,
    wechat: WechatClient,
    tokens: Arc<TokenManager>,
    usage: Arc<UsageRecorder>,
    policy: SendPolicy,
}

impl Sender {
    pub fn new(
        ledger: Arc<dyn Ledger>,
        wechat: WechatClient,
        tokens: Arc<TokenManager>,
        usage: Arc<UsageRecorder>,
        policy: SendPolicy,
    ) -> Self {
        Self {
            ledger,
            wechat,
            tokens,
            usage,
            policy,
        }
    }

    pub fn policy(&self) -> &SendPolicy {
        &self.policy
    }

    /// Sends `message`, spending at most one use. Errors only when the
    /// ledger store is unreachable before anything was sent.
    #[tracing::instrument(skip_all, fields(template = message.template_id.as_str()))]
    pub async fn send(&self, message: &TemplateMessage) -> Result<SendResult, LedgerError> {
        let started = Instant::now();
        let mut attempts = 0;
        for _ in 0..self.policy.max_credentials {
            let lease = LeaseId::random();
            let hold = self.policy.lease;
            // The lease id makes a retried reserve find its own lease rather
            // than take a second use, so a lost reply is safe to retry.
            let reserved = match self.ledger.reserve(&message.touser, lease, hold).await {
                Err(LedgerError::Unavailable(why)) => {
                    tracing::warn!(error = %why, "reserve failed; retrying once with the same lease");
                    self.ledger.reserve(&message.touser, lease, hold).await?
                }
                other => other?,
            };
            let now = Utc::now();
            self.usage.ledger_events(now, &reserved.events);
            let Some(reservation) = reserved.reservation else {
                return Ok(SendResult::NoValidCredential { attempts });
            };
            let verdict = self.attempt(message, &reservation, started, &mut attempts).await;
            let how = match &verdict {
                Verdict::Commit => Settle::Commit,
                Verdict::Burn => Settle::Burn,
                Verdict::Refund(_) => Settle::Refund,
            };
            self.settle(&message.touser, lease, how).await;
            match verdict {
                Verdict::Commit => {
                    return Ok(SendResult::Sent {
                        kind: reservation.kind,
                        expires_at: reservation.expires_at,
                        attempts,
                    });
                }
                Verdict::Burn => continue,
                Verdict::Refund(result) => return Ok(result),
            }
        }
        Ok(SendResult::NoValidCredential { attempts })
    }

    /// Settles a lease, retrying once: a settle is idempotent (a repeated one
    /// finds no lease and changes nothing), so a lost reply is safe to retry.
    async fn settle(&self, openid: &OpenId, lease: LeaseId, how: Settle) {
        for attempt in 1..=2 {
            match self.ledger.settle(openid, lease, how).await {
                Ok(settled) => {
                    self.usage.ledger_events(Utc::now(), &settled.events);
                    return;
                }
                // Unsettled, the lease comes back at its deadline: nothing is
                // lost, and a use WeChat did take is burned on its next 41029.
                Err(err) if attempt == 2 => {
                    tracing::error!(error = %err, ?how, "lease not settled; it will lapse back")
                }
                Err(err) => tracing::warn!(error = %err, ?how, "settle failed; retrying once"),
            }
        }
    }

    /// Calls WeChat with one reserved credential until its answer is final.
    async fn attempt(
        &self,
        message: &TemplateMessage,
        reservation: &Reservation,
        started: Instant,
        attempts: &mut u32,
    ) -> Verdict {
        let mut token_retried = false;
        let mut transient_failures = 0;
        loop {
            let Some(remaining) = self
                .policy
                .budget
                .checked_sub(started.elapsed())
                .filter(|r| !r.is_zero())
            else {
                return unavailable("WeChat did not answer within the send time bound", *attempts);
            };
            let token = match self.tokens.token().await {
                Ok(token) => token,
                Err(err) => return unavailable(&err.to_string(), *attempts),
            };
            *attempts += 1;
            let timeout = self.policy.call_timeout.min(remaining);
            let answer = self
                .wechat
                .send_template(&token, message, &reservation.id, timeout)
                .await;
            let failure = match answer {
                Ok(code) => {
                    self.usage.wechat_errcode(Utc::now(), code);
                    metrics::counter!(WECHAT_ERRCODES, "errcode" => code.to_string()).increment(1);
                    match code {
                        errcode::OK => return Verdict::Commit,
                        c if errcode::is_credential_error(c) => {
                            tracing::info!(errcode = c, kind = %reservation.kind, "credential refused by WeChat: burned");
                            return Verdict::Burn;
                        }
                        c if errcode::is_token_error(c) && !token_retried => {
                            token_retried = true;
                            self.tokens.invalidate(&token).await;
                            continue;
                        }
                        c if errcode::is_token_error(c) => {
                            return unavailable("WeChat rejected a freshly fetched access token", *attempts);
                        }
                        errcode::DAILY_LIMIT => {
                            return Verdict::Refund(SendResult::QuotaExceeded { attempts: *attempts });
                        }
                        errcode::TOKEN_MISSING => {
                            tracing::error!("WeChat says the access token is missing (41001)");
                            return unavailable("WeChat says the access token is missing", *attempts);
                        }
                        errcode::BUSY => "WeChat is busy (-1)".to_owned(),
                        other => {
                            return Verdict::Refund(SendResult::Rejected {
                                errcode: other,
                                attempts: *attempts,
                            });
                        }
                    }
                }
                Err(err) => {
                    let kind = match err {
                        CallError::Transport(_) => "transport",
                        CallError::Http(_) => "http",
                        CallError::Malformed(_) => "malformed",
                    };
                    metrics::counter!(WECHAT_CALL_FAILURES, "kind" => kind).increment(1);
                    err.to_string()
                }
            };
            transient_failures += 1;
            if transient_failures > self.policy.transient_retries {
                return unavailable(&failure, *attempts);
            }
            let backoff = self.policy.backoff * 2u32.pow(transient_failures - 1);
            let jitter = Duration::from_millis(rand::random_range(0..=backoff.as_millis() as u64 / 2));
            tracing::warn!(reason = %failure, retry_in_ms = (backoff + jitter).as_millis() as u64, "WeChat call failed");
            tokio::time::sleep((backoff + jitter).min(remaining)).await;
        }
    }
}

fn unavailable(reason: &str, attempts: u32) -> Verdict {
    Verdict::Refund(SendResult::Unavailable {
        reason: reason.to_owned(),
        attempts,
    })
}
