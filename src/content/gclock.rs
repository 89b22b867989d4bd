//! The collector's lock: one garbage collection at a time across every process sharing the
//! storage. It is an object created only if absent, holding who took it and until when;
//! the holder renews it while collecting, and a lock past its time is taken over (two
//! collectors overlapping after such a takeover are still safe, only wasteful).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{Content, Result};
use crate::storage::layout;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockState {
    pub holder: String,
    /// Seconds since the epoch.
    pub expires: u64,
}

/// The outcome of trying to take the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Locked {
    Taken,
    /// Someone else holds it.
    Busy(LockState),
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn body(holder: &str, ttl: Duration) -> Bytes {
    let state = LockState {
        holder: holder.to_owned(),
        expires: now_secs() + ttl.as_secs().max(1),
    };
    serde_json::to_vec(&state)
        .expect("a lock serializes")
        .into()
}

impl Content {
    /// Takes the collector's lock for `ttl`, or says who holds it.
    pub async fn lock_gc(&self, holder: &str, ttl: Duration) -> Result<Locked> {
        let path = layout::gc_lock();
        for _ in 0..2 {
            if self.driver.put_if_absent(&path, body(holder, ttl)).await? {
                return Ok(Locked::Taken);
            }
            match self.gc_lock_state().await? {
                Some(state) if state.expires > now_secs() => return Ok(Locked::Busy(state)),
                // Expired or unreadable (a crash mid-write): take it over.
                _ => self.remove(&path).await?,
            }
        }
        Ok(match self.gc_lock_state().await? {
            Some(state) => Locked::Busy(state),
            None => Locked::Busy(LockState {
                holder: "unknown".into(),
                expires: 0,
            }),
        })
    }

    /// Extends a held lock by `ttl` from now.
    pub async fn renew_gc_lock(&self, holder: &str, ttl: Duration) -> Result<()> {
        Ok(self
            .driver
            .put_content(&layout::gc_lock(), body(holder, ttl))
            .await?)
    }

    /// Releases the lock if `holder` still holds it.
    pub async fn unlock_gc(&self, holder: &str) -> Result<()> {
        if self
            .gc_lock_state()
            .await?
            .is_some_and(|s| s.holder == holder)
        {
            self.remove(&layout::gc_lock()).await?;
        }
        Ok(())
    }

    /// Who holds the lock, if anyone (an unreadable lock reads as held by nobody).
    pub async fn gc_lock_state(&self) -> Result<Option<LockState>> {
        match self.driver.get_content(&layout::gc_lock()).await {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::ContentOptions;
    use crate::storage::memory::MemoryDriver;

    #[tokio::test]
    async fn one_holder_at_a_time_and_expired_locks_are_taken_over() {
        let c = Content::new(
            std::sync::Arc::new(MemoryDriver::new()),
            ContentOptions::default(),
        );
        let ttl = Duration::from_secs(60);
        assert_eq!(c.lock_gc("a", ttl).await.unwrap(), Locked::Taken);
        match c.lock_gc("b", ttl).await.unwrap() {
            Locked::Busy(state) => assert_eq!(state.holder, "a"),
            other => panic!("{other:?}"),
        }
        c.unlock_gc("b").await.unwrap();
        assert!(
            c.gc_lock_state().await.unwrap().is_some(),
            "b cannot release a's lock"
        );
        c.unlock_gc("a").await.unwrap();
        assert_eq!(c.lock_gc("b", ttl).await.unwrap(), Locked::Taken);
        // b's lock runs out; c takes over.
        let expired = LockState {
            holder: "b".into(),
            expires: now_secs() - 1,
        };
        c.driver
            .put_content(
                &layout::gc_lock(),
                serde_json::to_vec(&expired).unwrap().into(),
            )
            .await
            .unwrap();
        assert_eq!(c.lock_gc("c", ttl).await.unwrap(), Locked::Taken);
        assert_eq!(c.gc_lock_state().await.unwrap().unwrap().holder, "c");
    }
}
