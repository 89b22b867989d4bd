//! Password checks with a bounded cost. bcrypt runs on a few dedicated, low-priority threads
//! (never on the tokio blocking pool that file I/O shares), fed by a fair queue:
//!
//! - client addresses are served round-robin, so a flood from some addresses delays a login
//!   from another address by at most one turn per busy address;
//! - every address has a budget of bcrypt runs (a token bucket: [`Budget::burst`] at once,
//!   then one per [`Budget::refill`]). A run whose password matches gives its token back, so
//!   the budget only limits failures. Beyond the budget a check *waits* for a token, it is never
//!   refused outright: a right password still gets in, after at most one refill interval
//!   unless the same address has queued other checks before it;
//! - a check that waits longer than [`Budget::max_wait`], or that is pushed out when the
//!   queue is full (the longest queue loses its oldest check), is answered `Throttled`
//!   without running bcrypt; a check whose caller went away is dropped unrun.
//!
//! Tokens are taken under the queue's lock when a check is dispatched, so any number of
//! simultaneous checks from one address cannot exceed its budget. Called by
//! [`super::Authenticator`].

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// Addresses remembered before idle ones with a full budget are forgotten.
const MAX_TRACKED: usize = 65_536;

/// How much bcrypt work one client address may cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Runs allowed at once from a fresh address.
    pub burst: u32,
    /// One more run is allowed per interval.
    pub refill: Duration,
    /// The longest a check waits for its turn before it is answered `Throttled`.
    pub max_wait: Duration,
    /// Checks queued in all; past it the longest queue loses its oldest check.
    pub max_queued: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            burst: 10,
            refill: Duration::from_secs(2),
            max_wait: Duration::from_secs(10),
            max_queued: 4096,
        }
    }
}

/// The answer to one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Match,
    NoMatch,
    /// Not checked: the address is over its budget; retry after the given time.
    Throttled(Duration),
}

struct Job {
    client: IpAddr,
    password: String,
    hash: String,
    deadline: Instant,
    reply: oneshot::Sender<Outcome>,
}

struct Client {
    tokens: f64,
    updated: Instant,
    queue: VecDeque<Job>,
    /// The address is in the rotation (once at most, however its queue changed).
    in_rotation: bool,
}

impl Client {
    fn refill(&mut self, now: Instant, budget: &Budget) {
        let earned = now.saturating_duration_since(self.updated).as_secs_f64()
            / budget.refill.as_secs_f64().max(1e-3);
        self.tokens = (self.tokens + earned).min(f64::from(budget.burst));
        self.updated = now;
    }

    /// Time until the next token, zero if one is available.
    fn next_token(&self, budget: &Budget) -> Duration {
        budget.refill.mul_f64((1.0 - self.tokens).max(0.0))
    }

    /// Answers the checks at the front that waited too long.
    fn expire(&mut self, now: Instant, budget: &Budget) -> usize {
        let retry = self.next_token(budget).max(Duration::from_secs(1));
        let mut expired = 0;
        while self.queue.front().is_some_and(|j| j.deadline <= now) {
            if let Some(job) = self.queue.pop_front() {
                let _ = job.reply.send(Outcome::Throttled(retry));
                expired += 1;
            }
        }
        expired
    }
}

#[derive(Default)]
struct State {
    clients: HashMap<IpAddr, Client>,
    /// Addresses with queued checks, in the order they are served.
    rotation: VecDeque<IpAddr>,
    queued: usize,
    shutdown: bool,
}

struct Shared {
    budget: Budget,
    state: Mutex<State>,
    wake: Condvar,
    runs: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The bcrypt pool. Dropping it stops its threads once they finish their current check.
pub struct Verifier {
    shared: Arc<Shared>,
    /// Threads that started; with none, checks run on the blocking pool instead of waiting.
    workers: usize,
}

impl Verifier {
    /// Starts `workers` threads (at least one).
    pub fn new(workers: usize, budget: Budget) -> Verifier {
        let shared = Arc::new(Shared {
            budget,
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            runs: AtomicU64::new(0),
        });
        let mut started = 0;
        for index in 0..workers.max(1) {
            let shared = shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("bcrypt-{index}"))
                .spawn(move || worker(&shared));
            match spawned {
                Ok(_) => started += 1,
                Err(e) => tracing::error!(error = %e, "cannot start a password-check thread"),
            }
        }
        Verifier {
            shared,
            workers: started,
        }
    }

