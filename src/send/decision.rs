//! The send policy (docs/send-policy.md) as one pure function: given WeChat's reply to
//! one attempt and what earlier attempts of the same credential showed,
//! what happens to the credential and what the pipeline does next. No I/O
//! here; the loop in [`super::Sender`] carries the decision out.
//!
//! | reply                                   | credential | next                               |
//! |-----------------------------------------|------------|------------------------------------|
//! | 0                                       | commit     | sent                               |
//! | 41029 after an unknown attempt          | commit     | sent (`confirmed_by: 41029`)       |
//! | 41028 after an unknown attempt          | burn       | 503 outcome unknown                |
//! | a credential error (41028, 41029, ...)  | burn       | next credential                    |
//! | 40001, 40014, 42001 (first time)        | (held)     | fresh token, same credential       |
//! | -1, or not sent (connect failed)        | (held)     | same credential after backoff      |
//! | unknown (no answer), re-checkable       | (held)     | same credential after backoff      |
//! | unknown, not re-checkable               | commit     | 503 outcome unknown                |
//! | 45009                                   | refund     | 429                                |
//! | 41001, token refused twice, retries out | refund     | 503 unavailable                    |
//! | any other errcode                       | refund     | 422 with the errcode               |
//!
//! After an unknown attempt, a refund would hand a use WeChat may already
//! have consumed to another send; every ending that would refund holds the
//! lease instead and answers "outcome unknown" (a re-checkable credential
//! is the only kind still being tried then).

use crate::ledger::Settle;
use crate::wechat::errcode;

/// What one attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Errcode(i64),
    /// The request never reached WeChat (connecting failed).
    NotSent,
    /// The request may have reached WeChat; no answer came back.
    Unknown,
}

/// What earlier attempts with the same credential showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct History {
    /// Some attempt's outcome is unknown: WeChat may have delivered it.
    pub unknown: bool,
    /// The access token was already replaced once.
    pub token_refreshed: bool,
}

