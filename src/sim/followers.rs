//! The simulated official account's users: who follows it, who blocks its
//! messages, the ids its messages get, and the messages sent with a
//! `client_msg_id` in the last 10 minutes (WeChat sends one message per
//! follower and `client_msg_id` in that time). Plain data that `state`
//! keeps; the send route that reads it is `official_account`.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

/// The official account's users.
#[derive(Debug, Default)]
pub struct Followers {
    pub(super) following: HashSet<String>,
    pub(super) blocking: HashSet<String>,
    pub(super) next_msgid: u64,
    /// (touser, client_msg_id) → the message's msgid and when it was sent.
    pub(super) sent_with_id: HashMap<(String, String), (u64, DateTime<Utc>)>,
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
}
