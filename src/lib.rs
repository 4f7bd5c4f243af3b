//! formid-ledger: keeps WeChat mini-program users' formIds and prepay_ids
//! and spends them, oldest first and exactly once, to send template
//! messages.
//!
//! Layout: `domain` (value types), `ledger` (the store of credentials),
//! `store` (tokens, idempotency records, caches, report counters),
//! `wechat` (the WeChat client), `send` (the send pipeline), `channels`
//! (what each kind of message spends and answers), `templates`
//! (template libraries and the cached account lists), `push` (WeChat's
//! pushes: verified and opened by the `wechat_wire` crate, taken in once,
//! their receipts), `quota` (WeChat's send quotas), `report` (usage
//! counters), `apps`
//! (one context per app of the deployment, and the popup answers applied
//! to it), `bootstrap` (stores and clients from the configuration),
//! `sim` (the WeChat simulator), `auth`, `api` (HTTP handlers), `app`
//! (wiring, imported by the binary only).

pub mod api;
pub mod app;
pub mod apps;
pub mod auth;
pub mod bootstrap;
pub mod channels;
pub mod cli;
pub mod clock;
pub mod config;
pub mod domain;
pub mod error;
pub mod idempotency;
pub mod ledger;
pub mod metrics;
pub mod push;
pub mod quota;
pub mod report;
pub mod send;
pub mod sim;
pub mod store;
pub mod telemetry;
pub mod templates;
pub mod wechat;
