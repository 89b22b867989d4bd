//! The latest chunks a fetch received, kept in memory while they are written: clients that
//! keep up with the upstream read them from here as they arrive, without waiting for the
//! disk or copying them. Bounded: chunks go once they are readable from the upload session
//! and more than `TAIL` bytes are held.

use bytes::Bytes;

/// The received bytes a fetch keeps in memory for its clients, once they are on disk.
const TAIL: usize = 4 << 20;

/// The latest chunks received, in order and contiguous: they cover `start..received`, and
/// while the fetch runs, `start` is never past what the session has made readable. (`clear`,
/// when the fetch ends, moves it past everything: readers then go by the fetch's outcome.)
#[derive(Default)]
pub struct Tail {
    start: u64,
    len: usize,
    chunks: std::collections::VecDeque<Bytes>,
}

impl Tail {
    /// Appends a chunk, then lets go of the oldest ones while more than `TAIL` is held and
    /// what they cover is readable from the session up to `readable`.
    pub fn push(&mut self, chunk: Bytes, readable: u64) {
        self.len += chunk.len();
        self.chunks.push_back(chunk);
        self.trim(readable);
    }

    pub fn trim(&mut self, readable: u64) {
        while let Some(front) = self.chunks.front() {
            let end = self.start + front.len() as u64;
            if self.len - front.len() < TAIL || end > readable {
                break;
            }
            self.len -= front.len();
            self.start = end;
            self.chunks.pop_front();
        }
    }

    /// Lets go of every chunk.
    pub fn clear(&mut self) {
        self.start += self.len as u64;
        self.len = 0;
        self.chunks.clear();
    }

    /// The bytes from `pos` (and before `end`) that one held chunk covers.
    pub fn at(&self, pos: u64, end: u64) -> Option<Bytes> {
        let mut start = self.start;
        if pos < start {
            return None;
        }
        for chunk in &self.chunks {
            let next = start + chunk.len() as u64;
            if pos < next {
                let from = (pos - start) as usize;
                let to = (end.min(next) - start) as usize;
                return Some(chunk.slice(from..to));
            }
            start = next;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(fill: u8, len: usize) -> Bytes {
        Bytes::from(vec![fill; len])
    }

    #[test]
    fn serves_slices_of_held_chunks_up_to_the_end_asked_for() {
        let mut tail = Tail::default();
        tail.push(chunk(1, 10), 0);
        tail.push(chunk(2, 10), 0);
        assert_eq!(tail.at(0, 100).unwrap(), chunk(1, 10));
        assert_eq!(tail.at(5, 100).unwrap(), chunk(1, 5));
        assert_eq!(tail.at(12, 15).unwrap(), chunk(2, 3));
        assert!(tail.at(20, 100).is_none(), "nothing past what was received");
    }

    #[test]
    fn lets_go_only_of_readable_chunks_past_the_bound() {
        let mut tail = Tail::default();
        let big = TAIL / 2;
        for i in 0..4 {
            tail.push(chunk(i, big), 0);
        }
        // Nothing is readable from the session yet: everything stays.
        assert_eq!(tail.len, 4 * big);
        assert!(tail.at(0, u64::MAX).is_some());
        // The first three chunks are readable: two go, and TAIL bytes stay held.
        tail.trim(3 * big as u64);
        assert_eq!(tail.start, 2 * big as u64);
        assert_eq!(tail.len, TAIL);
        assert!(tail.at(0, u64::MAX).is_none());
        assert_eq!(tail.at(2 * big as u64, u64::MAX).unwrap()[0], 2);
    }

    #[test]
    fn clear_moves_the_start_past_everything() {
        let mut tail = Tail::default();
        tail.push(chunk(1, 10), 0);
        tail.clear();
        assert_eq!(tail.start, 10);
        assert!(tail.at(5, 100).is_none());
        tail.push(chunk(2, 4), 0);
        assert_eq!(tail.at(10, 100).unwrap(), chunk(2, 4));
    }
}