    /// Half the cores, at least one: password checks never take the whole machine.
    pub fn default_workers() -> usize {
        std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
    }

    /// Checks `password` against the bcrypt `hash` on behalf of `client`.
    pub async fn verify(&self, client: IpAddr, password: String, hash: String) -> Outcome {
        if self.workers == 0 {
            // No thread of its own could start: slower, but never a login that hangs.
            self.shared.runs.fetch_add(1, Ordering::Relaxed);
            let checked = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash));
            return match checked.await {
                Ok(Ok(true)) => Outcome::Match,
                _ => Outcome::NoMatch,
            };
        }
        let client = budget_key(client);
        let (reply, answer) = oneshot::channel();
        let now = Instant::now();
        let budget = self.shared.budget;
        {
            let mut state = self.shared.lock();
            if state.shutdown {
                return Outcome::Throttled(Duration::from_secs(1));
            }
            if state.queued >= budget.max_queued && !make_room(&mut state, client, &budget) {
                return Outcome::Throttled(budget.refill);
            }
            forget_idle(&mut state, now, &budget);
            let entry = state.clients.entry(client).or_insert_with(|| Client {
                tokens: f64::from(budget.burst),
                updated: now,
                queue: VecDeque::new(),
                in_rotation: false,
            });
            let was_idle = !entry.in_rotation;
            entry.in_rotation = true;
            entry.queue.push_back(Job {
                client,
                password,
                hash,
                deadline: now + budget.max_wait,
                reply,
            });
            state.queued += 1;
            if was_idle {
                state.rotation.push_back(client);
            }
        }
        self.shared.wake.notify_one();
        answer
            .await
            .unwrap_or(Outcome::Throttled(Duration::from_secs(1)))
    }

    /// bcrypt runs so far.
    pub fn runs(&self) -> u64 {
        self.shared.runs.load(Ordering::Relaxed)
    }
}

impl Drop for Verifier {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.wake.notify_all();
    }
}

/// The address a budget belongs to: IPv4 addresses as they are (IPv4-mapped IPv6 too), IPv6
/// by their /64, since one host is usually given a whole /64 to pick addresses from.
fn budget_key(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !u128::from(u64::MAX);
                IpAddr::V6(prefix.into())
            }
        },
        v4 => v4,
    }
}

/// Drops the oldest check of the longest queue to admit one from `client`; false when that
/// longest queue is `client`'s own, which then has to wait its turn.
fn make_room(state: &mut State, client: IpAddr, budget: &Budget) -> bool {
    let longest = state
        .clients
        .iter()
        .max_by_key(|(_, c)| c.queue.len())
        .map(|(addr, _)| *addr);
    let Some(addr) = longest.filter(|a| *a != client) else {
        return false;
    };
    if let Some(c) = state.clients.get_mut(&addr)
        && let Some(job) = c.queue.pop_front()
    {
        let retry = c.next_token(budget).max(Duration::from_secs(1));
        let _ = job.reply.send(Outcome::Throttled(retry));
        state.queued -= 1;
    }
    true
}

/// Keeps the address table bounded: forgets idle addresses whose budget is whole again.
fn forget_idle(state: &mut State, now: Instant, budget: &Budget) {
    if state.clients.len() < MAX_TRACKED {
        return;
    }
    state.clients.retain(|_, c| {
        c.refill(now, budget);
        !c.queue.is_empty() || c.tokens < f64::from(budget.burst)
    });
    if state.clients.len() >= MAX_TRACKED {
        state.clients.retain(|_, c| !c.queue.is_empty());
    }
}

/// The next check to run, taking its token; or when to look again.
fn next_job(state: &mut State, now: Instant, budget: &Budget) -> Result<Job, Option<Instant>> {
    let mut wake: Option<Instant> = None;
    for _ in 0..state.rotation.len() {
        let Some(addr) = state.rotation.pop_front() else {
            break;
        };
        let Some(client) = state.clients.get_mut(&addr) else {
            continue;
        };
        client.refill(now, budget);
        // Checks whose caller gave up cost nothing.
        let before = client.queue.len();
        client.queue.retain(|j| !j.reply.is_closed());
        let mut removed = before - client.queue.len();
        // A check that waited past max_wait is answered, budget or not: waits stay bounded
        // when the pool is merely busy, too.
        removed += client.expire(now, budget);
        state.queued -= removed;
        if client.queue.is_empty() {
            client.in_rotation = false;
            continue;
        }
        if client.tokens >= 1.0 {
            client.tokens -= 1.0;
            let job = client.queue.pop_front();
            if client.queue.is_empty() {
                client.in_rotation = false;
            } else {
                state.rotation.push_back(addr);
            }
            if let Some(job) = job {
                state.queued -= 1;
                return Ok(job);
            }
            continue;
        }
        let token_at = now + client.next_token(budget);
        let deadline = client.queue.front().map_or(token_at, |j| j.deadline);
        let at = token_at.min(deadline);
        wake = Some(wake.map_or(at, |w| w.min(at)));
        state.rotation.push_back(addr);
    }
    Err(wake)
}

