//! The simulated official account's users: who follows it, who blocks its
//! messages, the ids its messages get, and the messages sent with a
//! `client_msg_id` in the last 10 minutes (WeChat sends one message per
//! follower and `client_msg_id` in that time). Plain data that `state`
//! keeps; the send route that reads it is `official_account`.

use std::collections::{HashMap, HashSet, VecDeque};

use chrono::{DateTime, Utc};

/// The official account's users.
#[derive(Debug, Default)]
pub struct Followers {
    pub(super) following: HashSet<String>,
    pub(super) blocking: HashSet<String>,
    pub(super) next_msgid: u64,
    /// (touser, client_msg_id) → the message's msgid and when it was sent.
    sent_with_id: HashMap<(String, String), (u64, DateTime<Utc>)>,
    /// The same keys in the order sent, so the expired leave from the front.
    sent_order: VecDeque<(DateTime<Utc>, (String, String))>,
}

impl Followers {
    pub fn follow(&mut self, openid: &str) {
        self.following.insert(openid.to_owned());
    }

    /// The user blocks the account's messages (and follows it: a blocked
    /// message is still accepted, then fails).
    pub fn block(&mut self, openid: &str) {
        self.following.insert(openid.to_owned());
        self.blocking.insert(openid.to_owned());
    }

    /// The msgid of a message sent to `key` within `window` before `now`
    /// (older ones are forgotten first).
    pub fn sent_recently(
        &mut self,
        key: &(String, String),
        window: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Option<u64> {
        while let Some((at, _)) = self.sent_order.front()
            && now - *at >= window
        {
            let (at, old) = self.sent_order.pop_front().expect("a front entry");
            if self.sent_with_id.get(&old).is_some_and(|(_, sent)| *sent == at) {
                self.sent_with_id.remove(&old);
            }
        }
        self.sent_with_id.get(key).map(|(msgid, _)| *msgid)
    }

    /// Remembers that `msgid` went to `key` at `now`.
    pub fn remember_sent(&mut self, key: (String, String), msgid: u64, now: DateTime<Utc>) {
        self.sent_order.push_back((now, key.clone()));
        self.sent_with_id.insert(key, (msgid, now));
    }
}
