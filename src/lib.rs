//! formid-ledger: keeps WeChat mini-program users' formIds and prepay_ids
//! and spends them, oldest first and exactly once, to send template
//! messages.

pub mod domain;
pub mod ledger;