fn worker(shared: &Shared) {
    crate::sys::lower_thread_priority();
    loop {
        let job = {
            let mut state = shared.lock();
            loop {
                if state.shutdown {
                    return;
                }
                match next_job(&mut state, Instant::now(), &shared.budget) {
                    Ok(job) => break job,
                    Err(None) => {
                        state = shared.wake.wait(state).unwrap_or_else(|p| p.into_inner());
                    }
                    Err(Some(at)) => {
                        let timeout = at.saturating_duration_since(Instant::now());
                        state = shared
                            .wake
                            .wait_timeout(state, timeout.max(Duration::from_millis(1)))
                            .unwrap_or_else(|p| p.into_inner())
                            .0;
                    }
                }
            }
        };
        shared.runs.fetch_add(1, Ordering::Relaxed);
        let matched = bcrypt::verify(&job.password, &job.hash).unwrap_or(false);
        if matched {
            // Successes do not count against the address's budget.
            let mut state = shared.lock();
            if let Some(client) = state.clients.get_mut(&job.client) {
                client.tokens = (client.tokens + 1.0).min(f64::from(shared.budget.burst));
            }
        }
        let _ = job.reply.send(if matched {
            Outcome::Match
        } else {
            Outcome::NoMatch
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_share_a_budget_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(budget_key(a), budget_key(b));
        assert_ne!(budget_key(a), budget_key(other));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(budget_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
        let v4: IpAddr = "192.0.2.8".parse().unwrap();
        assert_eq!(budget_key(v4), v4);
    }

    #[tokio::test]
    async fn waits_stay_bounded_when_the_pool_is_merely_busy() {
        let budget = Budget {
            burst: 100,
            refill: Duration::from_secs(1),
            max_wait: Duration::from_millis(300),
            max_queued: 1000,
        };
        let verifier = std::sync::Arc::new(Verifier::new(1, budget));
        let hash = bcrypt::hash("x", 10).unwrap();
        let started = Instant::now();
        let checks = (0..30u8).map(|i| {
            let (verifier, hash) = (verifier.clone(), hash.clone());
            tokio::spawn(async move {
                let client = IpAddr::from([192, 0, 2, i]);
                let outcome = verifier.verify(client, "y".into(), hash).await;
                (outcome, started.elapsed())
            })
        });
        let answers = futures::future::join_all(checks).await;
        let throttled = answers
            .iter()
            .filter(|a| matches!(a, Ok((Outcome::Throttled(_), _))))
            .count();
        assert!(
            throttled > 0,
            "30 checks of ~50 ms on one thread cannot all fit in 300 ms"
        );
        for (outcome, took) in answers.into_iter().flatten() {
            if let Outcome::Throttled(_) = outcome {
                assert!(
                    took < Duration::from_secs(2),
                    "a throttled check waited {took:?}"
                );
            }
        }
    }

    #[tokio::test]
    async fn a_caller_that_gives_up_costs_no_bcrypt_run() {
        let budget = Budget {
            burst: 1,
            refill: Duration::from_secs(60),
            max_wait: Duration::from_secs(5),
            max_queued: 16,
        };
        let verifier = Verifier::new(1, budget);
        let hash = bcrypt::hash("x", 4).unwrap();
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(
            verifier.verify(client, "y".into(), hash.clone()).await,
            Outcome::NoMatch
        );
        // The budget is spent: this check waits, and its caller gives up.
        let waited = tokio::time::timeout(
            Duration::from_millis(200),
            verifier.verify(client, "z".into(), hash.clone()),
        )
        .await;
        assert!(waited.is_err());
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(verifier.runs(), 1);
        // Another address is served at once.
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(
            verifier.verify(other, "x".into(), hash).await,
            Outcome::Match
        );
        assert_eq!(verifier.runs(), 2);
    }
}
