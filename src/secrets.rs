//! Secrets scimbridge must use again later (the ticket bridge's API credential and its
//! inbound hook secret), sealed at rest with AES-256-GCM.
//!
//! Tokens and client secrets are only ever compared, so they are stored hashed; these
//! must be sent (a Jira API token) or used as an HMAC key (the hook secret), so they are
//! encrypted instead. The key is `--secrets-key` (`SCIMBRIDGE_SECRETS_KEY`, 64 hex
//! characters, the same on every replica): then a copy of the database alone reveals no
//! credential. Without it, a key generated once per database (table `server_key`) is
//! used: secrets never appear in plain text in dumps, exports or query logs, but whoever
//! reads the whole database can unseal them. Each sealed value names its key (the first
//! bytes of the key's SHA-256), so a value sealed under another key is reported as such
//! rather than as garbage, and it is bound to its purpose (the associated data), so a
//! sealed value copied into another column or app does not open.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use base64::Engine as _;

use crate::db::Store;

/// Name of the generated key in `server_key`.
const DB_KEY: &str = "secrets_aes256gcm";
/// Format version of sealed values.
const VERSION: &str = "v1";

/// Why a secret could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The generated key could not be read or stored.
    #[error("the secrets key could not be loaded from the database: {0}")]
    Store(#[from] sqlx::Error),
    /// Sealed under another key (`--secrets-key` changed, or was set after sealing).
    #[error(
        "this secret was sealed with another key (key {0}); set the --secrets-key it was \
         sealed with, or enter the secret again"
    )]
    OtherKey(String),
    /// Not a sealed value, or tampered with.
    #[error("this sealed secret is damaged or was moved from elsewhere; enter it again")]
    Damaged,
}

/// Seals and opens secrets with the configured or the database's key.
#[derive(Debug)]
pub struct Sealer {
    configured: Option<[u8; 32]>,
    generated: OnceCell<[u8; 32]>,
}

/// Parses `--secrets-key`: 64 hex characters (32 bytes).
pub fn parse_key(hex_key: &str) -> Result<[u8; 32], String> {
    let bytes = hex::decode(hex_key.trim())
        .map_err(|_| "--secrets-key must be 64 hex characters (openssl rand -hex 32)")?;
    bytes
        .try_into()
        .map_err(|_| "--secrets-key must be 64 hex characters (openssl rand -hex 32)".into())
}

fn key_id(key: &[u8; 32]) -> String {
    hex::encode(&Sha256::digest(key)[..4])
}

impl Sealer {
    /// A sealer with `--secrets-key` when set (already checked by `Config::validate`).
    pub fn new(configured: Option<[u8; 32]>) -> Sealer {
        Sealer {
            configured,
            generated: OnceCell::new(),
        }
    }

    async fn key(&self, store: &Store) -> Result<[u8; 32], SecretError> {
        if let Some(k) = self.configured {
            return Ok(k);
        }
        let k = self
            .generated
            .get_or_try_init(|| async {
                let fresh: [u8; 32] = rand::random();
                let stored = store.server_key(DB_KEY, &fresh).await?;
                let key: [u8; 32] = stored.try_into().map_err(|_| SecretError::Damaged)?;
                Ok::<_, SecretError>(key)
            })
            .await?;
        Ok(*k)
    }

    /// Seals `plain` for `purpose` (e.g. `ticket_bridge/peopleai/credential`).
    pub async fn seal(
        &self,
        store: &Store,
        purpose: &str,
        plain: &str,
    ) -> Result<String, SecretError> {
        let key = self.key(store).await?;
        let sealing = LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, &key).map_err(|_| SecretError::Damaged)?,
        );
        // A random 96-bit nonce per value: far below the 2^32 values per key at which
        // random nonces for GCM become a concern.
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let mut data = plain.as_bytes().to_vec();
        sealing
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(purpose.as_bytes()),
                &mut data,
            )
            .map_err(|_| SecretError::Damaged)?;
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&data);
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out);
        Ok(format!("{VERSION}.{}.{b64}", key_id(&key)))
    }

    /// Opens a value sealed for `purpose`.
    pub async fn open(
        &self,
        store: &Store,
        purpose: &str,
        sealed: &str,
    ) -> Result<String, SecretError> {
        let mut parts = sealed.splitn(3, '.');
        let (Some(VERSION), Some(kid), Some(b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(SecretError::Damaged);
        };
        let key = self.key(store).await?;
        if kid != key_id(&key) {
            return Err(SecretError::OtherKey(kid.to_owned()));
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(b64)
            .map_err(|_| SecretError::Damaged)?;
        if bytes.len() < NONCE_LEN {
            return Err(SecretError::Damaged);
        }
        let (nonce, data) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SecretError::Damaged)?;
        let opening = LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, &key).map_err(|_| SecretError::Damaged)?,
        );
        let mut data = data.to_vec();
        let plain = opening
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(purpose.as_bytes()),
                &mut data,
            )
            .map_err(|_| SecretError::Damaged)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SecretError::Damaged)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_64_hex_characters() {
        assert!(parse_key(&"ab".repeat(32)).is_ok());
        assert!(parse_key("abc").is_err());
        assert!(parse_key(&"zz".repeat(32)).is_err());
        assert!(parse_key(&"ab".repeat(33)).is_err());
    }

    fn store() -> Store {
        // Never connected: a configured key needs no database.
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .expect("a lazy pool");
        Store::new(pool)
    }

    #[tokio::test]
    async fn sealed_values_open_only_with_their_key_and_purpose() {
        let (store, a, b) = (
            store(),
            Sealer::new(Some([1; 32])),
            Sealer::new(Some([2; 32])),
        );
        let sealed = a
            .seal(&store, "bridge/x/credential", "api-token-123")
            .await
            .unwrap();
        assert!(sealed.starts_with("v1.") && !sealed.contains("api-token-123"));
        let again = a
            .seal(&store, "bridge/x/credential", "api-token-123")
            .await
            .unwrap();
        assert_ne!(sealed, again, "a fresh nonce per value");
        assert_eq!(
            a.open(&store, "bridge/x/credential", &sealed)
                .await
                .unwrap(),
            "api-token-123"
        );
        assert!(matches!(
            a.open(&store, "bridge/y/credential", &sealed).await,
            Err(SecretError::Damaged)
        ));
        assert!(matches!(
            b.open(&store, "bridge/x/credential", &sealed).await,
            Err(SecretError::OtherKey(_))
        ));
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(matches!(
            a.open(&store, "bridge/x/credential", &tampered).await,
            Err(SecretError::Damaged)
        ));
        assert!(matches!(
            a.open(&store, "bridge/x/credential", "plain").await,
            Err(SecretError::Damaged)
        ));
    }
}
