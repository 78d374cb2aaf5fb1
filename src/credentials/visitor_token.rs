//! The ccmessaging-token: a signed, expiring credential naming a channel and a visitor.
//!
//! Layout before base64url (no padding):
//! `version(1) | channel uuid(16) | issued_at(8, BE unix s) | expires_at(8) | nonce(16) |
//! user_id len(1) | user_id (UTF-8) | HMAC-SHA256 of everything before (32)`.
//! The nonce makes every issuance distinct; the MAC makes tokens unforgeable without the
//! signing key. Only the SHA-256 of a token is stored (`visitor_token.token_hash`), which is
//! how a newer token for the same channel and visitor replaces the older one.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, KeyInit, Mac};
use rand::Rng;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::domain::{ChannelId, UserId};

const VERSION: u8 = 1;
const MAC_LEN: usize = 32;
const FIXED_LEN: usize = 1 + 16 + 8 + 8 + 16 + 1;
/// Longer strings are refused before any decoding work.
pub const MAX_TOKEN_CHARS: usize = 512;

type HmacSha256 = Hmac<Sha256>;

/// The key that signs tokens; shared by every instance through the database.
#[derive(Clone)]
pub struct SigningKey([u8; 32]);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub channel: ChannelId,
    pub user_id: UserId,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// SHA-256 of a token: what the database keeps instead of the token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash(pub [u8; 32]);

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(<redacted>)")
    }
}

impl TokenHash {
    pub fn of(token: &str) -> Self {
        TokenHash(Sha256::digest(token.as_bytes()).into())
    }
}

/// A freshly issued token. The string goes to the visitor once and is never logged.
pub struct IssuedToken {
    pub token: String,
    pub hash: TokenHash,
    pub claims: Claims,
}

/// A token whose signature and expiry checked out.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    pub claims: Claims,
    pub hash: TokenHash,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the ccmessaging-token is malformed")]
    Malformed,
    #[error("the ccmessaging-token is not genuine")]
    BadSignature,
    #[error("the ccmessaging-token has expired")]
    Expired,
}

impl SigningKey {
    pub fn generate() -> Self {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        SigningKey(key)
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(SigningKey)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length, so this cannot fail for 32 bytes.
        <HmacSha256 as KeyInit>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!())
    }

    pub fn issue(
        &self,
        channel: ChannelId,
        user_id: UserId,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> IssuedToken {
        let issued_at = truncate_to_second(now);
        let expires_at = issued_at + ttl;
        let mut nonce = [0u8; 16];
        rand::rng().fill_bytes(&mut nonce);

        let user = user_id.as_str().as_bytes();
        let mut bytes = Vec::with_capacity(FIXED_LEN + user.len() + MAC_LEN);
        bytes.push(VERSION);
        bytes.extend_from_slice(channel.as_uuid().as_bytes());
        bytes.extend_from_slice(&issued_at.timestamp().to_be_bytes());
        bytes.extend_from_slice(&expires_at.timestamp().to_be_bytes());
        bytes.extend_from_slice(&nonce);
        // UserId is at most 32 characters, so at most 128 bytes.
        bytes.push(u8::try_from(user.len()).unwrap_or(u8::MAX));
        bytes.extend_from_slice(user);
        let mut mac = self.mac();
        mac.update(&bytes);
        bytes.extend_from_slice(&mac.finalize().into_bytes());

        let token = URL_SAFE_NO_PAD.encode(&bytes);
        IssuedToken {
            hash: TokenHash::of(&token),
            token,
            claims: Claims {
                channel,
                user_id,
                issued_at,
                expires_at,
            },
        }
    }

    /// Checks form, signature and expiry; no database involved. Whether the token is still the
    /// newest for its visitor, and its channel still enabled, is the store's question.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<VerifiedToken, TokenError> {
        if token.is_empty() || token.len() > MAX_TOKEN_CHARS {
            return Err(TokenError::Malformed);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| TokenError::Malformed)?;
        if bytes.len() < FIXED_LEN + MAC_LEN || bytes[0] != VERSION {
            return Err(TokenError::Malformed);
        }
        let (signed, tag) = bytes.split_at(bytes.len() - MAC_LEN);
        let mut mac = self.mac();
        mac.update(signed);
        // Constant-time comparison of the tag.
        mac.verify_slice(tag)
            .map_err(|_| TokenError::BadSignature)?;

        let claims = decode_claims(signed).ok_or(TokenError::Malformed)?;
        if now >= claims.expires_at {
            return Err(TokenError::Expired);
        }
        Ok(VerifiedToken {
            claims,
            hash: TokenHash::of(token),
        })
    }
}

