//! The signed envelope a node returns and a server stores verbatim (DESIGN.md §3.1):
//! `{ "kid", "payload": base64url(JSON bytes), "sig": base64url(Ed25519(payload bytes)) }`.
//! The signature covers the exact payload bytes, so verification never re-serializes.

use std::collections::BTreeMap;
use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::guid::ServerGuid;
use crate::license::Context;
use crate::sync::BundlePayload;

/// Names the vendor key that signed an envelope: the first 8 bytes of SHA-256 of the public
/// key, in hex.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(String);

impl KeyId {
    pub fn of(key: &VerifyingKey) -> Self {
        let digest = Sha256::digest(key.as_bytes());
        Self(hex::encode(&digest[..8]))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

/// The vendor's private signing key. Its `Debug` never shows the secret.
#[derive(Clone)]
pub struct VendorSigningKey {
    key: SigningKey,
    kid: KeyId,
}

impl fmt::Debug for VendorSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VendorSigningKey")
            .field("kid", &self.kid)
            .field("secret", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublicKeyError {
    #[error("vendor public key is not base64url: {0}")]
    Encoding(String),
    #[error("vendor public key must be 32 bytes, found {0}")]
    Length(usize),
    #[error("vendor public key is not a valid Ed25519 point")]
    Point,
    #[error("signing key is not a PKCS#8 PEM Ed25519 private key: {0}")]
    Pem(String),
}

impl VendorSigningKey {
    /// Builds a key from 32 secret bytes (the caller supplies the randomness).
    pub fn from_secret_bytes(secret: [u8; 32]) -> Self {
        let key = SigningKey::from_bytes(&secret);
        let kid = KeyId::of(&key.verifying_key());
        Self { key, kid }
    }

    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, PublicKeyError> {
        let key =
            SigningKey::from_pkcs8_pem(pem).map_err(|e| PublicKeyError::Pem(e.to_string()))?;
        let kid = KeyId::of(&key.verifying_key());
        Ok(Self { key, kid })
    }

    pub fn to_pkcs8_pem(&self) -> Result<String, PublicKeyError> {
        self.key
            .to_pkcs8_pem(Default::default())
            .map(|z| z.to_string())
            .map_err(|e| PublicKeyError::Pem(e.to_string()))
    }

    pub fn kid(&self) -> &KeyId {
        &self.kid
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The public key as printed by `leasehold vendor keygen` and accepted by `--vendor-key`.
    pub fn public_key_string(&self) -> String {
        public_key_to_string(&self.verifying_key())
    }

    /// Signs the exact `payload` bytes.
    pub fn sign_bytes(&self, payload: &[u8]) -> SignedEnvelope {
        let sig = self.key.sign(payload);
        SignedEnvelope {
            kid: self.kid.clone(),
            payload: URL_SAFE_NO_PAD.encode(payload),
            sig: URL_SAFE_NO_PAD.encode(sig.to_bytes()),
        }
    }

    /// Serializes and signs a bundle.
    pub fn sign_bundle(&self, bundle: &BundlePayload) -> SignedEnvelope {
        // Serializing plain data with string keys cannot fail.
        let bytes = serde_json::to_vec(bundle).unwrap_or_default();
        self.sign_bytes(&bytes)
    }
}

pub fn public_key_to_string(key: &VerifyingKey) -> String {
    URL_SAFE_NO_PAD.encode(key.as_bytes())
}

pub fn parse_public_key(text: &str) -> Result<VerifyingKey, PublicKeyError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(text.trim())
        .map_err(|e| PublicKeyError::Encoding(e.to_string()))?;
    let arr: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| PublicKeyError::Length(bytes.len()))?;
    VerifyingKey::from_bytes(&arr).map_err(|_| PublicKeyError::Point)
}

/// The set of vendor public keys a server trusts, by key id.
#[derive(Clone, Default)]
pub struct TrustedKeys {
    keys: BTreeMap<KeyId, VerifyingKey>,
}

impl fmt::Debug for TrustedKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.keys.keys()).finish()
    }
}

