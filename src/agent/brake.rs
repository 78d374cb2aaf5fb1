//! A brake on failed agent authentication. Each presented key costs a database query, so a
//! client trying keys by the thousand would slow everyone. Two things stop it:
//!
//! - failures are counted per client address; past [`FAILURES_PER_MINUTE`] the address's
//!   calls are answered 429 without touching the database until its allowance recovers;
//! - key ids the database said do not exist are remembered for [`UNKNOWN_KEY_MEMORY`], so
//!   presenting one again costs no query.
//!
//! The client address is the connection's peer. The agent face does not read forwarding
//! headers (the visitor face's rules for them are its own): behind a reverse proxy every
//! agent's failures count against the proxy's address together.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::limits::RetryAfter;

/// Failed authentications an address may make in a minute (a burst of this many, then one
/// more every two seconds). A person mistyping a key stays far below it; a script guessing
/// keys reaches it at once.
pub const FAILURES_PER_MINUTE: NonZeroU32 = NonZeroU32::new(30).expect("30 is not zero");
/// How long an unknown key id is remembered. Short, because a key created later (with
/// `leavemsg agent create`) makes its id exist: its id is 48 random bits, so it is almost
/// never one remembered here, and if it were, it would work within this time.
pub const UNKNOWN_KEY_MEMORY: Duration = Duration::from_secs(60);
/// Most unknown ids, and most braked addresses, held at once: a flood of random ids cannot
/// grow memory without bound. Past it nothing new is remembered; the address brake still holds.
const MOST_REMEMBERED: usize = 10_000;

pub struct AuthBrake {
    failures: DefaultKeyedRateLimiter<IpAddr>,
    /// Addresses over their allowance, and until when: refused before any query. Every call
    /// is refused meanwhile, valid key or not, because telling a valid key from a bad one is
    /// the query the brake is there to spare; it releases seconds after the failures stop.
    braked: Mutex<HashMap<IpAddr, Instant>>,
    pub unknown: UnknownKeyIds,
}

impl Default for AuthBrake {
    fn default() -> Self {
        AuthBrake {
            failures: RateLimiter::keyed(Quota::per_minute(FAILURES_PER_MINUTE)),
            braked: Mutex::default(),
            unknown: UnknownKeyIds::new(UNKNOWN_KEY_MEMORY, MOST_REMEMBERED),
        }
    }
}

impl AuthBrake {
    /// Whether `ip` may try to authenticate now.
    pub fn check(&self, ip: IpAddr) -> Result<(), RetryAfter> {
        let mut braked = self.braked.lock().unwrap_or_else(PoisonError::into_inner);
        match braked.get(&ip) {
            Some(until) => match until.checked_duration_since(Instant::now()) {
                Some(wait) if !wait.is_zero() => Err(retry_after(wait)),
                _ => {
                    braked.remove(&ip);
                    Ok(())
                }
            },
            None => Ok(()),
        }
    }

    /// Counts a failed authentication from `ip`; `Err` when it is over its allowance (the
    /// address is then braked until it recovers).
    pub fn failed(&self, ip: IpAddr) -> Result<(), RetryAfter> {
        let Err(not_until) = self.failures.check_key(&ip) else {
            return Ok(());
        };
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        let mut braked = self.braked.lock().unwrap_or_else(PoisonError::into_inner);
        if braked.len() >= MOST_REMEMBERED {
            let now = Instant::now();
            braked.retain(|_, until| *until > now);
        }
        if braked.len() < MOST_REMEMBERED {
            braked.insert(ip, Instant::now() + wait);
        }
        Err(retry_after(wait))
    }

    /// Forgets what has expired, so memory follows recent traffic only.
    pub fn forget_idle(&self) {
        self.failures.retain_recent();
        self.failures.shrink_to_fit();
        let now = Instant::now();
        self.braked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, until| *until > now);
        self.unknown.forget_expired(now);
    }
}

/// Whole seconds, rounded up: retrying after the advertised time must succeed.
fn retry_after(wait: Duration) -> RetryAfter {
    RetryAfter(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
}

/// Key ids the database said no agent has, each for a while. Only the database's "no such
/// id" is remembered, never a wrong secret, so a key created since works once its id expires
/// here (and at once unless its id was presented, unknown, in the last minute).
pub struct UnknownKeyIds {
    ids: Mutex<HashMap<String, Instant>>,
    memory: Duration,
    most: usize,
}

impl UnknownKeyIds {
    pub fn new(memory: Duration, most: usize) -> Self {
        UnknownKeyIds {
            ids: Mutex::default(),
            memory,
            most,
        }
    }

    /// Whether the database said recently that no key has this id.
    pub fn contains(&self, id: &str) -> bool {
        self.contains_at(id, Instant::now())
    }

    pub fn remember(&self, id: &str) {
        self.remember_at(id, Instant::now());
    }

    fn contains_at(&self, id: &str, now: Instant) -> bool {
        let ids = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
        ids.get(id).is_some_and(|until| *until > now)
    }

    fn remember_at(&self, id: &str, now: Instant) {
        let mut ids = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
        if ids.len() >= self.most {
            ids.retain(|_, until| *until > now);
        }
        if ids.len() < self.most {
            ids.insert(id.to_owned(), now + self.memory);
        }
    }

    fn forget_expired(&self, now: Instant) {
        self.ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, until| *until > now);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_ids_are_remembered_for_a_while_then_forgotten() {
        let unknown = UnknownKeyIds::new(Duration::from_secs(60), 100);
        let start = Instant::now();
        assert!(!unknown.contains_at("0123456789ab", start));
        unknown.remember_at("0123456789ab", start);
        assert!(unknown.contains_at("0123456789ab", start));
        assert!(unknown.contains_at("0123456789ab", start + Duration::from_secs(59)));
        assert!(!unknown.contains_at("ba9876543210", start));
        // Expired: the id costs a query again (a key created since is found).
        assert!(!unknown.contains_at("0123456789ab", start + Duration::from_secs(60)));
        unknown.forget_expired(start + Duration::from_secs(61));
        assert_eq!(unknown.len(), 0);
    }

    #[test]
    fn unknown_ids_take_bounded_memory() {
        let unknown = UnknownKeyIds::new(Duration::from_secs(60), 3);
        let start = Instant::now();
        for id in ["a", "b", "c", "d"] {
            unknown.remember_at(id, start);
        }
        assert_eq!(unknown.len(), 3);
        assert!(!unknown.contains_at("d", start), "full: not remembered");
        // Once the old ones have expired there is room again.
        let later = start + Duration::from_secs(61);
        unknown.remember_at("e", later);
        assert!(unknown.contains_at("e", later));
        assert_eq!(unknown.len(), 1);
    }

    #[test]
    fn an_address_is_braked_past_its_failures_and_others_are_not() {
        let brake = AuthBrake::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        for _ in 0..FAILURES_PER_MINUTE.get() {
            assert!(brake.check(a).is_ok());
            assert!(brake.failed(a).is_ok());
        }
        let RetryAfter(secs) = brake.failed(a).unwrap_err();
        assert!((1..=60).contains(&secs), "{secs}");
        assert!(brake.check(a).is_err());
        assert!(brake.check(b).is_ok());
        assert!(brake.failed(b).is_ok());
        brake.forget_idle();
    }
}
