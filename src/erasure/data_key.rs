//! A customer's data key: the AES-256-GCM key its personal data is encrypted under.
//!
//! - A data key is 256 random bits, made when the customer's first profile is stored.
//! - It is stored only *wrapped*: encrypted by the master key ring
//!   ([`crate::oauth::crypto::KeyRing`], the same key that encrypts Bling tokens), with the
//!   customer's stream id as associated data, so a wrapped key moved to another customer does
//!   not unwrap.
//! - A profile is encrypted as one value, `pii1.<base64 nonce>.<base64 ciphertext>`, a fresh
//!   96-bit nonce each time, with the stream id and the field (`profile`) as associated data.
//! - Erasure destroys the wrapped key; without it the ciphertexts in the log are noise, and
//!   the log's seals, which cover the ciphertext, still verify.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use crate::oauth::crypto::{CryptoError, KeyRing, Secret};

/// The prefix of an encrypted personal value.
pub const PREFIX: &str = "pii1";

/// One customer's key, unwrapped, in memory only while a read or an append needs it.
#[derive(Clone)]
pub struct DataKey {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

/// What the master key binds a wrapped data key to.
fn wrap_context(stream_id: &str) -> String {
    format!("customer-data-key/{stream_id}")
}

/// What a personal value's ciphertext is bound to: the customer and the field.
fn field_context(stream_id: &str, field: &str) -> String {
    format!("bling-ledger pii v1\0{stream_id}\0{field}")
}

impl DataKey {
    /// A new random key and its wrapped form, to store.
    pub fn generate(master: &KeyRing, stream_id: &str) -> Result<(DataKey, String), CryptoError> {
        let bytes = Aes256Gcm::generate_key(OsRng);
        let wrapped = master.encrypt(&Secret::new(B64.encode(bytes)), &wrap_context(stream_id))?;
        Ok((
            DataKey {
                cipher: Aes256Gcm::new(&bytes),
            },
            wrapped,
        ))
    }

    /// Unwraps a stored key with the master key ring.
    pub fn unwrap_with(
        master: &KeyRing,
        stream_id: &str,
        wrapped: &str,
    ) -> Result<DataKey, CryptoError> {
        let secret = master.decrypt(wrapped, &wrap_context(stream_id))?;
        let bytes = B64
            .decode(secret.expose())
            .map_err(|_| CryptoError::Malformed)?;
        if bytes.len() != 32 {
            return Err(CryptoError::KeyLength(bytes.len()));
        }
        Ok(DataKey {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes)),
        })
    }

    /// Encrypts `plaintext` (a field's JSON text) for `stream_id`'s `field`.
    pub fn encrypt(
        &self,
        stream_id: &str,
        field: &str,
        plaintext: &str,
    ) -> Result<String, CryptoError> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let aad = field_context(stream_id, field);
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Authentication)?;
        Ok(format!(
            "{PREFIX}.{}.{}",
            B64.encode(nonce),
            B64.encode(sealed)
        ))
    }

    /// Decrypts a value [`Self::encrypt`] made for the same customer and field.
    pub fn decrypt(
        &self,
        stream_id: &str,
        field: &str,
        stored: &str,
    ) -> Result<String, CryptoError> {
        let mut parts = stored.split('.');
        let (Some(PREFIX), Some(nonce), Some(sealed), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(CryptoError::Malformed);
        };
        let nonce = B64.decode(nonce).map_err(|_| CryptoError::Malformed)?;
        if nonce.len() != 12 {
            return Err(CryptoError::Malformed);
        }
        let sealed = B64.decode(sealed).map_err(|_| CryptoError::Malformed)?;
        let aad = field_context(stream_id, field);
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &sealed,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Authentication)?;
        String::from_utf8(plain).map_err(|_| CryptoError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::crypto::EncryptionKey;

    fn master() -> KeyRing {
        KeyRing::new(EncryptionKey::from_bytes(&[9u8; 32]).unwrap())
    }

    #[test]
    fn a_profile_round_trips_under_its_customers_key_only() {
        let master = master();
        let (key, wrapped) = DataKey::generate(&master, "shop/c1").unwrap();
        let text = r#"{"name":"Maria Souza","tax_id":"52998224725"}"#;
        let stored = key.encrypt("shop/c1", "profile", text).unwrap();
        assert!(stored.starts_with("pii1.") && !stored.contains("Maria"));
        // Unwrapped again from storage, the key opens it.
        let again = DataKey::unwrap_with(&master, "shop/c1", &wrapped).unwrap();
        assert_eq!(again.decrypt("shop/c1", "profile", &stored).unwrap(), text);
        // Bound to the customer and the field.
        assert!(again.decrypt("shop/c2", "profile", &stored).is_err());
        assert!(again.decrypt("shop/c1", "email", &stored).is_err());
        // A wrapped key moved to another customer does not unwrap.
        assert!(DataKey::unwrap_with(&master, "shop/c2", &wrapped).is_err());
        // Another customer's key does not open it.
        let (other, _) = DataKey::generate(&master, "shop/c1").unwrap();
        assert!(other.decrypt("shop/c1", "profile", &stored).is_err());
        assert!(matches!(
            key.decrypt("shop/c1", "profile", "plain"),
            Err(CryptoError::Malformed)
        ));
    }
}
