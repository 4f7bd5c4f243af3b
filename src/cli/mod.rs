//! The commands besides `serve` that read the same configuration: the
//! account's templates (`templates`) and the usage report (`report`). Each
//! opens what it needs through `bootstrap`; none serves requests.

pub mod report;
pub mod templates;
