//! Where sessions live between calls: Redis in a cluster, this process on one machine.
//! Records are opaque bytes with a revision; `replace` is compare-and-set on the revision,
//! so two replicas (or two calls) updating one session never lose each other's evidence.
//! Records are purged by the store itself at the time given with each write. Records are
//! opaque here: [`crate::sessions`] seals them before they arrive.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    #[error("the in-process session store holds its maximum of {0} sessions")]
    Full(usize),
}

/// The session store.
#[derive(Debug)]
pub enum Store {
    Memory(MemoryStore),
    Redis(RedisStore),
}

/// A stored record and its revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub rev: u64,
    pub data: Vec<u8>,
}

impl Store {
    /// An in-process store holding at most `capacity` records.
    pub fn memory(capacity: usize) -> Store {
        Store::Memory(MemoryStore::new(capacity))
    }

    pub fn redis(url: &str, timeout: Duration) -> Result<Store, StoreError> {
        RedisStore::new(url, timeout).map(Store::Redis)
    }

    /// Sessions on a Redis client made already (password, TLS), which others may share.
    pub fn on_redis(redis: ekyc_runtime::redis::Redis) -> Store {
        Store::Redis(RedisStore { redis })
    }

    /// Stores a new record with revision 1; false when the id exists.
    pub async fn create(&self, id: &str, data: &[u8], purge_at_ms: i64) -> Result<bool, StoreError> {
        match self {
            Store::Memory(m) => m.create(id, data, purge_at_ms),
            Store::Redis(r) => r.create(id, data, purge_at_ms).await,
        }
    }

    pub async fn load(&self, id: &str) -> Result<Option<Stored>, StoreError> {
        match self {
            Store::Memory(m) => m.load(id),
            Store::Redis(r) => r.load(id).await,
        }
    }

    /// Replaces the record if its revision is still `rev` (then it becomes `rev + 1`);
    /// false when someone else changed or purged it meanwhile.
    pub async fn replace(&self, id: &str, rev: u64, data: &[u8], purge_at_ms: i64) -> Result<bool, StoreError> {
        match self {
            Store::Memory(m) => m.replace(id, rev, data, purge_at_ms),
            Store::Redis(r) => r.replace(id, rev, data, purge_at_ms).await,
        }
    }

