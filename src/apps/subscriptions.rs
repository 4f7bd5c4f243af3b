//! What users answered in `wx.requestSubscribeMessage`, applied to an app:
//! each accept is one grant (to the per-template cap), every answer is
//! counted. Posted by the mini-program (`POST /v1/subscriptions`) or pushed
//! by WeChat (the popup event), both applied here.

use std::collections::BTreeMap;

use super::AppContext;
use crate::domain::{OpenId, TemplateId};
use crate::ledger::LedgerError;
use crate::metrics::SUBSCRIBE_RESULTS;
use crate::report::{Counter, GrantCounter};

/// A user's answer to one template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Accept,
    Reject,
    Ban,
    Filter,
    /// A value this version does not know.
    Other,
}

impl Answer {
    pub fn parse(raw: &str) -> Self {
        match raw {
            // WeChat's newer variants (e.g. "acceptWithAudio") grant too.
            a if a.starts_with("accept") => Answer::Accept,
            "reject" => Answer::Reject,
            "ban" => Answer::Ban,
            "filter" => Answer::Filter,
            _ => Answer::Other,
        }
    }

    /// The metric label.
    fn label(self) -> &'static str {
        match self {
            Answer::Accept => "accept",
            Answer::Reject => "reject",
            Answer::Ban => "ban",
            Answer::Filter => "filter",
            Answer::Other => "other",
        }
    }

    /// The report counter it adds to (accepts count as grants kept).
    fn counter(self) -> Option<Counter> {
        match self {
            Answer::Reject => Some(Counter::Grants(GrantCounter::Rejected)),
            Answer::Ban => Some(Counter::Grants(GrantCounter::Banned)),
            Answer::Filter => Some(Counter::Grants(GrantCounter::Filtered)),
            Answer::Accept | Answer::Other => None,
        }
    }
}

/// One template's answer as the user gave it: the template, what it means,
/// and the answer as WeChat spelled it.
pub type Answered = (TemplateId, Answer, String);

/// What applying a popup's answers did.
#[derive(Debug, Default)]
pub struct Applied {
    /// Grants now held, per accepted template.
    pub granted: BTreeMap<String, u32>,
    /// (template, answer as given) of the answers that granted nothing.
    pub ignored: Vec<(String, String)>,
}

impl AppContext {
    /// Grants what `openid` accepted (one per accept, to the cap) and counts
    /// every answer.
    pub async fn apply_answers(&self, openid: &OpenId, answers: &[Answered]) -> Result<Applied, LedgerError> {
        let accepted: Vec<(TemplateId, u32)> = answers
            .iter()
            .filter(|(_, answer, _)| *answer == Answer::Accept)
            .map(|(template, _, _)| (template.clone(), 1))
            .collect();
        let outcome = if accepted.is_empty() {
            None
        } else {
            Some(self.grants.add_grants(openid, &accepted).await?)
        };
        let now = self.clock.now();
        let mut applied = Applied::default();
        for (template, answer, raw) in answers {
            metrics::counter!(SUBSCRIBE_RESULTS, "app" => self.name.clone(), "result" => answer.label())
                .increment(1);
            if let Some(counter) = answer.counter() {
                self.usage.count(now, counter, 1);
            }
            if *answer != Answer::Accept {
                applied.ignored.push((template.as_str().to_owned(), raw.clone()));
            }
        }
        if let Some(outcome) = outcome {
            self.usage.grant_events(now, &outcome.events);
            for ((template, _), held) in accepted.iter().zip(&outcome.held) {
                applied.granted.insert(template.as_str().to_owned(), *held);
            }
        }
        Ok(applied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_and_their_variants() {
        assert_eq!(Answer::parse("accept"), Answer::Accept);
        assert_eq!(Answer::parse("acceptWithAudio"), Answer::Accept);
        assert_eq!(Answer::parse("reject"), Answer::Reject);
        assert_eq!(Answer::parse("ban"), Answer::Ban);
        assert_eq!(Answer::parse("filter"), Answer::Filter);
        assert_eq!(Answer::parse("later"), Answer::Other);
    }
}
