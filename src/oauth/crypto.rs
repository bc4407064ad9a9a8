//! Encryption of stored tokens: AES-256-GCM (the `aes-gcm` crate, RustCrypto, audited), a
//! fresh 96-bit nonce per value, and the tenant and field as associated data so a ciphertext
//! cannot be moved to another tenant or field and still decrypt.
//!
//! Stored form: `v1.<key id>.<base64 nonce>.<base64 ciphertext>`. The key id (a digest prefix
//! of the key) lets a key ring hold the previous key during a rotation.

use std::fmt;
use std::path::Path;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("an encryption key is 32 bytes, base64-encoded (got {0} bytes)")]
    KeyLength(usize),
    #[error("the encryption key is not valid base64")]
    KeyEncoding,
    #[error("stored secret is malformed")]
    Malformed,
    #[error("stored secret was encrypted with key {0}, which is not configured")]
    UnknownKey(String),
    #[error("stored secret failed authentication (wrong key, or tampered)")]
    Authentication,
    #[error("key file {path}: {source}")]
    KeyFile {
        path: String,
        source: std::io::Error,
    },
}

/// A token or other secret in memory. Its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A short, non-reversible name for the secret, safe for events and logs.
    pub fn fingerprint(&self) -> String {
        hex::encode(&Sha256::digest(self.0.as_bytes())[..6])
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.fingerprint())
    }
}

/// One AES-256 key and its id.
#[derive(Clone)]
pub struct EncryptionKey {
    id: String,
    cipher: Aes256Gcm,
    /// A second key derived from this one for signing (never used to encrypt), so that
    /// signed links need no key of their own in the configuration.
    signing: [u8; 32],
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncryptionKey({})", self.id)
    }
}

