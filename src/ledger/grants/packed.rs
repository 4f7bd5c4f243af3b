//! The packed grant book: the bytes one openid's grants are kept in, by
//! `scripts/grants/book.lua` in Redis and by the embedded store on disk.
//!
//! `u8 version=1 | u32 kept until | u16 lease count | leases | entries`,
//! integers big-endian; a lease is `u32 deadline | 8 bytes lease id | u16
//! template`, an entry `u16 template | u16 grants` ([`super::book::STANDING`]:
//! a long-term subscription). Templates are dictionary numbers.

use super::book::{GrantBook, GrantLease, Secs};
use crate::ledger::LedgerError;

const VERSION: u8 = 1;

/// Reads a packed grant book; one kept until `now` or before reads empty.
pub(crate) fn decode(blob: &[u8], now: Secs) -> Result<GrantBook, LedgerError> {
    let bad = || LedgerError::Corrupt("malformed grant book".into());
    let take = |at: &mut usize, n: usize| -> Result<&[u8], LedgerError> {
        let slice = blob.get(*at..*at + n).ok_or_else(bad)?;
        *at += n;
        Ok(slice)
    };
    let u16_at = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    let u32_at = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let mut at = 0;
    if take(&mut at, 1)?[0] != VERSION {
        return Err(LedgerError::Corrupt("unknown grant book version".into()));
    }
    let kept_until = Secs::from(u32_at(take(&mut at, 4)?));
    let count = u16_at(take(&mut at, 2)?);
    if kept_until <= now {
        return Ok(GrantBook::default());
    }
    let mut book = GrantBook::default();
    for _ in 0..count {
        let deadline = Secs::from(u32_at(take(&mut at, 4)?));
        let id: [u8; 8] = take(&mut at, 8)?.try_into().map_err(|_| bad())?;
        let template = u16_at(take(&mut at, 2)?);
        book.leases.push(GrantLease {
            id,
            deadline,
            template,
        });
    }
    while at < blob.len() {
        let template = u16_at(take(&mut at, 2)?);
        let grants = u32::from(u16_at(take(&mut at, 2)?));
        book.entries.push((template, grants));
    }
    Ok(book)
}

/// Writes `book`, kept until `kept_until`, as `book.lua` does.
pub(crate) fn encode(book: &GrantBook, kept_until: Secs) -> Vec<u8> {
    let mut blob = Vec::with_capacity(7 + 14 * book.leases.len() + 4 * book.entries.len());
    blob.push(VERSION);
    blob.extend_from_slice(&seconds(kept_until));
    let leases = u16::try_from(book.leases.len()).unwrap_or(u16::MAX);
    blob.extend_from_slice(&leases.to_be_bytes());
    for lease in book.leases.iter().take(usize::from(leases)) {
        blob.extend_from_slice(&seconds(lease.deadline));
        blob.extend_from_slice(&lease.id);
        blob.extend_from_slice(&lease.template.to_be_bytes());
    }
    for (template, grants) in &book.entries {
        blob.extend_from_slice(&template.to_be_bytes());
        blob.extend_from_slice(&u16::try_from(*grants).unwrap_or(u16::MAX).to_be_bytes());
    }
    blob
}

fn seconds(at: Secs) -> [u8; 4] {
    u32::try_from(at.max(0)).unwrap_or(u32::MAX).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::grants::book::STANDING;

    #[test]
    fn a_grant_book_reads_back_as_written_until_its_time() {
        let book = GrantBook {
            leases: vec![GrantLease {
                id: *b"lease-02",
                deadline: 1_800_000_030,
                template: 7,
            }],
            entries: vec![(3, 2), (7, STANDING)],
        };
        let blob = encode(&book, 1_800_000_000);
        assert_eq!(blob.len(), 7 + 14 + 8);
        assert_eq!(decode(&blob, 1_799_999_999).unwrap(), book);
        assert_eq!(decode(&blob, 1_800_000_000).unwrap(), GrantBook::default());
    }
}
