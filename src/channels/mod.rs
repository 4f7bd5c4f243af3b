//! The channels a message goes out on, one file each: the body a backend
//! posts, the checks made before anything is spent, what is spent and how
//! WeChat is called (the send pipeline's [`Channel`] plug), and what the
//! answer says. Everything else (the route, idempotency, the template
//! check, counting, receipts) is one generic path in `api::send`, labelled
//! by [`ChannelKind`].
//!
//! A new channel is a new file here implementing [`Channel`] and
//! [`ChannelRoute`], a [`ChannelKind`] variant, and one line each where
//! routes and state are listed.

mod official_account;
mod official_account_subscribe;
mod subscribe;
mod template;

use actix_web::http::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use official_account::{Accepted, OfficialAccountChannel, OfficialAccountMessageBody};
pub use official_account_subscribe::{OfficialAccountSubscribeBody, OfficialAccountSubscribeChannel};
pub use subscribe::{HeldGrant, SubscribeChannel, SubscribeMessageBody, SubscribeSent};
pub use template::{MessageBody, Sent, SpentCredential, TemplateChannel};

use crate::domain::{ChannelKind, InvalidTarget, Outcome, TemplateId};
use crate::error::{ApiError, code};
use crate::idempotency::Record;
pub use crate::send::Channel;
use crate::send::SendResult;

/// What a channel adds to the pipeline's plug to be served by the generic
/// send route.
pub trait ChannelRoute: Channel + 'static {
    const KIND: ChannelKind;
    /// What pays for a message, in the answers' words ("credential",
    /// "grant"); `None` when nothing of the user's is spent.
    const PAID_WITH: Option<&'static str>;

    /// The request body, as the route takes it.
    type Body: DeserializeOwned;

    /// Parses a body into a message; every error is a 400.
    fn parse(body: Self::Body) -> Result<Self::Message, ApiError>;

    /// The template the message uses, and the `data` keys that template must
    /// have (empty when the channel does not check keys).
    fn template(message: &Self::Message) -> (&TemplateId, Vec<&str>);

    /// What the account's list says of the message's template: whether it
    /// is long-term (a channel whose spending depends on that keeps it);
    /// ignored by default.
    fn listed(_message: &mut Self::Message, _long_term: bool) {}

    /// Rules the message must meet before anything is spent (a 422
    /// `invalid_data`); none by default.
    fn check(_: &Self::Message) -> Result<(), ApiError> {
        Ok(())
    }

    /// The message as a request with an Idempotency-Key sends it: `key`
    /// names the request among the caller's (a channel whose WeChat call
    /// takes a de-duplication id derives it from this). Unchanged by default.
    fn keyed(_message: &mut Self::Message, _key: &str) {}

    /// The 200 body of a message WeChat accepted.
    fn sent(
        credential: &Self::Credential,
        attempts: u32,
        confirmed_by: Option<i64>,
        msgid: Option<String>,
    ) -> Value;

    /// The answer when the user had nothing to spend.
    fn nothing_to_spend() -> (Outcome, ApiError);

    /// An errcode that refuses the message for this user rather than the
    /// request (the official account's 43004); `None` for a plain 422.
    fn refusal(_errcode: i64) -> Option<(Outcome, ApiError)> {
        None
    }
}

/// The `invalid_request` error of a body's recipient, template or page.
pub fn invalid_target(err: InvalidTarget) -> ApiError {
    ApiError::invalid_request(err.to_string())
}

/// The answer to a send on channel `C`: status and body, the outcome
/// counted, and what its Idempotency-Key keeps.
pub fn answer<C: ChannelRoute>(result: &SendResult<C::Credential>) -> (StatusCode, Value, Outcome, Record) {
    let kept = C::PAID_WITH
        .map(|what| format!("; the {what} was kept"))
        .unwrap_or_default();
    let (outcome, error) = match result {
        SendResult::Sent {
            credential,
            attempts,
            confirmed_by,
            msgid,
        } => {
            let body = C::sent(credential, *attempts, *confirmed_by, msgid.map(|m| m.to_string()));
            return (
                StatusCode::OK,
                body.clone(),
                Outcome::Sent,
                Record::Answer(StatusCode::OK, body),
            );
        }
        SendResult::NoValidCredential { .. } => C::nothing_to_spend(),
        SendResult::Rejected { errcode, errmsg, .. } => C::refusal(*errcode).unwrap_or_else(|| {
            (
                Outcome::WechatRejected,
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    code::WECHAT_REJECTED,
                    format!("WeChat rejected the message (errcode {errcode}){kept}"),
                )
                .with("wechat_errcode", *errcode)
                .with("wechat_errmsg", errmsg.clone()),
            )
        }),
        SendResult::QuotaExceeded { .. } => (
            Outcome::WechatQuotaExceeded,
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                code::WECHAT_QUOTA_EXCEEDED,
                format!(
                    "the account's daily quota of {} messages is used up (45009){kept}",
                    C::KIND
                ),
            ),
        ),
        SendResult::Unavailable { reason, .. } => (
            Outcome::WechatUnavailable,
            ApiError::wechat_unavailable(format!("{reason}; nothing was sent{kept}")),
        ),
        SendResult::OutcomeUnknown { pending, .. } => (
            Outcome::WechatOutcomeUnknown,
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                code::WECHAT_OUTCOME_UNKNOWN,
                match (pending, C::PAID_WITH) {
                    (Some(_), _) => "WeChat's answer was lost: the message may have been delivered. Retry with the same Idempotency-Key to find out; it will not be sent twice".to_owned(),
                    (None, Some(what)) => format!(
                        "WeChat's answer was lost: the message may have been delivered; the {what} counts as spent and the message is not sent again"
                    ),
                    (None, None) => "WeChat's answer was lost: the message may have been delivered and is not sent again".to_owned(),
                },
            ),
        ),
    };
    let (status, body) = (error.status(), error.body());
    let record = match result {
        SendResult::OutcomeUnknown {
            pending: Some(pending),
            ..
        } => Record::Pending(C::to_record(pending.lease, &pending.credential)),
        // Nothing was sent and nothing is held: a retry runs afresh.
        _ if outcome == Outcome::WechatUnavailable => Record::Release,
        _ => Record::Answer(status, body.clone()),
    };
    (status, body, outcome, record)
}