    pub async fn delete(&self, id: &str) -> Result<(), StoreError> {
        match self {
            Store::Memory(m) => m.delete(id),
            Store::Redis(r) => r.delete(id).await,
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Records by id with their purge time (unix ms), and the purge times in order. The queue
/// may hold stale entries (a record replaced with a later purge time, or deleted): an entry
/// purges its record only when the record's purge time is still the entry's.
#[derive(Debug, Default)]
struct Records {
    map: HashMap<String, (Stored, i64)>,
    queue: BinaryHeap<Reverse<(i64, String)>>,
}

impl Records {
    /// Purges what is due, a few entries per call: amortised O(log n) per operation, never a
    /// scan of the whole store. Each write adds one queue entry and each call pops up to two,
    /// so the queue cannot outgrow the writes.
    fn purge_due(&mut self, now: i64) {
        for _ in 0..2 {
            match self.queue.peek() {
                Some(Reverse((at, _))) if *at <= now => {}
                _ => return,
            }
            let Some(Reverse((at, id))) = self.queue.pop() else { return };
            if self.map.get(&id).is_some_and(|(_, purge)| *purge == at) {
                self.map.remove(&id);
            }
        }
    }
}

/// In-process store for a single machine, bounded by `capacity` records.
#[derive(Debug)]
pub struct MemoryStore {
    records: Mutex<Records>,
    capacity: usize,
}

impl MemoryStore {
    pub fn new(capacity: usize) -> MemoryStore {
        MemoryStore { records: Mutex::new(Records::default()), capacity: capacity.max(1) }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Records>, StoreError> {
        self.records.lock().map_err(|_| StoreError::Unavailable("in-process store poisoned".into()))
    }

    fn create(&self, id: &str, data: &[u8], purge_at_ms: i64) -> Result<bool, StoreError> {
        let mut r = self.lock()?;
        let now = now_ms();
        r.purge_due(now);
        if let Some((_, purge)) = r.map.get(id) {
            if *purge > now {
                return Ok(false);
            }
            r.map.remove(id);
        }
        if r.map.len() >= self.capacity || r.queue.len() >= self.capacity.saturating_mul(2) {
            return Err(StoreError::Full(self.capacity));
        }
        r.map.insert(id.to_string(), (Stored { rev: 1, data: data.to_vec() }, purge_at_ms));
        r.queue.push(Reverse((purge_at_ms, id.to_string())));
        Ok(true)
    }

    fn load(&self, id: &str) -> Result<Option<Stored>, StoreError> {
        let mut r = self.lock()?;
        let now = now_ms();
        r.purge_due(now);
        Ok(r.map.get(id).filter(|(_, purge)| *purge > now).map(|(s, _)| s.clone()))
    }

    fn replace(&self, id: &str, rev: u64, data: &[u8], purge_at_ms: i64) -> Result<bool, StoreError> {
        let mut r = self.lock()?;
        let now = now_ms();
        r.purge_due(now);
        let changed = match r.map.get_mut(id) {
            Some((s, purge)) if s.rev == rev && *purge > now => {
                *s = Stored { rev: rev + 1, data: data.to_vec() };
                let moved = *purge != purge_at_ms;
                *purge = purge_at_ms;
                Some(moved)
            }
            _ => None,
        };
        match changed {
            Some(true) => {
                r.queue.push(Reverse((purge_at_ms, id.to_string())));
                Ok(true)
            }
            Some(false) => Ok(true),
            None => Ok(false),
        }
    }

    fn delete(&self, id: &str) -> Result<(), StoreError> {
        self.lock()?.map.remove(id);
        Ok(())
    }
}

/// Redis store: a hash `{rev, data}` per session with `PEXPIREAT`, created and replaced by
/// small Lua scripts (atomic on the server), each command bounded by a timeout. The
/// connection is made on first use and remade after failures.
#[derive(Debug)]
pub struct RedisStore {
    redis: ekyc_runtime::redis::Redis,
}

const CREATE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'rev', '1', 'data', ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return 1";

const REPLACE: &str = r"
if redis.call('HGET', KEYS[1], 'rev') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'rev', ARGV[2], 'data', ARGV[3])
redis.call('PEXPIREAT', KEYS[1], ARGV[4])
return 1";

impl RedisStore {
    pub fn new(url: &str, timeout: Duration) -> Result<Self, StoreError> {
        Ok(Self { redis: ekyc_runtime::redis::Redis::new(url, timeout).map_err(StoreError::Unavailable)? })
    }

    fn key(id: &str) -> String {
        format!("ekyc:orchestrator:session:{id}")
    }

    async fn run<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, StoreError> {
        self.redis.run(cmd).await.map_err(StoreError::Unavailable)
    }

    async fn create(&self, id: &str, data: &[u8], purge_at_ms: i64) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(CREATE).arg(1).arg(Self::key(id)).arg(data).arg(purge_at_ms);
        Ok(self.run::<i64>(cmd).await? == 1)
    }

    async fn load(&self, id: &str) -> Result<Option<Stored>, StoreError> {
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(Self::key(id)).arg("rev").arg("data");
        let (rev, data): (Option<u64>, Option<Vec<u8>>) = self.run(cmd).await?;
        Ok(rev.zip(data).map(|(rev, data)| Stored { rev, data }))
    }

    async fn replace(&self, id: &str, rev: u64, data: &[u8], purge_at_ms: i64) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(REPLACE).arg(1).arg(Self::key(id)).arg(rev.to_string()).arg((rev + 1).to_string()).arg(data).arg(purge_at_ms);
        Ok(self.run::<i64>(cmd).await? == 1)
    }

    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(Self::key(id));
        self.run::<i64>(cmd).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn exercise(store: &Store) {
        let far = now_ms() + 60_000;
        assert!(store.create("s1", b"one", far).await.expect("create"));
        assert!(!store.create("s1", b"other", far).await.expect("create"), "ids are unique");
        let s = store.load("s1").await.expect("load").expect("present");
        assert_eq!((s.rev, s.data.as_slice()), (1, b"one".as_slice()));
        assert!(store.replace("s1", 1, b"two", far).await.expect("cas"));
        assert!(!store.replace("s1", 1, b"lost update", far).await.expect("cas"), "a stale revision loses");
        assert_eq!(store.load("s1").await.expect("load").expect("present").data, b"two");
        // A record whose purge time has passed is gone.
        assert!(store.create("s2", b"x", now_ms() + 50).await.expect("create"));
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(store.load("s2").await.expect("load"), None);
        store.delete("s1").await.expect("delete");
        assert_eq!(store.load("s1").await.expect("load"), None);
        assert!(!store.replace("s1", 2, b"x", far).await.expect("cas"), "nothing to replace");
    }

    #[tokio::test]
    async fn memory_store() {
        exercise(&Store::memory(100)).await;
    }

    #[tokio::test]
    async fn memory_store_is_bounded_and_purges_as_it_goes() {
        let store = Store::memory(3);
        let soon = now_ms() + 40;
        for id in ["a", "b", "c"] {
            assert!(store.create(id, b"x", soon).await.expect("create"));
        }
        assert!(matches!(store.create("d", b"x", now_ms() + 60_000).await, Err(StoreError::Full(3))), "a full store refuses");
        tokio::time::sleep(Duration::from_millis(60)).await;
        // Each call purges a couple of due records; the first creates make room.
        assert!(store.create("d", b"x", now_ms() + 60_000).await.expect("room after purge"));
        assert!(store.create("e", b"x", now_ms() + 60_000).await.expect("room after purge"));
        assert_eq!(store.load("a").await.expect("load"), None);
        let Store::Memory(m) = &store else { unreachable!("memory store") };
        let r = m.lock().expect("lock");
        assert!(r.map.len() <= 3 && r.queue.len() <= 6, "map {} queue {}", r.map.len(), r.queue.len());
    }

    #[tokio::test]
    async fn redis_store() {
        let mut redis = ekyc_testkit::redis_server::RedisServer::start();
        let store = Store::redis(&redis.url(), Duration::from_secs(2)).expect("client");
        exercise(&store).await;
        redis.stop();
        let err = store.load("s1").await.expect_err("redis is gone");
        assert!(matches!(err, StoreError::Unavailable(_)));
    }
}
