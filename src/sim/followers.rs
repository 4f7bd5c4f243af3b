//! The simulated official account's users: who follows it, who blocks its
//! messages, and the ids its messages get. Plain data that `state` keeps;
//! the send route that reads it is `official_account`.

use std::collections::HashSet;

/// The official account's users.
#[derive(Debug, Default)]
pub struct Followers {
    pub(super) following: HashSet<String>,
    pub(super) blocking: HashSet<String>,
    pub(super) next_msgid: u64,
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