fn decode_claims(signed: &[u8]) -> Option<Claims> {
    let channel = Uuid::from_slice(signed.get(1..17)?).ok()?;
    let issued = i64::from_be_bytes(signed.get(17..25)?.try_into().ok()?);
    let expires = i64::from_be_bytes(signed.get(25..33)?.try_into().ok()?);
    let user_len = usize::from(*signed.get(49)?);
    let user = signed.get(50..)?;
    if user.len() != user_len {
        return None;
    }
    let user_id = UserId::parse(std::str::from_utf8(user).ok()?).ok()?;
    Some(Claims {
        channel: ChannelId::from_uuid(channel),
        user_id,
        issued_at: DateTime::from_timestamp(issued, 0)?,
        expires_at: DateTime::from_timestamp(expires, 0)?,
    })
}

fn truncate_to_second(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issue(key: &SigningKey, now: DateTime<Utc>) -> IssuedToken {
        key.issue(
            ChannelId::new_random(),
            UserId::parse("visitor-7").unwrap(),
            now,
            Duration::seconds(3600),
        )
    }

    #[test]
    fn a_token_verifies_and_names_its_channel_and_user() {
        let key = SigningKey::generate();
        let now = Utc::now();
        let issued = issue(&key, now);
        let verified = key.verify(&issued.token, now).unwrap();
        assert_eq!(verified.claims, issued.claims);
        assert_eq!(verified.hash, issued.hash);
        assert_eq!(verified.claims.user_id.as_str(), "visitor-7");
    }

    #[test]
    fn every_issuance_is_distinct() {
        let key = SigningKey::generate();
        let now = Utc::now();
        let channel = ChannelId::new_random();
        let user = UserId::parse("same").unwrap();
        let a = key.issue(channel, user.clone(), now, Duration::seconds(60));
        let b = key.issue(channel, user, now, Duration::seconds(60));
        assert_ne!(a.token, b.token);
        assert_ne!(a.hash, b.hash);
    }

    #[test]
    fn expires_after_ttl() {
        let key = SigningKey::generate();
        let now = Utc::now();
        let issued = issue(&key, now);
        let later = issued.claims.expires_at;
        assert_eq!(
            key.verify(&issued.token, later).unwrap_err(),
            TokenError::Expired
        );
        assert!(
            key.verify(&issued.token, later - Duration::seconds(1))
                .is_ok()
        );
    }

    #[test]
    fn another_key_or_a_flipped_bit_is_refused() {
        let key = SigningKey::generate();
        let now = Utc::now();
        let issued = issue(&key, now);
        assert_eq!(
            SigningKey::generate()
                .verify(&issued.token, now)
                .unwrap_err(),
            TokenError::BadSignature
        );
        let mut bytes = URL_SAFE_NO_PAD.decode(&issued.token).unwrap();
        for i in 0..bytes.len() {
            bytes[i] ^= 0x01;
            let forged = URL_SAFE_NO_PAD.encode(&bytes);
            assert!(
                key.verify(&forged, now).is_err(),
                "bit flip at byte {i} accepted"
            );
            bytes[i] ^= 0x01;
        }
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        let key = SigningKey::generate();
        let now = Utc::now();
        for junk in [
            "",
            "x",
            "********",
            "a.b.c",
            &"A".repeat(600),
            "AAAA",
            "====",
            "é",
        ] {
            assert!(key.verify(junk, now).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn debug_output_hides_secrets() {
        let key = SigningKey::generate();
        assert_eq!(format!("{key:?}"), "SigningKey(<redacted>)");
        assert_eq!(format!("{:?}", TokenHash::of("t")), "TokenHash(<redacted>)");
    }
}
