//! WeChat's pushes (docs/pushes.md): their signatures and safe-mode encryption
//! (`crypto`), their bodies in XML or JSON (`event`) and verifying and
//! opening one (`verify`), from the `wechat_wire` crate; taking each in once
//! (`inbox`) and the delivery status they report (`receipts`).

pub mod inbox;
pub mod receipts;

pub use wechat_wire::{crypto, event, verify};
