//! Usage reporting: counters fed by ingest, sends and ledger events,
//! aggregated in process and flushed to the store in batches
//! ([`UsageRecorder`]); and the report rows computed back from them.
//!
//! No counter key is written per request: each instance adds its tallies to
//! one hash per day every few seconds (and on shutdown), so a report may lag
//! other instances by at most the flush interval.

mod counter;
mod rows;
pub mod table;
mod usage;

pub use counter::{Counter, GrantCounter, Series};

pub use rows::{
    ByKind, FOLDED, Rejections, Sends, Summary, UsageRow, foldable, summary, summary_days, usage_row,
};
pub use usage::UsageRecorder;

use chrono::{DateTime, NaiveDate, Utc};

use crate::domain::CredentialKind;
use crate::store::{StoreError, TOTALS, UsageStore};

/// Most days one usage report covers.
pub const MAX_REPORT_DAYS: i64 = 366;

/// The usage rows of `days`; days long past are folded on the way so their
/// counters stay small.
pub async fn usage_rows(
    store: &dyn UsageStore,
    days: &[NaiveDate],
    now: DateTime<Utc>,
    offset: chrono::FixedOffset,
) -> Result<Vec<UsageRow>, StoreError> {
    let counters = store.usage(days).await?;
    let mut rows = Vec::with_capacity(days.len());
    for (day, fields) in days.iter().zip(&counters) {
        rows.push(usage_row(*day, fields, now, offset));
        if foldable(*day, fields, now, offset) {
            // Expired uses keep their total; past reach instants mean nothing.
            let uses = [CredentialKind::Form, CredentialKind::Prepay].map(|k| Series::Uses(k).prefix());
            store.fold_usage(*day, &uses, &[Series::Reach.prefix()]).await?;
        }
    }
    Ok(rows)
}

/// The live summary.
pub async fn live_summary(
    store: &dyn UsageStore,
    now: DateTime<Utc>,
    offset: chrono::FixedOffset,
) -> Result<Summary, StoreError> {
    let mut days = summary_days(now, offset);
    days.push(TOTALS);
    let mut counters = store.usage(&days).await?;
    let totals = counters.pop().unwrap_or_default();
    days.pop();
    Ok(summary(
        &days.into_iter().zip(counters).collect::<Vec<_>>(),
        &totals,
        now,
        offset,
    ))
}
