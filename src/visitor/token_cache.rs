//! Tokens this instance has recently seen valid, so doLeaveMessage can accept them without a
//! database round trip. Entries go when the token expires, or when the database says the token
//! is no longer current. An entry may outlive the token's validity (it was replaced or revoked
//! through another instance, or its channel disabled): the write re-checks the token in its own
//! statement, and any other refusal is only sent after asking the database (see
//! visitor::leave_message), so a stale entry never lets a message be stored nor changes an
//! answer. The channel's origins held here may be stale too (`channel update`): they are not
//! used for a call from another site, which is always read afresh (see
//! visitor::authenticate), and no other call depends on them.

use std::collections::HashMap;
use std::sync::RwLock;

use chrono::{DateTime, Utc};

use crate::store::tokens::TokenHolder;

/// Beyond this many entries the cache starts afresh (a flood of distinct tokens must not grow
/// memory without bound).
const MAX_ENTRIES: usize = 50_000;

/// A token's holder and when the token expires, by the token's hash.
type Entries = HashMap<[u8; 32], (TokenHolder, DateTime<Utc>)>;

#[derive(Default)]
pub struct TokenCache {
    entries: RwLock<Entries>,
}

impl TokenCache {
    pub fn get(&self, hash: &[u8; 32], now: DateTime<Utc>) -> Option<TokenHolder> {
        let entries = self
            .entries
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        entries
            .get(hash)
            .filter(|(_, expires_at)| now < *expires_at)
            .map(|(holder, _)| holder.clone())
    }

    pub fn insert(&self, hash: [u8; 32], holder: TokenHolder, expires_at: DateTime<Utc>) {
        let mut entries = self
            .entries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(hash, (holder, expires_at));
    }

    pub fn revoke(&self, hash: &[u8; 32]) {
        self.entries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(hash);
    }

    pub fn remove_expired(&self, now: DateTime<Utc>) {
        self.entries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|_, (_, expires_at)| now < *expires_at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ChannelId;

    fn holder(channel: ChannelId) -> TokenHolder {
        TokenHolder {
            channel_id: channel,
            user_name: "n".into(),
            origins: vec![],
        }
    }

    #[test]
    fn entries_expire_and_are_revoked() {
        let cache = TokenCache::default();
        let now = Utc::now();
        let (a, b) = (ChannelId::new_random(), ChannelId::new_random());
        cache.insert([1; 32], holder(a), now + chrono::Duration::seconds(60));
        cache.insert([2; 32], holder(a), now + chrono::Duration::seconds(60));
        cache.insert([3; 32], holder(b), now + chrono::Duration::seconds(60));
        assert!(cache.get(&[1; 32], now).is_some());
        assert!(
            cache
                .get(&[1; 32], now + chrono::Duration::seconds(60))
                .is_none()
        );
        cache.revoke(&[1; 32]);
        assert!(cache.get(&[1; 32], now).is_none());
        assert!(cache.get(&[2; 32], now).is_some());
        cache.remove_expired(now + chrono::Duration::seconds(60));
        assert!(cache.get(&[2; 32], now).is_none());
        assert!(cache.get(&[3; 32], now).is_none());
    }
}
