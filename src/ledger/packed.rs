//! The packed book: the bytes one openid's credentials are kept in, by
//! `book.lua` in Redis and by the embedded store on disk alike.
//!
//! `u8 version=2 | u16 lease count | leases | credentials (sorted)`, all
//! integers big-endian; a lease is `u32 deadline | u32 expires | 8 bytes
//! lease id | u8 meta | [u8 len] | id`, a credential `u32 expires | u8 meta
//! | [u8 len] | id`. Meta bits: 0-1 uses left, 2 prepay, 3 the id is packed
//! hex, 4 burned, 5 the id is 16 packed bytes (a WeChat formId) and has no
//! length byte. Version 1 (a length byte before every id) is read as well.

use super::LedgerError;
use super::book::{Book, Entry, Lease, Secs};
use super::stored_id::StoredId;
use crate::domain::CredentialKind;

const VERSION: u8 = 2;
const PREPAY: u8 = 4;
const HEX: u8 = 8;
const BURNED: u8 = 16;
const SIXTEEN: u8 = 32;

/// Reads a packed book (its header gives the form).
pub(crate) fn decode_book(blob: &[u8]) -> Result<Book, LedgerError> {
    let bad = || LedgerError::Corrupt("malformed book".into());
    let mut r = Reader { blob, at: 0 };
    if !matches!(r.u8().ok_or_else(bad)?, 1 | 2) {
        return Err(LedgerError::Corrupt("unknown book version".into()));
    }
    let count = r.u16().ok_or_else(bad)?;
    let mut book = Book::default();
    for _ in 0..count {
        let deadline = Secs::from(r.u32().ok_or_else(bad)?);
        let expires = Secs::from(r.u32().ok_or_else(bad)?);
        let id: [u8; 8] = r.take(8).ok_or_else(bad)?.try_into().map_err(|_| bad())?;
        let meta = r.u8().ok_or_else(bad)?;
        let key = r.key(meta).ok_or_else(bad)?;
        book.leases.push(Lease {
            id,
            deadline,
            expires,
            kind: kind_of(meta),
            key,
        });
    }
    while r.at < blob.len() {
        let expires = Secs::from(r.u32().ok_or_else(bad)?);
        let meta = r.u8().ok_or_else(bad)?;
        let key = r.key(meta).ok_or_else(bad)?;
        book.entries.push(Entry {
            expires,
            kind: kind_of(meta),
            uses_left: meta & 3,
            burned: meta & BURNED != 0,
            key,
        });
    }
    Ok(book)
}

fn kind_of(meta: u8) -> CredentialKind {
    if meta & PREPAY != 0 {
        CredentialKind::Prepay
    } else {
        CredentialKind::Form
    }
}

struct Reader<'a> {
    blob: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let slice = self.blob.get(self.at..self.at + n)?;
        self.at += n;
        Some(slice)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// An id; the meta byte says whether it is packed hex, and whether it
    /// is 16 bytes or has its length first.
    fn key(&mut self, meta: u8) -> Option<StoredId> {
        let len = if meta & SIXTEEN != 0 {
            16
        } else {
            usize::from(self.u8()?)
        };
        let mut key = vec![u8::from(meta & HEX != 0)];
        key.extend_from_slice(self.take(len)?);
        StoredId::from_bytes(key)
    }
}

/// Writes `book` as `book.lua` does.
pub(crate) fn encode_book(book: &Book) -> Vec<u8> {
    let mut blob = Vec::with_capacity(3 + 32 * (book.leases.len() + book.entries.len()));
    blob.push(VERSION);
    let leases = u16::try_from(book.leases.len()).unwrap_or(u16::MAX);
    blob.extend_from_slice(&leases.to_be_bytes());
    for lease in book.leases.iter().take(usize::from(leases)) {
        blob.extend_from_slice(&seconds(lease.deadline));
        blob.extend_from_slice(&seconds(lease.expires));
        blob.extend_from_slice(&lease.id);
        write_key(&mut blob, &lease.key, kind_bits(lease.kind));
    }
    for entry in &book.entries {
        blob.extend_from_slice(&seconds(entry.expires));
        let burned = if entry.burned { BURNED } else { 0 };
        write_key(
            &mut blob,
            &entry.key,
            kind_bits(entry.kind) | burned | (entry.uses_left & 3),
        );
    }
    blob
}

fn seconds(at: Secs) -> [u8; 4] {
    u32::try_from(at.max(0)).unwrap_or(u32::MAX).to_be_bytes()
}

fn kind_bits(kind: CredentialKind) -> u8 {
    match kind {
        CredentialKind::Prepay => PREPAY,
        CredentialKind::Form => 0,
    }
}

/// The meta byte (`meta` plus the id's own bits) and the id after it.
fn write_key(blob: &mut Vec<u8>, key: &StoredId, meta: u8) {
    let (flag, body) = key.as_bytes().split_first().unwrap_or((&0, &[]));
    let hex = if *flag == 1 { HEX } else { 0 };
    if hex != 0 && body.len() == 16 {
        blob.push(meta | hex | SIXTEEN);
    } else {
        blob.push(meta | hex);
        blob.push(u8::try_from(body.len()).unwrap_or(u8::MAX));
    }
    blob.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::CredentialId;

    fn key(id: &str) -> StoredId {
        StoredId::encode(&CredentialId::parse(id).unwrap())
    }

    #[test]
    fn a_book_reads_back_as_written() {
        let book = Book {
            leases: vec![Lease {
                id: *b"lease-01",
                deadline: 1_800_000_000,
                expires: 1_800_000_600,
                kind: CredentialKind::Prepay,
                key: key("wx2017121512345678901234567890"),
            }],
            entries: vec![
                Entry {
                    expires: 1_800_000_100,
                    kind: CredentialKind::Form,
                    uses_left: 1,
                    burned: false,
                    key: key("0123456789abcdef0123456789abcdef"),
                },
                Entry {
                    expires: 1_800_000_200,
                    kind: CredentialKind::Prepay,
                    uses_left: 0,
                    burned: true,
                    key: key("Verbatim_id-1"),
                },
            ],
        };
        let blob = encode_book(&book);
        assert_eq!(decode_book(&blob).unwrap(), book);
        // A WeChat formId costs its 16 bytes and no length byte.
        assert_eq!(
            blob.len(),
            3 + (4 + 4 + 8 + 1 + 1 + 30) + (4 + 1 + 16) + (4 + 1 + 1 + 13)
        );
    }
}
