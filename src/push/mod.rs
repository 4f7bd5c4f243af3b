//! WeChat's pushes (docs/pushes.md): their signatures and safe-mode encryption
//! (`crypto`), their bodies in XML or JSON (`event`), verifying and opening
//! one (`verify`), and the delivery status they report (`receipts`).

pub mod crypto;
pub mod event;
pub mod inbox;
pub mod receipts;
pub mod verify;