impl EncryptionKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.len() != 32 {
            return Err(CryptoError::KeyLength(bytes.len()));
        }
        let id = hex::encode(&Sha256::digest(bytes)[..4]);
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(bytes));
        let signing = Sha256::new()
            .chain_update(b"bling-ledger signing key v1\0")
            .chain_update(bytes)
            .finalize()
            .into();
        Ok(Self {
            id,
            cipher,
            signing,
        })
    }

    pub fn from_base64(text: &str) -> Result<Self, CryptoError> {
        let bytes = B64
            .decode(text.trim())
            .map_err(|_| CryptoError::KeyEncoding)?;
        Self::from_bytes(&bytes)
    }

    /// A new random key, base64-encoded, for `bling-ledger key new` and the local key file.
    pub fn generate_base64() -> String {
        B64.encode(Aes256Gcm::generate_key(OsRng))
    }

    /// Reads the key file, creating it (mode 0600) with a new key when it does not exist. Used
    /// for the embedded SQLite default only; PostgreSQL deployments must configure a key.
    pub fn load_or_create_file(path: &Path) -> Result<Self, CryptoError> {
        let io = |source| CryptoError::KeyFile {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_base64(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let text = Self::generate_base64();
                write_private(path, &text).map_err(io)?;
                Self::from_base64(&text)
            }
            Err(e) => Err(io(e)),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

/// Creates `path` with `text`, readable by its owner only (mode 0600); fails if it exists.
pub fn write_private_file(path: &Path, text: &str) -> std::io::Result<()> {
    write_private(path, text)
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

/// The current key, which encrypts, and older keys that may still decrypt.
#[derive(Clone, Debug)]
pub struct KeyRing {
    current: EncryptionKey,
    previous: Vec<EncryptionKey>,
}

impl KeyRing {
    pub fn new(current: EncryptionKey) -> Self {
        Self {
            current,
            previous: Vec::new(),
        }
    }

    pub fn with_previous(mut self, key: EncryptionKey) -> Self {
        self.previous.push(key);
        self
    }

    /// This ring, also able to decrypt with every key of `older` (a process that was given
    /// several rings, such as a test binary starting several services, reads what each wrote).
    pub fn merged_with(&self, older: &KeyRing) -> KeyRing {
        let mut ring = self.clone();
        for key in std::iter::once(&older.current).chain(&older.previous) {
            if key.id != ring.current.id && ring.previous.iter().all(|k| k.id != key.id) {
                ring.previous.push(key.clone());
            }
        }
        ring
    }

    pub fn current_id(&self) -> &str {
        self.current.id()
    }

    /// The signing key derived from the current key (self-service reconnect links are signed
    /// with it): rotating the encryption key invalidates what it signed.
    pub fn signing_key(&self) -> [u8; 32] {
        self.current.signing
    }

    pub fn encrypt(&self, plaintext: &Secret, context: &str) -> Result<String, CryptoError> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = self
            .current
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.expose().as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Authentication)?;
        Ok(format!(
            "v1.{}.{}.{}",
            self.current.id,
            B64.encode(nonce),
            B64.encode(sealed)
        ))
    }

    pub fn decrypt(&self, stored: &str, context: &str) -> Result<Secret, CryptoError> {
        let mut parts = stored.split('.');
        let (Some("v1"), Some(id), Some(nonce), Some(sealed), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(CryptoError::Malformed);
        };
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == id)
            .ok_or_else(|| CryptoError::UnknownKey(id.to_string()))?;
        let nonce = B64.decode(nonce).map_err(|_| CryptoError::Malformed)?;
        if nonce.len() != 12 {
            return Err(CryptoError::Malformed);
        }
        let sealed = B64.decode(sealed).map_err(|_| CryptoError::Malformed)?;
        let plain = key
            .cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &sealed,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Authentication)?;
        String::from_utf8(plain)
            .map(Secret)
            .map_err(|_| CryptoError::Malformed)
    }

    /// Whether a stored value needs re-encryption under the current key.
    pub fn is_current(&self, stored: &str) -> bool {
        stored
            .split('.')
            .nth(1)
            .is_some_and(|id| id == self.current.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> KeyRing {
        KeyRing::new(EncryptionKey::from_base64(&EncryptionKey::generate_base64()).unwrap())
    }

    #[test]
    fn round_trip_and_context_binding() {
        let ring = ring();
        let token = Secret::new("eyJhbGciOi.very-secret");
        let stored = ring.encrypt(&token, "shop-1/access").unwrap();
        assert!(!stored.contains("very-secret"));
        assert_eq!(ring.decrypt(&stored, "shop-1/access").unwrap(), token);
        assert!(matches!(
            ring.decrypt(&stored, "shop-2/access"),
            Err(CryptoError::Authentication)
        ));
        // Same plaintext, different nonce.
        assert_ne!(stored, ring.encrypt(&token, "shop-1/access").unwrap());
    }

    #[test]
    fn tampering_and_unknown_keys_are_refused() {
        let ring = ring();
        let stored = ring.encrypt(&Secret::new("t"), "c").unwrap();
        let mut tampered = stored.clone().into_bytes();
        let last = tampered.len() - 3;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(ring.decrypt(&tampered, "c").is_err());
        assert!(matches!(
            other().decrypt(&stored, "c"),
            Err(CryptoError::UnknownKey(_))
        ));
        assert!(matches!(
            ring.decrypt("plain", "c"),
            Err(CryptoError::Malformed)
        ));
    }

    fn other() -> KeyRing {
        ring()
    }

    #[test]
    fn rotation_keeps_old_values_readable() {
        let old = EncryptionKey::from_base64(&EncryptionKey::generate_base64()).unwrap();
        let new = EncryptionKey::from_base64(&EncryptionKey::generate_base64()).unwrap();
        let stored = KeyRing::new(old.clone())
            .encrypt(&Secret::new("t"), "c")
            .unwrap();
        let rotated = KeyRing::new(new).with_previous(old);
        assert!(!rotated.is_current(&stored));
        assert_eq!(rotated.decrypt(&stored, "c").unwrap().expose(), "t");
        let again = rotated.encrypt(&Secret::new("t"), "c").unwrap();
        assert!(rotated.is_current(&again));
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("super-secret-token");
        assert!(!format!("{s:?}").contains("super-secret"));
        assert_eq!(s.fingerprint().len(), 12);
        assert!(matches!(
            EncryptionKey::from_bytes(&[0; 16]),
            Err(CryptoError::KeyLength(16))
        ));
    }
}