/// How a channel's credential behaves when an outcome is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recheck {
    /// Presenting it again is safe: a one-use id (formId) tells whether the
    /// first attempt was delivered (41029) or not (0); an official-account
    /// message with its `client_msg_id`, inside WeChat's 10 minutes, is
    /// sent once however often it is presented (0).
    ByRepresenting,
    /// Counted uses (prepay_id, subscribe grant): nothing tells.
    Impossible,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Rejected(i64),
    QuotaExceeded,
    Unavailable(&'static str),
    /// WeChat may or may not have delivered the message.
    OutcomeUnknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Then {
    Sent { confirmed_by: Option<i64> },
    NextCredential,
    Fail(Failure),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Call again with the same credential.
    Retry { refresh_token: bool, backoff: bool },
    /// Settle the credential this way, then go on.
    Settle(Settle, Then),
}

/// The decision for one reply. `retries_left`: whether the bounded retries
/// of a not-sent or unknown attempt (and the send's time bound) allow one
/// more; `is_credential_error`: the channel's errcodes that condemn the
/// credential itself.
pub fn decide(
    reply: Reply,
    history: History,
    recheck: Recheck,
    retries_left: bool,
    is_credential_error: fn(i64) -> bool,
) -> Action {
    let give_up = |failure| {
        if history.unknown {
            Action::Settle(Settle::Hold, Then::Fail(Failure::OutcomeUnknown))
        } else {
            Action::Settle(Settle::Refund, Then::Fail(failure))
        }
    };
    match reply {
        Reply::Errcode(errcode::OK) => Action::Settle(Settle::Commit, Then::Sent { confirmed_by: None }),
        Reply::Errcode(code @ errcode::FORM_ID_USED) if history.unknown => Action::Settle(
            Settle::Commit,
            Then::Sent {
                confirmed_by: Some(code),
            },
        ),
        Reply::Errcode(code) if is_credential_error(code) && history.unknown => {
            Action::Settle(Settle::Burn, Then::Fail(Failure::OutcomeUnknown))
        }
        Reply::Errcode(code) if is_credential_error(code) => {
            Action::Settle(Settle::Burn, Then::NextCredential)
        }
        Reply::Errcode(code) if errcode::is_token_error(code) && !history.token_refreshed => Action::Retry {
            refresh_token: true,
            backoff: false,
        },
        Reply::Errcode(code) if errcode::is_token_error(code) => give_up(Failure::Unavailable(
            "WeChat rejected a freshly fetched access token",
        )),
        Reply::Errcode(errcode::DAILY_LIMIT) => give_up(Failure::QuotaExceeded),
        Reply::Errcode(errcode::TOKEN_MISSING) => give_up(Failure::Unavailable(
            "WeChat says the access token is missing (41001)",
        )),
        Reply::Errcode(errcode::BUSY) | Reply::NotSent if retries_left => Action::Retry {
            refresh_token: false,
            backoff: true,
        },
        Reply::Errcode(errcode::BUSY) | Reply::NotSent => {
            give_up(Failure::Unavailable("WeChat kept failing"))
        }
        Reply::Unknown if recheck == Recheck::Impossible => {
            Action::Settle(Settle::Commit, Then::Fail(Failure::OutcomeUnknown))
        }
        Reply::Unknown if retries_left => Action::Retry {
            refresh_token: false,
            backoff: true,
        },
        Reply::Unknown => Action::Settle(Settle::Hold, Then::Fail(Failure::OutcomeUnknown)),
        Reply::Errcode(other) => give_up(Failure::Rejected(other)),
    }
}

/// The send's time bound ran out before a final answer.
pub fn out_of_time(history: History) -> Action {
    if history.unknown {
        Action::Settle(Settle::Hold, Then::Fail(Failure::OutcomeUnknown))
    } else {
        Action::Settle(
            Settle::Refund,
            Then::Fail(Failure::Unavailable(
                "WeChat did not answer within the send time bound",
            )),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form_error(code: i64) -> bool {
        matches!(code, errcode::FORM_ID_INVALID | errcode::FORM_ID_USED)
    }

    fn form(reply: Reply, history: History) -> Action {
        decide(reply, history, Recheck::ByRepresenting, true, form_error)
    }

    const FRESH: History = History {
        unknown: false,
        token_refreshed: false,
    };
    const AFTER_UNKNOWN: History = History {
        unknown: true,
        token_refreshed: false,
    };

    fn settle(how: Settle, then: Then) -> Action {
        Action::Settle(how, then)
    }

    #[test]
    fn ok_commits() {
        for history in [FRESH, AFTER_UNKNOWN] {
            assert_eq!(
                form(Reply::Errcode(0), history),
                settle(Settle::Commit, Then::Sent { confirmed_by: None })
            );
        }
    }

    #[test]
    fn a_used_form_id_is_burned_unless_our_own_lost_attempt_used_it() {
        assert_eq!(
            form(Reply::Errcode(41029), FRESH),
            settle(Settle::Burn, Then::NextCredential)
        );
        assert_eq!(
            form(Reply::Errcode(41029), AFTER_UNKNOWN),
            settle(
                Settle::Commit,
                Then::Sent {
                    confirmed_by: Some(41029)
                }
            )
        );
        // Never the next credential after an unknown attempt.
        assert_eq!(
            form(Reply::Errcode(41028), AFTER_UNKNOWN),
            settle(Settle::Burn, Then::Fail(Failure::OutcomeUnknown))
        );
        assert_eq!(
            form(Reply::Errcode(41028), FRESH),
            settle(Settle::Burn, Then::NextCredential)
        );
    }

    #[test]
    fn a_token_error_is_retried_once_with_a_fresh_token() {
        assert_eq!(
            form(Reply::Errcode(40001), FRESH),
            Action::Retry {
                refresh_token: true,
                backoff: false
            }
        );
        let refreshed = History {
            token_refreshed: true,
            ..FRESH
        };
        assert!(matches!(
            form(Reply::Errcode(42001), refreshed),
            Action::Settle(Settle::Refund, Then::Fail(Failure::Unavailable(_)))
        ));
    }

    #[test]
    fn busy_and_not_sent_are_retried_then_refunded() {
        for reply in [Reply::Errcode(-1), Reply::NotSent] {
            assert_eq!(
                form(reply, FRESH),
                Action::Retry {
                    refresh_token: false,
                    backoff: true
                }
            );
            assert!(matches!(
                decide(reply, FRESH, Recheck::ByRepresenting, false, form_error),
                Action::Settle(Settle::Refund, Then::Fail(Failure::Unavailable(_)))
            ));
        }
    }

    #[test]
    fn an_unknown_outcome_is_rechecked_or_counted_spent() {
        assert_eq!(
            form(Reply::Unknown, FRESH),
            Action::Retry {
                refresh_token: false,
                backoff: true
            }
        );
        assert_eq!(
            decide(Reply::Unknown, FRESH, Recheck::ByRepresenting, false, form_error),
            settle(Settle::Hold, Then::Fail(Failure::OutcomeUnknown))
        );
        for retries_left in [true, false] {
            assert_eq!(
                decide(
                    Reply::Unknown,
                    FRESH,
                    Recheck::Impossible,
                    retries_left,
                    form_error
                ),
                settle(Settle::Commit, Then::Fail(Failure::OutcomeUnknown))
            );
        }
    }

    #[test]
    fn request_faults_refund_with_the_errcode() {
        for code in [40037, 41030, 47003, 40003] {
            assert_eq!(
                form(Reply::Errcode(code), FRESH),
                settle(Settle::Refund, Then::Fail(Failure::Rejected(code)))
            );
        }
        assert_eq!(
            form(Reply::Errcode(45009), FRESH),
            settle(Settle::Refund, Then::Fail(Failure::QuotaExceeded))
        );
    }

    #[test]
    fn after_an_unknown_attempt_nothing_is_refunded() {
        for reply in [
            Reply::Errcode(40037),
            Reply::Errcode(45009),
            Reply::Errcode(41001),
            Reply::Errcode(-1),
        ] {
            let action = decide(reply, AFTER_UNKNOWN, Recheck::ByRepresenting, false, form_error);
            assert_eq!(
                action,
                settle(Settle::Hold, Then::Fail(Failure::OutcomeUnknown)),
                "{reply:?}"
            );
        }
        assert_eq!(
            out_of_time(AFTER_UNKNOWN),
            settle(Settle::Hold, Then::Fail(Failure::OutcomeUnknown))
        );
        assert!(matches!(
            out_of_time(FRESH),
            Action::Settle(Settle::Refund, Then::Fail(Failure::Unavailable(_)))
        ));
    }
}
