//! Signed checkpoints: an Ed25519 signature (`ed25519-dalek`) over what the sealed log was at
//! one position, so that a log rewritten afterwards, every link recomputed, no longer matches
//! a statement signed before.
//!
//! # The statement
//! The canonical JSON of
//! `{"head_hash", "position", "signed_at", "statement": "bling-ledger checkpoint v1",
//!   "tenant_root", "tenants"}`: the global chain's link at `position`, the Merkle root
//! ([`super::merkle`]) over every tenant chain's head at that position and how many there are,
//! and the time (RFC 3339 UTC). Those exact bytes are signed; the signature and the key id are
//! stored beside them. Anyone with the public key ([`SigningKey::public_base64`], served at
//! `GET /v1/audit/public-key` and printed by `bling-ledger key public`) checks a checkpoint
//! offline.
//!
//! # The key
//! 32 secret bytes (base64) from `BLING_LEDGER_SIGNING_KEY` or `BLING_LEDGER_SIGNING_KEY_FILE`;
//! on the embedded SQLite default a file `<database>.signing-key` is created (mode 0600) the
//! first time, as the encryption key is. The key id is the first 8 hex digits of SHA-256 of the
//! public key.

use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, VerifyingKey};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::canonical::to_canonical_string;
use super::AuditError;

/// The statement's kind and version, inside the signed bytes.
pub const STATEMENT: &str = "bling-ledger checkpoint v1";

/// The checkpoint signing key.
#[derive(Clone)]
pub struct SigningKey {
    key: ed25519_dalek::SigningKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.key_id())
    }
}

impl SigningKey {
    pub fn from_base64(text: &str) -> Result<SigningKey, AuditError> {
        let bytes = B64
            .decode(text.trim())
            .map_err(|_| AuditError::invalid("signing key", "not valid base64"))?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            AuditError::invalid(
                "signing key",
                format!(
                    "an Ed25519 key is 32 bytes, base64-encoded (got {} bytes)",
                    b.len()
                ),
            )
        })?;
        Ok(SigningKey {
            key: ed25519_dalek::SigningKey::from_bytes(&bytes),
        })
    }

    /// A new random key, base64 (for `bling-ledger key new-signing` and the SQLite key file).
    pub fn generate_base64() -> String {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        B64.encode(bytes)
    }

    /// Reads the key file, creating it (mode 0600) with a new key when it does not exist.
    pub fn load_or_create_file(path: &Path) -> Result<SigningKey, AuditError> {
        let named =
            |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_base64(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let text = Self::generate_base64();
                crate::oauth::crypto::write_private_file(path, &text).map_err(named)?;
                Self::from_base64(&text)
            }
            Err(e) => Err(named(e).into()),
        }
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.key.verifying_key())
    }

    pub fn key_id(&self) -> String {
        self.public_key().key_id()
    }

    fn sign(&self, message: &[u8]) -> String {
        B64.encode(self.key.sign(message).to_bytes())
    }
}

/// A checkpoint's public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    pub fn from_base64(text: &str) -> Result<PublicKey, AuditError> {
        let bytes = B64
            .decode(text.trim())
            .map_err(|_| AuditError::invalid("public key", "not valid base64"))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| AuditError::invalid("public key", "an Ed25519 public key is 32 bytes"))?;
        VerifyingKey::from_bytes(&bytes)
            .map(PublicKey)
            .map_err(|_| AuditError::invalid("public key", "not a valid Ed25519 point"))
    }

    pub fn base64(&self) -> String {
        B64.encode(self.0.as_bytes())
    }

    pub fn key_id(&self) -> String {
        hex::encode(&Sha256::digest(self.0.as_bytes())[..4])
    }
}

/// What the log was at one position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    pub position: i64,
    pub head_hash: String,
    pub tenant_root: String,
    pub tenants: i64,
    pub signed_at: String,
}

impl Statement {
    /// The exact bytes signed.
    pub fn signed_text(&self) -> String {
        to_canonical_string(&serde_json::json!({
            "head_hash": self.head_hash,
            "position": self.position,
            "signed_at": self.signed_at,
            "statement": STATEMENT,
            "tenant_root": self.tenant_root,
            "tenants": self.tenants,
        }))
    }
}

/// A signed statement, as stored, listed and put in exports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub position: i64,
    pub head_hash: String,
    pub tenant_root: String,
    pub tenants: i64,
    pub signed_at: String,
    pub key_id: String,
    /// The signed bytes ([`Statement::signed_text`]).
    pub statement: String,
    /// Base64 of the 64-byte Ed25519 signature over `statement`.
    pub signature: String,
}

impl Checkpoint {
    pub fn sign(statement: &Statement, key: &SigningKey) -> Checkpoint {
        let text = statement.signed_text();
        Checkpoint {
            position: statement.position,
            head_hash: statement.head_hash.clone(),
            tenant_root: statement.tenant_root.clone(),
            tenants: statement.tenants,
            signed_at: statement.signed_at.clone(),
            key_id: key.key_id(),
            signature: key.sign(text.as_bytes()),
            statement: text,
        }
    }

    /// Checks the signature with `key`, and that the fields are the signed ones.
    pub fn verify(&self, key: &PublicKey) -> Result<(), String> {
        let bytes = B64
            .decode(&self.signature)
            .map_err(|_| "signature is not base64".to_string())?;
        let bytes: [u8; 64] = bytes
            .try_into()
            .map_err(|_| "signature is not 64 bytes".to_string())?;
        key.0
            .verify_strict(self.statement.as_bytes(), &Signature::from_bytes(&bytes))
            .map_err(|_| {
                format!(
                    "the signature of checkpoint {} does not verify with key {}",
                    self.position,
                    key.key_id()
                )
            })?;
        let fields = Statement {
            position: self.position,
            head_hash: self.head_hash.clone(),
            tenant_root: self.tenant_root.clone(),
            tenants: self.tenants,
            signed_at: self.signed_at.clone(),
        };
        if fields.signed_text() != self.statement {
            return Err(format!(
                "checkpoint {}: its fields are not the signed statement",
                self.position
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement() -> Statement {
        Statement {
            position: 7,
            head_hash: "a".repeat(64),
            tenant_root: "b".repeat(64),
            tenants: 2,
            signed_at: "2026-12-03T09:00:00Z".into(),
        }
    }

    #[test]
    fn a_signed_checkpoint_verifies_and_a_forged_one_does_not() {
        let key = SigningKey::from_base64(&SigningKey::generate_base64()).unwrap();
        let c = Checkpoint::sign(&statement(), &key);
        assert!(c.verify(&key.public_key()).is_ok());
        let mut forged = c.clone();
        forged.head_hash = "c".repeat(64);
        assert!(forged.verify(&key.public_key()).is_err());
        let mut resigned = c.clone();
        resigned.statement = resigned
            .statement
            .replace("\"position\":7", "\"position\":8");
        assert!(resigned.verify(&key.public_key()).is_err());
        let other = SigningKey::from_base64(&SigningKey::generate_base64()).unwrap();
        assert!(c.verify(&other.public_key()).is_err());
        let public = PublicKey::from_base64(&key.public_key().base64()).unwrap();
        assert_eq!(public.key_id(), c.key_id);
    }
}
