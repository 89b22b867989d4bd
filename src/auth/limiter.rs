//! Rate limiting of failed logins per client address: after `max_failures` failures within
//! `window`, further attempts from that address are refused until the oldest failure ages out.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses tracked before old entries are pruned.
const MAX_TRACKED: usize = 10_000;

pub struct FailureLimiter {
    max_failures: usize,
    window: Duration,
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl FailureLimiter {
    pub fn new(max_failures: usize, window: Duration) -> FailureLimiter {
        FailureLimiter {
            max_failures,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(wait)` if `addr` is locked out at `now`, with how long until it may retry.
    pub fn blocked(&self, addr: IpAddr, now: Instant) -> Option<Duration> {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let recent = map.get_mut(&addr)?;
        Self::expire(recent, now, self.window);
        if recent.len() < self.max_failures {
            return None;
        }
        recent
            .front()
            .map(|oldest| (*oldest + self.window).saturating_duration_since(now))
    }

    pub fn record_failure(&self, addr: IpAddr, now: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TRACKED {
            let window = self.window;
            map.retain(|_, q| {
                Self::expire(q, now, window);
                !q.is_empty()
            });
        }
        let recent = map.entry(addr).or_default();
        Self::expire(recent, now, self.window);
        recent.push_back(now);
    }

    fn expire(q: &mut VecDeque<Instant>, now: Instant, window: Duration) {
        while q
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= window)
        {
            q.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_out_after_repeated_failures_then_recovers() {
        let l = FailureLimiter::new(3, Duration::from_secs(60));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(l.blocked(a, t0).is_none(), "attempt {i}");
            l.record_failure(a, t0 + Duration::from_secs(i));
        }
        let wait = l.blocked(a, t0 + Duration::from_secs(10)).unwrap();
        assert_eq!(wait, Duration::from_secs(50));
        assert!(l.blocked(b, t0).is_none(), "other clients are not affected");
        assert!(l.blocked(a, t0 + Duration::from_secs(61)).is_none());
    }
}
