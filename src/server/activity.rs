//! What one connection is doing, and when it should be closed for doing nothing. The stream
//! wrapper records bytes moving, the service records requests starting and their responses
//! ending; [`Activity::deadline`] turns that into the moment the connection is cut:
//!
//! - while a request is in flight: when no byte has moved for the idle timeout (a stalled
//!   transfer). A transfer that moves data is never cut;
//! - while HTTP/1 request headers are arriving (the first request, or bytes after an idle
//!   spell): the header timeout after they started, however slowly they trickle (slowloris);
//! - while idle between requests: the idle timeout after the last request ended.
//!   An HTTP/2 connection with no open stream is idle whatever frames (pings) it sends.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// No value yet, in a millisecond field.
const NONE: u64 = u64::MAX;

/// How long a connection may take for each stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// From the first byte of a request (or the connection's start) to its last header.
    pub header: Duration,
    /// Between requests, and without any byte moving during one.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            header: Duration::from_secs(30),
            idle: Duration::from_secs(120),
        }
    }
}

/// Counters shared by a connection's stream, service and watchdog.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    /// Milliseconds since `start`, for each event.
    last_io: AtomicU64,
    idle_since: AtomicU64,
    /// The first byte read while idle, i.e. a request's headers started arriving.
    head_started: AtomicU64,
    in_flight: AtomicUsize,
    http2: AtomicBool,
    /// No request has been served yet: the header timeout counts from the start.
    fresh: AtomicBool,
}

impl Activity {
    pub fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_io: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(NONE),
            in_flight: AtomicUsize::new(0),
            http2: AtomicBool::new(false),
            fresh: AtomicBool::new(true),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    /// `n` bytes were read from the client.
    pub fn read(&self, n: usize) {
        if n == 0 {
            return;
        }
        let now = self.now_ms();
        self.last_io.store(now, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Acquire) == 0 {
            let _ =
                self.head_started
                    .compare_exchange(NONE, now, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    /// `n` bytes were written to the client.
    pub fn wrote(&self, n: usize) {
        if n > 0 {
            self.last_io.store(self.now_ms(), Ordering::Relaxed);
        }
    }

    /// The connection speaks HTTP/2 (ALPN or the prior-knowledge preface).
    pub fn set_http2(&self) {
        self.http2.store(true, Ordering::Relaxed);
    }

    /// A request's headers are complete and it is being served.
    pub fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.fresh.store(false, Ordering::Relaxed);
        self.head_started.store(NONE, Ordering::Release);
    }

    /// A response has been sent to its end (or abandoned).
    pub fn request_ended(&self) {
        // Stored first, so a reader that sees no request in flight sees this time too.
        self.idle_since.store(self.now_ms(), Ordering::Release);
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.head_started.store(NONE, Ordering::Release);
        }
    }

    /// When the connection should be closed if nothing changes until then.
    pub fn deadline(&self, timeouts: &Timeouts) -> Instant {
        let snapshot = Snapshot {
            in_flight: self.in_flight.load(Ordering::Acquire),
            last_io: self.last_io.load(Ordering::Relaxed),
            idle_since: self.idle_since.load(Ordering::Acquire),
            head_started: some(self.head_started.load(Ordering::Acquire)),
            http2: self.http2.load(Ordering::Relaxed),
            fresh: self.fresh.load(Ordering::Relaxed),
        };
        self.start + Duration::from_millis(snapshot.deadline(timeouts))
    }
}

impl Default for Activity {
    fn default() -> Self {
        Activity::new()
    }
}

fn some(ms: u64) -> Option<u64> {
    (ms != NONE).then_some(ms)
}

/// One reading of the counters, in milliseconds since the connection started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Snapshot {
    in_flight: usize,
    last_io: u64,
    idle_since: u64,
    head_started: Option<u64>,
    http2: bool,
    fresh: bool,
}

impl Snapshot {
    fn deadline(&self, t: &Timeouts) -> u64 {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(NONE / 2);
        if self.in_flight > 0 {
            return self.last_io.saturating_add(ms(t.idle));
        }
        if self.http2 {
            return self.idle_since.saturating_add(ms(t.idle));
        }
        match (self.fresh, self.head_started) {
            (true, _) => ms(t.header),
            (false, Some(started)) => started.saturating_add(ms(t.header)),
            (false, None) => self.idle_since.saturating_add(ms(t.idle)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        header: Duration::from_secs(30),
        idle: Duration::from_secs(120),
    };

    fn snap() -> Snapshot {
        Snapshot {
            in_flight: 0,
            last_io: 0,
            idle_since: 0,
            head_started: None,
            http2: false,
            fresh: true,
        }
    }

    #[test]
    fn a_new_connection_must_send_its_headers_within_the_header_timeout() {
        // Trickling bytes does not extend it.
        let s = Snapshot {
            last_io: 29_000,
            head_started: Some(10),
            ..snap()
        };
        assert_eq!(s.deadline(&T), 30_000);
    }

    #[test]
    fn a_request_in_flight_is_cut_only_when_no_byte_moves() {
        let s = Snapshot {
            in_flight: 1,
            last_io: 500_000,
            fresh: false,
            ..snap()
        };
        assert_eq!(s.deadline(&T), 620_000);
    }

    #[test]
    fn keep_alive_connections_idle_out_then_headers_must_complete() {
        let idle = Snapshot {
            idle_since: 40_000,
            last_io: 40_000,
            fresh: false,
            ..snap()
        };
        assert_eq!(idle.deadline(&T), 160_000);
        let trickling = Snapshot {
            head_started: Some(100_000),
            last_io: 129_000,
            ..idle
        };
        assert_eq!(trickling.deadline(&T), 130_000);
    }

    #[test]
    fn http2_without_streams_is_idle_whatever_it_sends() {
        let s = Snapshot {
            http2: true,
            idle_since: 5_000,
            head_started: Some(6_000),
            last_io: 100_000,
            fresh: false,
            ..snap()
        };
        assert_eq!(s.deadline(&T), 125_000);
    }

    #[test]
    fn counters_follow_requests() {
        let a = Activity::new();
        a.read(10);
        a.request_started();
        a.read(10);
        assert!(a.deadline(&T) >= a.start + T.idle);
        a.request_ended();
        assert!(!a.fresh.load(Ordering::Relaxed));
        assert_eq!(a.head_started.load(Ordering::Relaxed), NONE);
        a.read(1);
        assert!(a.deadline(&T) <= Instant::now() + T.header);
    }
}
