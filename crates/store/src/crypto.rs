//! Credentials at rest: AES-256-GCM with a keyring so keys can rotate.
//!
//! Guarantees:
//! - Every write uses the keyring's current key and a fresh random 96-bit nonce; the key's id
//!   is stored beside the ciphertext, so rows written under an older key stay readable as long
//!   as that key is still listed as a previous key.
//! - The ciphertext is bound to its row: the associated data names the tenant, the provider
//!   and the key id, so a ciphertext copied to another tenant's row does not decrypt.
//! - A wrong key, an unknown key id or altered bytes give [`StoreError::Crypto`] with a message
//!   that says which key and what to do — never garbage.
//! - Key bytes and plaintext never appear in `Debug` output; plaintext buffers are zeroed
//!   when dropped.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use rand::rngs::OsRng;
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretBox, SecretString};

use ports::StoreError;

/// Length of an AES-GCM nonce (NIST SP 800-38D recommends 96 bits for random nonces).
pub(crate) const NONCE_LEN: usize = 12;

/// Why a key from the configuration was rejected. Messages never contain key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("key id {0:?} is not valid: use 1-32 characters of letters, digits, '-' or '_'")]
    BadId(String),
    #[error("key {id:?} is not valid base64 (standard alphabet, padded)")]
    BadBase64 { id: String },
    #[error(
        "key {id:?} decodes to {len} bytes; AES-256 needs exactly 32 (e.g. `openssl rand -base64 32`)"
    )]
    BadLength { id: String, len: usize },
    #[error("key id {0:?} appears twice in the keyring")]
    DuplicateId(String),
    #[error("keyring entry {0} is not of the form <id>:<base64 key>")]
    BadEntry(usize),
    #[error("the keyring is empty: configure at least the current key")]
    Empty,
}

/// One AES-256 key and its id.
pub struct DataKey {
    id: String,
    key: SecretBox<[u8; 32]>,
}

impl DataKey {
    /// A key from its configured base64 form (standard alphabet, 32 bytes once decoded).
    pub fn from_base64(id: impl Into<String>, key: &SecretString) -> Result<Self, KeyError> {
        let id = validate_id(id.into())?;
        let bytes = Zeroizing::new(
            STANDARD
                .decode(key.expose_secret().trim())
                .map_err(|_| KeyError::BadBase64 { id: id.clone() })?,
        );
        let len = bytes.len();
        let array: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::BadLength {
                id: id.clone(),
                len,
            })?;
        Ok(Self {
            id,
            key: SecretBox::new(Box::new(array)),
        })
    }

    /// A fresh random key (tests, and a first-run default the operator is told to keep).
    pub fn generate(id: impl Into<String>) -> Result<Self, KeyError> {
        let id = validate_id(id.into())?;
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        Ok(Self {
            id,
            key: SecretBox::new(Box::new(bytes)),
        })
    }

    /// The base64 form of the key, for writing it to a secret store once.
    pub fn to_base64(&self) -> SecretString {
        SecretString::from(STANDARD.encode(self.key.expose_secret()))
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.key.expose_secret().into())
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey")
            .field("id", &self.id)
            .field("key", &"[REDACTED]")
            .finish()
    }
}

fn validate_id(id: String) -> Result<String, KeyError> {
    let ok = !id.is_empty()
        && id.len() <= 32
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok { Ok(id) } else { Err(KeyError::BadId(id)) }
}

/// The current key (used for every write) and previous keys (used only to read rows written
/// before a rotation).
///
/// Rotation: add the new key as current and list the old one as previous; rows are re-sealed
/// under the new key as they are written (every token refresh writes) or all at once by
/// `Store::reseal_credentials`, after which the old key can be dropped.
pub struct Keyring {
    current: DataKey,
    previous: Vec<DataKey>,
}

impl Keyring {
    pub fn new(current: DataKey) -> Self {
        Self {
            current,
            previous: Vec::new(),
        }
    }

    /// Add a key that is only used to decrypt.
    pub fn with_previous(mut self, key: DataKey) -> Result<Self, KeyError> {
        if self.find(key.id()).is_some() {
            return Err(KeyError::DuplicateId(key.id));
        }
        self.previous.push(key);
        Ok(self)
    }

    /// Parse the configuration form `<id>:<base64>[,<id>:<base64>…]`: the first entry is the
    /// current key, the rest are previous keys. White space around entries is ignored.
    pub fn parse(spec: &SecretString) -> Result<Self, KeyError> {
        let mut entries = spec
            .expose_secret()
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .enumerate()
            .map(|(i, entry)| {
                let (id, key) = entry.split_once(':').ok_or(KeyError::BadEntry(i + 1))?;
                DataKey::from_base64(id.trim(), &SecretString::from(key.trim().to_owned()))
            });
        let current = entries.next().ok_or(KeyError::Empty)??;
        entries.try_fold(Self::new(current), |ring, key| ring.with_previous(key?))
    }

    /// The id new writes are sealed under.
    pub fn current_id(&self) -> &str {
        self.current.id()
    }

