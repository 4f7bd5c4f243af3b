//! One openid's subscribe grants and grant leases, and the rules every
//! operation applies to them. The embedded ledger runs these rules
//! directly; `scripts/grants.lua` is a line-by-line translation (same steps,
//! same order), and the contract and property tests hold the two to
//! identical answers.
//!
//! Templates are named by a small number (see [`super::TemplateIndex`]) so
//! an entry costs three bytes in Redis. Rules applied at the start of every
//! write: leases past their deadline are refunded to their template.
//! Grants never expire (WeChat keeps them until used or cancelled); the
//! whole book is forgotten `retention` after its last change.
//!
//! A long-term template the user accepted is an entry whose count is
//! [`STANDING`]: a subscription, not a number of grants. Its sends take a
//! lease (so a 43101 can still end it) but spend nothing; a refund or a
//! lapsed lease gives nothing back; one-time accepts of it change nothing;
//! a burn ends it. The rule "a standing entry absorbs everything" holds
//! whatever kind of lease is settled against it.

use super::super::Settle;
use super::super::Settled;

pub(crate) type Secs = i64;
/// A template's number in the deployment's template dictionary.
pub(crate) type Tpl = u16;

/// The count of an entry that is a long-term subscription (stored as the
/// largest u16; the per-template cap keeps real counts far below it).
pub(crate) const STANDING: u32 = 0xFFFF;

/// What a user's accept of one template gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    /// Grants of a one-time template, one per accept.
    OneTime(u32),
    /// A long-term template: a subscription until the user turns it off.
    LongTerm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GrantLease {
    pub id: [u8; 8],
    pub deadline: Secs,
    pub template: Tpl,
}

/// What happened to grants, in template numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RawGrantEvent {
    Accepted {
        template: Tpl,
        grants: u32,
    },
    /// Accepts beyond the per-template cap, not kept.
    Capped {
        template: Tpl,
        grants: u32,
    },
    Spent {
        template: Tpl,
    },
    Burned {
        template: Tpl,
        grants: u32,
    },
    Refunded {
        template: Tpl,
    },
    /// A long-term subscription began, replacing `absorbed` one-time grants
    /// of the template.
    Subscribed {
        template: Tpl,
        absorbed: u32,
    },
    /// A message was sent on a long-term subscription (nothing spent).
    SentLongTerm {
        template: Tpl,
    },
    /// A long-term subscription ended (turned off, or WeChat's 43101).
    Ended {
        template: Tpl,
    },
}

impl RawGrantEvent {
    pub fn template(self) -> Tpl {
        match self {
            RawGrantEvent::Accepted { template, .. }
            | RawGrantEvent::Capped { template, .. }
            | RawGrantEvent::Spent { template }
            | RawGrantEvent::Burned { template, .. }
            | RawGrantEvent::Refunded { template }
            | RawGrantEvent::Subscribed { template, .. }
            | RawGrantEvent::SentLongTerm { template }
            | RawGrantEvent::Ended { template } => template,
        }
    }
}

/// Templates in first-granted order; leases in the order taken.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct GrantBook {
    pub leases: Vec<GrantLease>,
    pub entries: Vec<(Tpl, u32)>,
}

impl GrantBook {
    fn entry(&mut self, template: Tpl) -> Option<&mut u32> {
        self.entries
            .iter_mut()
            .find(|(t, _)| *t == template)
            .map(|(_, n)| n)
    }

    pub fn held(&self, template: Tpl) -> u32 {
        self.entries
            .iter()
            .find(|(t, _)| *t == template)
            .map_or(0, |(_, n)| *n)
    }

    fn leased(&self, template: Tpl) -> u32 {
        self.leases.iter().filter(|l| l.template == template).count() as u32
    }

    /// Templates with nothing held and nothing leased are dropped.
    fn tidy(&mut self) {
        let leases = self.leases.clone();
        self.entries
            .retain(|(t, n)| *n > 0 || leases.iter().any(|l| l.template == *t));
    }

    pub fn standing(&self, template: Tpl) -> bool {
        self.held(template) == STANDING
    }

    /// A lease's grant back to its template; nothing when the template is
    /// held as a long-term subscription.
    fn give_back(&mut self, template: Tpl, events: &mut Vec<RawGrantEvent>) {
        match self.entry(template) {
            Some(n) if *n == STANDING => return,
            Some(n) => *n += 1,
            None => self.entries.push((template, 1)),
        }
        events.push(RawGrantEvent::Refunded { template });
    }

    /// Makes `template` a long-term subscription; nothing when it already
    /// is one. Its one-time grants, held and leased, are absorbed: its
    /// leases settle as the subscription's.
    fn subscribe(&mut self, template: Tpl, events: &mut Vec<RawGrantEvent>) {
        let leased = self.leased(template);
        let held = match self.entry(template) {
            Some(n) if *n == STANDING => return,
            Some(n) => std::mem::replace(n, STANDING),
            None => {
                self.entries.push((template, STANDING));
                0
            }
        };
        events.push(RawGrantEvent::Subscribed {
            template,
            absorbed: held + leased,
        });
    }

    /// Grants held by leases: leases of long-term subscriptions hold none.
    pub fn leased_grants(&self) -> u32 {
        self.leases.iter().filter(|l| !self.standing(l.template)).count() as u32
    }

