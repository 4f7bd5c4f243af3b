//! WeChat's wire formats as formid-ledger reads them, apart from the
//! service so they can be fuzzed on their own (`fuzz/`): pure functions, no
//! I/O, no clock of their own.
//!
//! - `crypto`: push signatures and safe-mode encryption;
//! - `event`: push bodies in XML and JSON, to typed events;
//! - `verify`: opening a push (signature, timestamp window, decryption,
//!   appid) before anything reads it;
//! - `subscribe_data`: WeChat's rules for a subscribe message's `data`.

pub mod crypto;
pub mod event;
pub mod subscribe_data;
pub mod verify;