    fn find(&self, id: &str) -> Option<&DataKey> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id() == id)
    }

    /// Encrypt `plaintext` for the row (tenant, provider) under the current key.
    pub(crate) fn seal(
        &self,
        row: &RowBinding<'_>,
        plaintext: &[u8],
    ) -> Result<Sealed, StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let aad = row.associated_data(self.current.id());
        let ciphertext = self
            .current
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| StoreError::Crypto {
                message: format!(
                    "cannot encrypt the {} credentials of tenant {} with key {:?}",
                    row.provider,
                    row.tenant,
                    self.current.id()
                ),
            })?;
        Ok(Sealed {
            key_id: self.current.id().to_owned(),
            nonce: nonce.to_vec(),
            ciphertext,
        })
    }

    /// Decrypt a stored row.
    pub(crate) fn open(
        &self,
        row: &RowBinding<'_>,
        sealed: &Sealed,
    ) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        let key = self
            .find(&sealed.key_id)
            .ok_or_else(|| StoreError::Crypto {
                message: format!(
                    "the {} credentials of tenant {} were encrypted with key {:?}, which is not in \
                 the keyring (configured: {}); add that key as a previous key",
                    row.provider,
                    row.tenant,
                    sealed.key_id,
                    self.ids().join(", ")
                ),
            })?;
        if sealed.nonce.len() != NONCE_LEN {
            return Err(StoreError::Crypto {
                message: format!(
                    "the {} credentials of tenant {} have a {}-byte nonce; expected {NONCE_LEN}",
                    row.provider,
                    row.tenant,
                    sealed.nonce.len()
                ),
            });
        }
        let aad = row.associated_data(&sealed.key_id);
        key.cipher()
            .decrypt(
                Nonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| StoreError::Crypto {
                message: format!(
                    "the {} credentials of tenant {} do not decrypt with key {:?}: the key \
                     configured under that id is not the one they were written with, or the \
                     row was altered",
                    row.provider, row.tenant, sealed.key_id
                ),
            })
    }

    fn ids(&self) -> Vec<&str> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .map(DataKey::id)
            .collect()
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current.id())
            .field(
                "previous",
                &self.previous.iter().map(DataKey::id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// The row a ciphertext belongs to.
pub(crate) struct RowBinding<'a> {
    pub tenant: &'a str,
    pub provider: &'a str,
}

impl RowBinding<'_> {
    fn associated_data(&self, key_id: &str) -> Vec<u8> {
        let mut aad = Vec::with_capacity(64);
        aad.extend_from_slice(b"ges-credential-v1\0");
        for part in [self.tenant, self.provider, key_id] {
            aad.extend_from_slice(part.as_bytes());
            aad.push(0);
        }
        aad
    }
}

/// What is stored: key id, nonce, ciphertext (with the GCM tag appended).
pub(crate) struct Sealed {
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> RowBinding<'static> {
        RowBinding {
            tenant: "acme",
            provider: "ghl",
        }
    }

    #[test]
    fn round_trip_and_fresh_nonces() {
        let ring = Keyring::new(DataKey::generate("k1").unwrap());
        let a = ring.seal(&row(), b"secret").unwrap();
        let b = ring.seal(&row(), b"secret").unwrap();
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
        assert_eq!(ring.open(&row(), &a).unwrap().as_slice(), b"secret");
    }

    #[test]
    fn wrong_key_unknown_key_and_other_row_fail_with_crypto() {
        let ring = Keyring::new(DataKey::generate("k1").unwrap());
        let sealed = ring.seal(&row(), b"secret").unwrap();
        let other = Keyring::new(DataKey::generate("k1").unwrap());
        let err = other.open(&row(), &sealed).unwrap_err();
        assert!(matches!(&err, StoreError::Crypto { message } if message.contains("\"k1\"")));
        let unknown = Keyring::new(DataKey::generate("k2").unwrap());
        let err = unknown.open(&row(), &sealed).unwrap_err();
        assert!(
            matches!(&err, StoreError::Crypto { message } if message.contains("not in the keyring"))
        );
        let moved = RowBinding {
            tenant: "other",
            provider: "ghl",
        };
        assert!(matches!(
            ring.open(&moved, &sealed),
            Err(StoreError::Crypto { .. })
        ));
    }

    #[test]
    fn rotation_reads_old_rows_and_writes_with_the_new_key() {
        let old = DataKey::generate("k1").unwrap();
        let old_b64 = old.to_base64();
        let sealed = Keyring::new(old).seal(&row(), b"secret").unwrap();
        let spec = format!(
            "k2:{}, k1:{}",
            DataKey::generate("k2").unwrap().to_base64().expose_secret(),
            old_b64.expose_secret()
        );
        let ring = Keyring::parse(&SecretString::from(spec)).unwrap();
        assert_eq!(ring.current_id(), "k2");
        assert_eq!(ring.open(&row(), &sealed).unwrap().as_slice(), b"secret");
        assert_eq!(ring.seal(&row(), b"x").unwrap().key_id, "k2");
    }

    #[test]
    fn config_errors_name_the_problem_and_not_the_key() {
        let short = SecretString::from(STANDARD.encode([7u8; 16]));
        assert_eq!(
            DataKey::from_base64("k1", &short).unwrap_err(),
            KeyError::BadLength {
                id: "k1".into(),
                len: 16
            }
        );
        assert!(matches!(
            DataKey::from_base64("k1", &SecretString::from("not base64!".to_owned())),
            Err(KeyError::BadBase64 { .. })
        ));
        assert!(matches!(
            DataKey::from_base64("bad id", &short),
            Err(KeyError::BadId(_))
        ));
        assert_eq!(
            Keyring::parse(&SecretString::from(String::new())).unwrap_err(),
            KeyError::Empty
        );
        let k = DataKey::generate("k1").unwrap().to_base64();
        let dup = format!("k1:{0},k1:{0}", k.expose_secret());
        assert_eq!(
            Keyring::parse(&SecretString::from(dup)).unwrap_err(),
            KeyError::DuplicateId("k1".into())
        );
        let debug = format!(
            "{:?}",
            Keyring::parse(&SecretString::from(format!("k1:{}", k.expose_secret()))).unwrap()
        );
        assert!(!debug.contains(k.expose_secret()));
        assert!(debug.contains("k1"));
    }
}