    /// Leases past their deadline give their grant back.
    pub fn housekeep(&mut self, now: Secs, events: &mut Vec<RawGrantEvent>) {
        let (stale, live): (Vec<GrantLease>, Vec<GrantLease>) = std::mem::take(&mut self.leases)
            .into_iter()
            .partition(|l| l.deadline <= now);
        self.leases = live;
        for lease in stale {
            self.give_back(lease.template, events);
        }
    }

    /// Adds `accepts` grants of each template, up to `cap` held or leased
    /// per template, or makes it a long-term subscription; returns what is
    /// now held of each ([`STANDING`] for a subscription), in batch order.
    pub fn add(&mut self, batch: &[(Tpl, Accept)], cap: u32, events: &mut Vec<RawGrantEvent>) -> Vec<u32> {
        let mut held = Vec::with_capacity(batch.len());
        for &(template, accept) in batch {
            let accepts = match accept {
                Accept::LongTerm => {
                    self.subscribe(template, events);
                    held.push(STANDING);
                    continue;
                }
                _ if self.standing(template) => {
                    held.push(STANDING);
                    continue;
                }
                Accept::OneTime(accepts) => accepts,
            };
            let room = cap.saturating_sub(self.held(template) + self.leased(template));
            let kept = accepts.min(room);
            if kept > 0 {
                match self.entry(template) {
                    Some(n) => *n += kept,
                    None => self.entries.push((template, kept)),
                }
                events.push(RawGrantEvent::Accepted {
                    template,
                    grants: kept,
                });
            }
            if accepts > kept {
                events.push(RawGrantEvent::Capped {
                    template,
                    grants: accepts - kept,
                });
            }
            held.push(self.held(template));
        }
        held
    }

    /// Takes one grant of `template` under `lease_id`, or returns the lease
    /// if it exists (whatever its template). A long-term subscription is
    /// leased without spending; so is a `long_term` template (the account's
    /// list says so) whose one-time grants were kept before that was known:
    /// they become the subscription.
    pub fn reserve(
        &mut self,
        template: Tpl,
        long_term: bool,
        lease_id: [u8; 8],
        deadline: Secs,
        events: &mut Vec<RawGrantEvent>,
    ) -> Option<GrantLease> {
        if let Some(existing) = self.leases.iter().find(|l| l.id == lease_id) {
            return Some(*existing);
        }
        if long_term && self.held(template) > 0 {
            self.subscribe(template, events);
        }
        let n = self.entry(template).filter(|n| **n > 0)?;
        if *n != STANDING {
            *n -= 1;
        }
        let lease = GrantLease {
            id: lease_id,
            deadline,
            template,
        };
        self.leases.push(lease);
        Some(lease)
    }

    /// Ends a lease. A burn drops every grant of the lease's template and
    /// cancels its other leases (the user turned the template off).
    pub fn settle(
        &mut self,
        lease_id: [u8; 8],
        how: Settle,
        hold_until: Secs,
        events: &mut Vec<RawGrantEvent>,
    ) -> (Settled, u32) {
        let Some(at) = self.leases.iter().position(|l| l.id == lease_id) else {
            return (Settled::UnknownLease, 0);
        };
        if how == Settle::Hold {
            let lease = &mut self.leases[at];
            lease.deadline = lease.deadline.max(hold_until);
            return (Settled::Held, 0);
        }
        let lease = self.leases.remove(at);
        let standing = self.standing(lease.template);
        let result = match how {
            Settle::Commit if standing => {
                events.push(RawGrantEvent::SentLongTerm {
                    template: lease.template,
                });
                (Settled::Spent, 0)
            }
            Settle::Commit => {
                events.push(RawGrantEvent::Spent {
                    template: lease.template,
                });
                (Settled::Spent, 0)
            }
            Settle::Burn if standing => {
                self.burn_all(lease.template, events);
                (Settled::Burned { uses: 0 }, 0)
            }
            Settle::Refund => {
                self.give_back(lease.template, events);
                (Settled::Refunded, 0)
            }
            Settle::Burn | Settle::Hold => {
                let burned = 1 + self.burn_all(lease.template, &mut Vec::new());
                events.push(RawGrantEvent::Burned {
                    template: lease.template,
                    grants: burned,
                });
                let uses = u8::try_from(burned).unwrap_or(u8::MAX);
                (Settled::Burned { uses }, burned)
            }
        };
        self.tidy();
        result
    }

    /// Drops every grant of `template` (or ends its long-term subscription)
    /// and cancels its leases; returns how many grants (held and leased)
    /// went.
    pub fn burn_all(&mut self, template: Tpl, events: &mut Vec<RawGrantEvent>) -> u32 {
        if self.standing(template) {
            self.entries.retain(|(t, _)| *t != template);
            self.leases.retain(|l| l.template != template);
            events.push(RawGrantEvent::Ended { template });
            return 0;
        }
        let held = self.entry(template).map_or(0, std::mem::take);
        let leased = self.leased(template);
        self.leases.retain(|l| l.template != template);
        let burned = held + leased;
        if burned > 0 {
            events.push(RawGrantEvent::Burned {
                template,
                grants: burned,
            });
        }
        self.tidy();
        burned
    }
}
