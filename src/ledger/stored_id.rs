//! The compact form of a credential id as both ledgers store it.
//!
//! WeChat formIds are 32 lowercase hex characters; stored as 16 raw bytes
//! they cost half. Any even-length lowercase hex id is packed the same way
//! (it round-trips exactly); every other id is kept verbatim. The first byte
//! of the key says which, so a packed id can never collide with a verbatim
//! one whose bytes happen to be equal.

use crate::domain::CredentialId;

const VERBATIM: u8 = 0;
const HEX_PACKED: u8 = 1;

/// A credential id in stored form: a flag byte followed by the id bytes.
///
/// Its byte order is the tie-break of the spend order (after expiry), so the
/// embedded ledger and the Lua scripts compare exactly the same bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct StoredId(Vec<u8>);

impl StoredId {
    pub(crate) fn encode(id: &CredentialId) -> Self {
        let raw = id.as_str();
        let packable = raw.len().is_multiple_of(2)
            && raw.len() <= 64
            && raw
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let mut key = Vec::with_capacity(1 + raw.len());
        match hex::decode(raw) {
            Ok(bytes) if packable => {
                key.push(HEX_PACKED);
                key.extend_from_slice(&bytes);
            }
            _ => {
                key.push(VERBATIM);
                key.extend_from_slice(raw.as_bytes());
            }
        }
        Self(key)
    }

    /// Rebuilds a key read back from the store; `None` if the bytes were not
    /// written by [`StoredId::encode`].
    pub(crate) fn from_bytes(bytes: Vec<u8>) -> Option<Self> {
        let key = Self(bytes);
        key.decode().map(|_| key)
    }

    pub(crate) fn decode(&self) -> Option<CredentialId> {
        let (flag, body) = self.0.split_first()?;
        let text = match *flag {
            HEX_PACKED => hex::encode(body),
            VERBATIM => String::from_utf8(body.to_vec()).ok()?,
            _ => return None,
        };
        CredentialId::parse(&text).ok()
    }

    #[cfg(test)]
    pub(crate) fn is_hex_packed(&self) -> bool {
        self.0.first() == Some(&HEX_PACKED)
    }

    /// The id bytes without the flag.
    #[cfg(test)]
    pub(crate) fn body(&self) -> &[u8] {
        &self.0[1..]
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> CredentialId {
        CredentialId::parse(s).unwrap()
    }

    #[test]
    fn hex_form_ids_take_half_the_bytes() {
        let key = StoredId::encode(&id("0a1b2c3d4e5f60718293a4b5c6d7e8f9"));
        assert!(key.is_hex_packed());
        assert_eq!(key.body().len(), 16);
        assert_eq!(key.decode().unwrap().as_str(), "0a1b2c3d4e5f60718293a4b5c6d7e8f9");
    }

    #[test]
    fn other_ids_round_trip_verbatim() {
        for raw in ["0A1B", "abc", "wx2014abc", "deadbeef_", &"f".repeat(66)] {
            let key = StoredId::encode(&id(raw));
            assert!(!key.is_hex_packed(), "{raw}");
            assert_eq!(key.decode().unwrap().as_str(), raw);
        }
    }

    #[test]
    fn packed_and_verbatim_never_collide() {
        // "4141" packs to the bytes "AA"; the verbatim id "AA" has the same body.
        let packed = StoredId::encode(&id("4141"));
        let verbatim = StoredId::encode(&id("AA"));
        assert_eq!(packed.body(), verbatim.body());
        assert_ne!(packed, verbatim);
    }
}
