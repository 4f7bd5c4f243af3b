//! What users answered in `wx.requestSubscribeMessage`, applied to an app:
//! each accept of a one-time template is one grant (to the per-template
//! cap), an accept of a long-term template (the account's list says which)
//! a subscription, and every answer is counted. Posted by the mini-program
//! (`POST /v1/subscriptions`) or pushed by WeChat (the popup event), both
//! applied here; so are the changes users make in the settings page.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::AppContext;
use crate::domain::{ChannelKind, OpenId, TemplateId};
use crate::ledger::LedgerError;
use crate::ledger::grants::{Accept, GrantLedger, Holding};
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

    /// The report counter it adds to on `channel` (accepts count as
    /// grants kept).
    fn counter(self, channel: ChannelKind) -> Option<Counter> {
        let what = match self {
            Answer::Reject => GrantCounter::Rejected,
            Answer::Ban => GrantCounter::Banned,
            Answer::Filter => GrantCounter::Filtered,
            Answer::Accept | Answer::Other => return None,
        };
        Some(Counter::Grants(channel, what))
    }
}

/// One template's answer as the user gave it: the template, what it means,
/// and the answer as WeChat spelled it.
pub type Answered = (TemplateId, Answer, String);

/// What applying a popup's answers did.
#[derive(Debug, Default)]
pub struct Applied {
    /// Grants now held, per accepted one-time template.
    pub granted: BTreeMap<String, u32>,
    /// Accepted long-term templates: the user is subscribed to each.
    pub long_term: Vec<String>,
    /// (template, answer as given) of the answers that granted nothing.
    pub ignored: Vec<(String, String)>,
}

impl AppContext {
    /// The grant ledger of a channel paid for with grants.
    pub fn grants_of(&self, channel: ChannelKind) -> Result<&Arc<dyn GrantLedger>, LedgerError> {
        self.grants
            .get(&channel)
            .ok_or_else(|| LedgerError::Unavailable(format!("the {channel} channel keeps no grants")))
    }

    /// Grants what `openid` accepted on `channel` (one per accept of a
    /// one-time template, to the cap; a subscription for a long-term one)
    /// and counts every answer.
    pub async fn apply_answers(
        &self,
        channel: ChannelKind,
        openid: &OpenId,
        answers: &[Answered],
    ) -> Result<Applied, LedgerError> {
        let grants = self.grants_of(channel)?;
        let accepted: Vec<&TemplateId> = answers
            .iter()
            .filter(|(_, answer, _)| *answer == Answer::Accept)
            .map(|(template, _, _)| template)
            .collect();
        let outcome = if accepted.is_empty() {
            None
        } else {
            let long_term = self
                .templates
                .long_term(channel, accepted.iter().map(|t| t.as_str()))
                .await;
            let batch: Vec<(TemplateId, Accept)> = accepted
                .iter()
                .map(|template| {
                    let accept = if long_term.contains(template.as_str()) {
                        Accept::LongTerm
                    } else {
                        Accept::OneTime(1)
                    };
                    ((*template).clone(), accept)
                })
                .collect();
            Some(grants.add_accepts(openid, &batch).await?)
        };
        let now = self.clock.now();
        let mut applied = Applied::default();
        for (template, answer, raw) in answers {
            metrics::counter!(SUBSCRIBE_RESULTS, "app" => self.name.clone(), "result" => answer.label())
                .increment(1);
            if let Some(counter) = answer.counter(channel) {
                self.usage.count(now, counter, 1);
            }
            if *answer != Answer::Accept {
                applied.ignored.push((template.as_str().to_owned(), raw.clone()));
            }
        }
        if let Some(outcome) = outcome {
            self.usage.grant_events(now, channel, &outcome.events);
            for (template, held) in accepted.iter().zip(&outcome.held) {
                match held {
                    Holding::Grants(n) => {
                        applied.granted.insert(template.as_str().to_owned(), *n);
                    }
                    Holding::LongTerm => applied.long_term.push(template.as_str().to_owned()),
                }
            }
        }
        Ok(applied)
    }

    /// What `openid` changed in the settings page (of the mini-program, or
    /// of the official account for its notifications): a
    /// template turned off loses its grants (or its subscription); a
    /// long-term template turned on again is subscribed again. Turning a
    /// one-time template on grants nothing: only a popup's accept does.
    pub async fn apply_changes(
        &self,
        channel: ChannelKind,
        openid: &OpenId,
        changes: &[(TemplateId, bool)],
    ) -> Result<(), LedgerError> {
        let grants = self.grants_of(channel)?;
        let turned_on = changes.iter().filter(|(_, on)| *on).map(|(t, _)| t.as_str());
        let long_term = self.templates.long_term(channel, turned_on).await;
        let now = self.clock.now();
        for (template, on) in changes {
            let events = if !on {
                grants.burn_grants(openid, template).await?
            } else if long_term.contains(template.as_str()) {
                let batch = [(template.clone(), Accept::LongTerm)];
                grants.add_accepts(openid, &batch).await?.events
            } else {
                continue;
            };
            self.usage.grant_events(now, channel, &events);
        }
        Ok(())
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
