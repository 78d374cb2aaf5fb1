//! Agent API keys: `lmk_<id>_<secret>`. The id finds the agent; only a hash of the secret is
//! stored, and it is compared in constant time.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng;
use sha2::{Digest, Sha256};

const PREFIX: &str = "lmk";

pub struct AgentKey {
    id: String,
    secret: String,
}

impl fmt::Debug for AgentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl AgentKey {
    pub fn generate() -> Self {
        let mut id = [0u8; 6];
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut id);
        rand::rng().fill_bytes(&mut secret);
        AgentKey {
            id: hex(&id),
            secret: URL_SAFE_NO_PAD.encode(secret),
        }
    }

    /// Splits a presented key; `None` if it is not of our form.
    pub fn parse(presented: &str) -> Option<Self> {
        let rest = presented.trim().strip_prefix(PREFIX)?.strip_prefix('_')?;
        let (id, secret) = rest.split_once('_')?;
        let id_ok = id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit());
        let secret_ok = (40..=64).contains(&secret.len());
        (id_ok && secret_ok).then(|| AgentKey {
            id: id.to_owned(),
            secret: secret.to_owned(),
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn secret_hash(&self) -> [u8; 32] {
        Sha256::digest(self.secret.as_bytes()).into()
    }

    /// Whether this key's secret matches a stored hash, in constant time.
    pub fn matches(&self, stored_hash: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        bool::from(self.secret_hash().as_slice().ct_eq(stored_hash))
    }

    /// The whole key, to show once to whoever created the agent.
    pub fn expose(&self) -> String {
        format!("{PREFIX}_{}_{}", self.id, self.secret)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_parses_back_and_matches_its_hash() {
        let key = AgentKey::generate();
        let shown = key.expose();
        let parsed = AgentKey::parse(&shown).unwrap();
        assert_eq!(parsed.id(), key.id());
        assert!(parsed.matches(&key.secret_hash()));
        assert!(!AgentKey::generate().matches(&key.secret_hash()));
        assert!(!format!("{key:?}").contains(&key.secret));
    }

    #[test]
    fn other_strings_are_not_keys() {
        for s in [
            "",
            "lmk",
            "lmk__",
            "Bearer x",
            "lmk_zzzzzzzzzzzz_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ] {
            assert!(AgentKey::parse(s).is_none(), "{s}");
        }
    }
}