impl TrustedKeys {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, key: VerifyingKey) -> Self {
        self.insert(key);
        self
    }

    pub fn insert(&mut self, key: VerifyingKey) -> KeyId {
        let kid = KeyId::of(&key);
        self.keys.insert(kid.clone(), key);
        kid
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn kids(&self) -> impl Iterator<Item = &KeyId> {
        self.keys.keys()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("bundle is not a signed envelope: {0}")]
    Malformed(String),
    #[error("bundle was signed with key {0}, which this server does not trust")]
    UnknownKey(String),
    #[error("bundle signature does not match its contents")]
    BadSignature,
    #[error("bundle payload is not a valid bundle: {0}")]
    Payload(String),
    #[error("bundle is for server {found}, not this server {expected}")]
    WrongServer {
        expected: ServerGuid,
        found: ServerGuid,
    },
    #[error("bundle is for a {found} server, but this server's context is {expected}")]
    WrongContext { expected: Context, found: Context },
}

/// What a node sends and a server stores verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SignedEnvelope {
    pub kid: KeyId,
    pub payload: String,
    pub sig: String,
}

impl SignedEnvelope {
    /// Parses an envelope from its JSON text, as stored or downloaded.
    pub fn from_json(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        serde_json::from_slice(bytes).map_err(|e| EnvelopeError::Malformed(e.to_string()))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Checks the signature and returns the exact payload bytes it covers.
    pub fn verify(&self, keys: &TrustedKeys) -> Result<Vec<u8>, EnvelopeError> {
        let key = keys
            .keys
            .get(&self.kid)
            .ok_or_else(|| EnvelopeError::UnknownKey(self.kid.0.chars().take(40).collect()))?;
        let payload = URL_SAFE_NO_PAD
            .decode(&self.payload)
            .map_err(|e| EnvelopeError::Malformed(format!("payload: {e}")))?;
        let sig_bytes = URL_SAFE_NO_PAD
            .decode(&self.sig)
            .map_err(|e| EnvelopeError::Malformed(format!("sig: {e}")))?;
        let sig = Signature::from_slice(&sig_bytes).map_err(|_| EnvelopeError::BadSignature)?;
        key.verify_strict(&payload, &sig)
            .map_err(|_| EnvelopeError::BadSignature)?;
        Ok(payload)
    }

    /// Verifies the signature, then that the bundle is for `guid` and, once the server knows
    /// its context, for that context.
    pub fn open_bundle(
        &self,
        keys: &TrustedKeys,
        guid: ServerGuid,
        context: Option<Context>,
    ) -> Result<BundlePayload, EnvelopeError> {
        let bytes = self.verify(keys)?;
        let bundle: BundlePayload =
            serde_json::from_slice(&bytes).map_err(|e| EnvelopeError::Payload(e.to_string()))?;
        if bundle.server_guid != guid {
            return Err(EnvelopeError::WrongServer {
                expected: guid,
                found: bundle.server_guid,
            });
        }
        if let Some(expected) = context {
            if bundle.context != expected {
                return Err(EnvelopeError::WrongContext {
                    expected,
                    found: bundle.context,
                });
            }
        }
        Ok(bundle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{Feature, InstallationId, LicenseId, SyncToken};
    use crate::license::License;
    use chrono::{NaiveDate, TimeZone, Utc};
    use proptest::prelude::*;

    fn key(seed: u8) -> VendorSigningKey {
        VendorSigningKey::from_secret_bytes([seed; 32])
    }

    fn guid(b: u8) -> ServerGuid {
        ServerGuid::from_bytes([b; 16])
    }

    pub(crate) fn bundle(g: ServerGuid, licenses: usize) -> BundlePayload {
        let issued = Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap();
        BundlePayload {
            serial: 7,
            server_guid: g,
            context: Context::Production,
            installation_id: InstallationId::from_random([3; 8]),
            issued_at: issued,
            not_after: issued + chrono::Duration::days(60),
            sync_interval_secs: 86_400,
            next_sync_token: SyncToken::from_random([9; 16]),
            acked_usage_seq: 12,
            licenses: (0..licenses)
                .map(|i| License {
                    id: LicenseId::from_random((i as u64).to_be_bytes()),
                    feature: Feature::parse(&format!("feature-{i}")).unwrap(),
                    count: 1 + i as u32,
                    context: Context::Production,
                    maintenance_until: NaiveDate::from_ymd_opt(2027, 1, 1).unwrap(),
                    expires: None,
                    backs_up: None,
                })
                .collect(),
        }
    }

    #[test]
    fn round_trip() {
        let k = key(1);
        let b = bundle(guid(5), 3);
        let env = k.sign_bundle(&b);
        let trusted = TrustedKeys::new().with(k.verifying_key());
        let text = env.to_json();
        let parsed = SignedEnvelope::from_json(text.as_bytes()).unwrap();
        assert_eq!(parsed, env);
        let opened = parsed
            .open_bundle(&trusted, guid(5), Some(Context::Production))
            .unwrap();
        assert_eq!(opened, b);
        // A server that does not yet know its context accepts any context.
        assert!(parsed.open_bundle(&trusted, guid(5), None).is_ok());
    }

    #[test]
    fn rejects_a_foreign_key_a_foreign_guid_and_a_foreign_context() {
        let env = key(1).sign_bundle(&bundle(guid(5), 1));
        let other = TrustedKeys::new().with(key(2).verifying_key());
        assert!(matches!(
            env.open_bundle(&other, guid(5), None),
            Err(EnvelopeError::UnknownKey(_))
        ));
        // Same key id claimed, signed by another key.
        let mut forged = key(2).sign_bundle(&bundle(guid(5), 1));
        forged.kid = key(1).kid().clone();
        let trusted = TrustedKeys::new().with(key(1).verifying_key());
        assert_eq!(
            forged.open_bundle(&trusted, guid(5), None),
            Err(EnvelopeError::BadSignature)
        );
        assert!(matches!(
            env.open_bundle(&trusted, guid(6), None),
            Err(EnvelopeError::WrongServer { .. })
        ));
        assert!(matches!(
            env.open_bundle(&trusted, guid(5), Some(Context::Development)),
            Err(EnvelopeError::WrongContext { .. })
        ));
    }

    #[test]
    fn pem_and_public_key_round_trip() {
        let k = key(4);
        let pem = k.to_pkcs8_pem().unwrap();
        assert!(pem.contains("PRIVATE KEY"));
        let back = VendorSigningKey::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(back.kid(), k.kid());
        let pk = parse_public_key(&k.public_key_string()).unwrap();
        assert_eq!(KeyId::of(&pk), *k.kid());
        assert!(parse_public_key("not base64!").is_err());
        assert!(matches!(
            parse_public_key("AAAA"),
            Err(PublicKeyError::Length(3))
        ));
        assert!(!format!("{k:?}").contains(&pem));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Any single changed byte anywhere in the stored envelope text is refused.
        #[test]
        fn any_single_byte_change_of_the_stored_envelope_is_rejected(
            pos in any::<prop::sample::Index>(),
            delta in 1u8..=255,
        ) {
            let k = key(1);
            let trusted = TrustedKeys::new().with(k.verifying_key());
            let text = k.sign_bundle(&bundle(guid(5), 2)).to_json().into_bytes();
            let i = pos.index(text.len());
            let mut changed = text.clone();
            changed[i] = changed[i].wrapping_add(delta);
            let result = SignedEnvelope::from_json(&changed)
                .and_then(|e| e.open_bundle(&trusted, guid(5), Some(Context::Production)));
            prop_assert!(result.is_err(), "byte {} changed and still accepted", i);
        }

        /// Any single changed byte of the payload or the signature is refused.
        #[test]
        fn any_single_byte_change_of_payload_or_signature_is_rejected(
            pos in any::<prop::sample::Index>(),
            delta in 1u8..=255,
            in_sig in any::<bool>(),
        ) {
            let k = key(1);
            let trusted = TrustedKeys::new().with(k.verifying_key());
            let env = k.sign_bundle(&bundle(guid(5), 2));
            let mut payload = URL_SAFE_NO_PAD.decode(&env.payload).unwrap();
            let mut sig = URL_SAFE_NO_PAD.decode(&env.sig).unwrap();
            let target = if in_sig { &mut sig } else { &mut payload };
            let i = pos.index(target.len());
            target[i] = target[i].wrapping_add(delta);
            let tampered = SignedEnvelope {
                kid: env.kid.clone(),
                payload: URL_SAFE_NO_PAD.encode(&payload),
                sig: URL_SAFE_NO_PAD.encode(&sig),
            };
            prop_assert!(tampered.verify(&trusted).is_err());
        }
    }
}
