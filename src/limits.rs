//! Per-token and per-client-IP request limits, counted in this instance's memory.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::credentials::TokenHash;

/// A request was over a limit; it may be retried after this many seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub u64);

/// The limits of `LEAVEMSG_RATE_PER_TOKEN` and `LEAVEMSG_RATE_PER_IP` (calls a minute, 0 = none).
pub struct Limits {
    per_token: Option<DefaultKeyedRateLimiter<[u8; 32]>>,
    per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

impl Limits {
    pub fn new(per_token_per_minute: u32, per_ip_per_minute: u32) -> Self {
        fn limiter<K: Hash + Eq + Clone>(per_minute: u32) -> Option<DefaultKeyedRateLimiter<K>> {
            NonZeroU32::new(per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n)))
        }
        Limits {
            per_token: limiter(per_token_per_minute),
            per_ip: limiter(per_ip_per_minute),
        }
    }

    /// Counts a call against the client's allowance: an IPv4 address's own (also when written
    /// IPv4-mapped), an IPv6 address's /64 network's. One IPv6 subscriber or host is usually
    /// given a whole /64, so counting single addresses would let one client take a fresh
    /// allowance per call.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), RetryAfter> {
        check(self.per_ip.as_ref(), &limit_key(ip))
    }

    pub fn check_token(&self, token: &TokenHash) -> Result<(), RetryAfter> {
        check(self.per_token.as_ref(), &token.0)
    }

    /// Forgets keys whose limits have fully recovered, so memory follows recent traffic only.
    pub fn forget_idle(&self) {
        if let Some(l) = &self.per_token {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.per_ip {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

/// The address whose allowance a call from `ip` uses: IPv4 as itself, IPv6 as its /64.
fn limit_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let network = v6.to_bits() & !u128::from(u64::MAX);
            IpAddr::V6(Ipv6Addr::from_bits(network))
        }
    }
}

fn check<K: Hash + Eq + Clone>(
    limiter: Option<&DefaultKeyedRateLimiter<K>>,
    key: &K,
) -> Result<(), RetryAfter> {
    let Some(limiter) = limiter else {
        return Ok(());
    };
    limiter.check_key(key).map_err(|not_until| {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        // Round up: retrying after the advertised time must succeed.
        RetryAfter(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
    })
}

/// Things one holder may have open at once (an agent's live streams, its exports), counted
/// per holder and in all; a [`Slot`] is given back when it is dropped.
#[derive(Clone, Default)]
pub struct Slots {
    taken: Arc<Mutex<HashMap<String, usize>>>,
}

/// Why no slot was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotsFull {
    /// The holder already has its most.
    Holder,
    /// Every holder together has the most there may be.
    All,
}

/// One taken slot; dropping it gives it back.
pub struct Slot {
    taken: Arc<Mutex<HashMap<String, usize>>>,
    holder: String,
}

impl Slots {
    /// A slot for `holder` if it has fewer than `per_holder` and all have fewer than `in_all`.
    pub fn take(&self, holder: &str, per_holder: usize, in_all: usize) -> Result<Slot, SlotsFull> {
        let mut taken = self.taken.lock().unwrap_or_else(PoisonError::into_inner);
        if taken.get(holder).is_some_and(|n| *n >= per_holder) {
            return Err(SlotsFull::Holder);
        }
        if taken.values().sum::<usize>() >= in_all {
            return Err(SlotsFull::All);
        }
        *taken.entry(holder.to_owned()).or_default() += 1;
        Ok(Slot {
            taken: self.taken.clone(),
            holder: holder.to_owned(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut taken = self.taken.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = taken.get_mut(&self.holder) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                // Holders with nothing open take no memory.
                taken.remove(&self.holder);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_n_plus_first_call_in_a_minute_is_refused() {
        let limits = Limits::new(3, 0);
        let token = TokenHash([7; 32]);
        for _ in 0..3 {
            assert!(limits.check_token(&token).is_ok());
        }
        let RetryAfter(secs) = limits.check_token(&token).unwrap_err();
        assert!((1..=60).contains(&secs), "{secs}");
        // Another token has its own allowance; IPs are unlimited here.
        assert!(limits.check_token(&TokenHash([8; 32])).is_ok());
        for _ in 0..1000 {
            assert!(limits.check_ip("192.0.2.1".parse().unwrap()).is_ok());
        }
    }

    #[test]
    fn per_ip_limit_counts_each_address() {
        let limits = Limits::new(0, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        assert!(limits.check_ip(a).is_ok());
        assert!(limits.check_ip(a).is_ok());
        assert!(limits.check_ip(a).is_err());
        assert!(limits.check_ip(b).is_ok());
        limits.forget_idle();
    }

    #[test]
    fn an_ipv6_network_of_64_bits_shares_one_allowance() {
        let limits = Limits::new(0, 2);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(limits.check_ip(ip("2001:db8:1:2::1")).is_ok());
        assert!(
            limits
                .check_ip(ip("2001:db8:1:2:ffff:ffff:ffff:fffe"))
                .is_ok()
        );
        assert!(limits.check_ip(ip("2001:db8:1:2:abcd::9")).is_err());
        // The next /64 has its own.
        assert!(limits.check_ip(ip("2001:db8:1:3::1")).is_ok());
    }

    #[test]
    fn ipv4_counts_as_itself_also_when_written_mapped() {
        let limits = Limits::new(0, 2);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(limits.check_ip(ip("192.0.2.1")).is_ok());
        assert!(limits.check_ip(ip("::ffff:192.0.2.1")).is_ok());
        assert!(limits.check_ip(ip("192.0.2.1")).is_err());
        // Neighbours in the same /24 are other clients.
        assert!(limits.check_ip(ip("192.0.2.2")).is_ok());
        assert!(limits.check_ip(ip("::ffff:192.0.2.3")).is_ok());
    }

    #[test]
    fn slots_are_bounded_per_holder_and_in_all_and_given_back() {
        let slots = Slots::default();
        let a1 = slots.take("a", 2, 3).unwrap();
        let _a2 = slots.take("a", 2, 3).unwrap();
        assert_eq!(slots.take("a", 2, 3).err(), Some(SlotsFull::Holder));
        let _b1 = slots.take("b", 2, 3).unwrap();
        assert_eq!(slots.take("c", 2, 3).err(), Some(SlotsFull::All));
        drop(a1);
        assert!(slots.take("c", 2, 3).is_ok());
    }
}
