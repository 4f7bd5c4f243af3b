//! An injected failure of the WeChat routes, as a control request asks for
//! it and as `state` counts it down: data and its validation only (the HTTP
//! gate that applies it is `fault_gate`).

use serde::{Deserialize, Serialize};

use super::errors::ControlError;

const MAX_DELAY_MS: u64 = 60_000;

/// The active fault and how many more requests it hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Fault {
    pub errcode: Option<i64>,
    pub http_status: Option<u16>,
    pub delay_ms: Option<u64>,
    /// The call is processed at once and its answer held back this long.
    pub delay_answer_ms: Option<u64>,
    pub drop: bool,
    /// The call is processed, then the connection is closed unanswered.
    pub lose_answer: bool,
    /// Aimed at the template management routes (and only them) rather
    /// than at every other WeChat call.
    pub templates: bool,
    pub count: u32,
}

/// Body of `POST /sandbox/faults`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRequest {
    errcode: Option<i64>,
    http_status: Option<u16>,
    delay_ms: Option<u64>,
    delay_answer_ms: Option<u64>,
    #[serde(default)]
    drop: bool,
    #[serde(default)]
    lose_answer: bool,
    #[serde(default)]
    templates: bool,
    count: u32,
}

impl FaultRequest {
    /// The fault to install; `None` clears the current one.
    pub fn into_fault(self) -> Result<Option<Fault>, ControlError> {
        if self.count == 0 {
            return Ok(None);
        }
        let endings = [
            self.errcode.is_some(),
            self.http_status.is_some(),
            self.drop,
            self.lose_answer,
        ];
        let processed_then_held = self.delay_answer_ms.is_some();
        match endings.iter().filter(|set| **set).count() {
            0 if self.delay_ms.is_none() && !processed_then_held => {
                return Err(ControlError::invalid(
                    "a fault needs one of errcode, http_status, drop, lose_answer, delay_ms or delay_answer_ms",
                ));
            }
            0 | 1 => {}
            _ => {
                return Err(ControlError::invalid(
                    "at most one of errcode, http_status, drop and lose_answer",
                ));
            }
        }
        if self.errcode == Some(0) {
            return Err(ControlError::invalid(
                "errcode 0 means success; it is not a fault",
            ));
        }
        if self.http_status.is_some_and(|s| !(400..=599).contains(&s)) {
            return Err(ControlError::invalid("http_status must be 400 to 599"));
        }
        if self.delay_ms.is_some_and(|ms| ms > MAX_DELAY_MS)
            || self.delay_answer_ms.is_some_and(|ms| ms > MAX_DELAY_MS)
        {
            return Err(ControlError::invalid(format!(
                "delay_ms and delay_answer_ms must be at most {MAX_DELAY_MS}"
            )));
        }
        if processed_then_held && (self.errcode.is_some() || self.http_status.is_some() || self.drop) {
            return Err(ControlError::invalid(
                "delay_answer_ms holds back the answer of a processed call: it combines only with lose_answer and delay_ms",
            ));
        }
        Ok(Some(Fault {
            errcode: self.errcode,
            http_status: self.http_status,
            delay_ms: self.delay_ms,
            delay_answer_ms: self.delay_answer_ms,
            drop: self.drop,
            lose_answer: self.lose_answer,
            templates: self.templates,
            count: self.count,
        }))
    }
}
