//! A process-wide budget of decoded image bytes, shared by every decoding thread of every
//! service in the process. A decode first reads the image's header, reserves the most memory
//! its decoding will hold at once, and only then decodes; the reservation is given back
//! when the [`Reservation`] (held by [`crate::decode::Decoded`] for as long as its pixels
//! live) is dropped. A reservation that does not fit waits up to the budget's wait for
//! others to finish, then fails [`DecodeError::Overloaded`]; one larger than the whole
//! budget fails [`DecodeError::TooLarge`] at once. So decode memory is bounded by the
//! budget, not by the number of workers times the largest image.

use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::error::DecodeError;

/// Bytes of decoded pixels that may be held at once, and how long a reservation waits.
#[derive(Debug)]
pub struct DecodeBudget {
    capacity: u64,
    wait: Duration,
    state: Mutex<State>,
    freed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    used: u64,
    peak: u64,
    refused: u64,
    waited: u64,
}

/// What a budget has seen, for tests and operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetStats {
    pub capacity: u64,
    /// Bytes reserved now, and the most ever reserved at once.
    pub in_use: u64,
    pub peak: u64,
    /// Reservations refused after waiting (OVERLOADED), and reservations that had to wait.
    pub refused: u64,
    pub waited: u64,
}

static PROCESS: OnceLock<Arc<DecodeBudget>> = OnceLock::new();

impl DecodeBudget {
    pub fn new(capacity: u64, wait: Duration) -> Arc<Self> {
        Arc::new(Self { capacity, wait, state: Mutex::new(State::default()), freed: Condvar::new() })
    }

    /// The budget of this process, made with these values on the first call; later calls
    /// get the same budget whatever they pass (all services in one process share it).
    pub fn process(capacity: u64, wait: Duration) -> Arc<Self> {
        let b = PROCESS.get_or_init(|| Self::new(capacity, wait));
        if b.capacity != capacity || b.wait != wait {
            tracing::warn!(
                configured = capacity,
                in_force = b.capacity,
                "the process-wide decode budget was set already; keeping the first one"
            );
        }
        Arc::clone(b)
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    pub fn stats(&self) -> BudgetStats {
        let s = self.lock();
        BudgetStats { capacity: self.capacity, in_use: s.used, peak: s.peak, refused: s.refused, waited: s.waited }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a few counters, consistent after every statement: a panic elsewhere
        // while holding the lock leaves nothing half-done.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reserves `bytes`, waiting up to the budget's wait for room. Blocking: call it on a
    /// worker thread, never on the async runtime.
    pub fn reserve(self: &Arc<Self>, bytes: u64) -> Result<Reservation, DecodeError> {
        if bytes > self.capacity {
            return Err(DecodeError::TooLarge(format!(
                "decoding it needs {} MB, more than the decode budget of {} MB",
                bytes.div_ceil(1 << 20),
                self.capacity >> 20
            )));
        }
        let deadline = Instant::now() + self.wait;
        let mut s = self.lock();
        let mut waited = false;
        while s.used + bytes > self.capacity {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                s.refused += 1;
                metrics::counter!("ekyc_decode_budget_refused_total").increment(1);
                return Err(DecodeError::Overloaded(format!(
                    "the decode budget ({} MB) stayed in use for {} ms; retry after a short backoff",
                    self.capacity >> 20,
                    self.wait.as_millis()
                )));
            }
            if !waited {
                waited = true;
                s.waited += 1;
            }
            s = self.freed.wait_timeout(s, left).unwrap_or_else(std::sync::PoisonError::into_inner).0;
        }
        s.used += bytes;
        s.peak = s.peak.max(s.used);
        metrics::gauge!("ekyc_decode_budget_bytes_in_use").set(s.used as f64);
        Ok(Reservation { budget: Arc::clone(self), bytes })
    }

    fn release(&self, bytes: u64) {
        let mut s = self.lock();
        s.used = s.used.saturating_sub(bytes);
        metrics::gauge!("ekyc_decode_budget_bytes_in_use").set(s.used as f64);
        drop(s);
        self.freed.notify_all();
    }
}

/// Bytes held from a [`DecodeBudget`]; given back on drop.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<DecodeBudget>,
    bytes: u64,
}

impl Reservation {
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Gives back all but `bytes` (once decoding is over, only the result stays held).
    pub fn shrink_to(&mut self, bytes: u64) {
        if bytes < self.bytes {
            self.budget.release(self.bytes - bytes);
            self.bytes = bytes;
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_wait_for_room_then_refuse_and_give_back_on_drop() {
        let b = DecodeBudget::new(100, Duration::from_millis(50));
        assert!(matches!(b.reserve(101), Err(DecodeError::TooLarge(_))), "larger than the whole budget: at once");
        let mut first = b.reserve(60).expect("fits");
        assert!(matches!(b.reserve(60), Err(DecodeError::Overloaded(_))), "no room within the wait");
        first.shrink_to(30);
        let second = b.reserve(60).expect("fits after the shrink");
        assert_eq!(b.stats().in_use, 90);
        // A waiter gets room as soon as a holder lets go.
        let b2 = Arc::clone(&b);
        let waiter = std::thread::spawn(move || b2.reserve(50).map(|r| r.bytes()));
        std::thread::sleep(Duration::from_millis(10));
        drop(second);
        assert_eq!(waiter.join().expect("thread").expect("room after the drop"), 50);
        drop(first);
        let s = b.stats();
        assert_eq!((s.in_use, s.peak, s.refused), (0, 90, 1));
        assert!(s.waited >= 1);
    }
}
