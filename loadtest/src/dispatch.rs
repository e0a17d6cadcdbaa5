//! The open-loop dispatcher shared by every open-loop mode: item `k` is due at
//! `start + k / rate`; at that moment it is handed to its own Tokio task, whatever earlier
//! items are doing, and the task learns its due time so latency can run from it.
//!
//! The schedule is kept by a dedicated OS thread sleeping with `std::thread::sleep`
//! (sub-millisecond on Linux) rather than by Tokio's timer, whose 1 ms ticks would make
//! almost every send start a little over 1 ms late and the slip count meaningless.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::Semaphore;

use crate::schedule::{self, Window};

/// What a task is told about its item.
#[derive(Debug, Clone, Copy)]
pub struct Due {
    /// The item's index in the schedule.
    pub k: u64,
    /// Its scheduled time, from the start of the run.
    pub offset: Duration,
    /// How late the dispatcher handed it over (a slip when above 1 ms).
    pub late_by: Duration,
    /// The instant the run started: `start.elapsed()` is the time since the start.
    pub start: Instant,
}

/// Runs the schedule at `rate` items/s until `window.end`, at most `max_in_flight` tasks at
/// once (at the cap the dispatcher waits: the wait is charged to the item's latency, which
/// is measured from its due time, and shows as a slip), and waits until every task has
/// finished. Returns how often the cap was reached for items due inside the window.
pub async fn open_loop<F, Fut>(rate: f64, window: Window, max_in_flight: usize, task: F) -> anyhow::Result<u64>
where
    F: Fn(Due) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let max_in_flight = max_in_flight.clamp(1, u32::MAX as usize);
    let permits = Arc::new(Semaphore::new(max_in_flight));
    let runtime = tokio::runtime::Handle::current();
    let dispatcher = {
        let permits = Arc::clone(&permits);
        tokio::task::spawn_blocking(move || -> anyhow::Result<u64> {
            let mut cap_waits = 0u64;
            let start = Instant::now();
            let mut k = 0u64;
            loop {
                let offset = schedule::offset(k, rate);
                if offset >= window.end {
                    break;
                }
                let due = start + offset;
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                let permit = match Arc::clone(&permits).try_acquire_owned() {
                    Ok(p) => p,
                    Err(_) => {
                        if window.contains_send(offset) {
                            cap_waits += 1;
                        }
                        runtime.block_on(Arc::clone(&permits).acquire_owned()).context("the in-flight semaphore is never closed")?
                    }
                };
                let late_by = Instant::now().saturating_duration_since(due);
                let fut = task(Due { k, offset, late_by, start });
                runtime.spawn(async move {
                    fut.await;
                    drop(permit);
                });
                k += 1;
            }
            Ok(cap_waits)
        })
    };
    let cap_waits = dispatcher.await.context("the open-loop dispatcher panicked")??;
    // Every task holds a permit until it has finished (and recorded its outcome).
    let _all = permits.acquire_many(max_in_flight as u32).await.context("the in-flight semaphore is never closed")?;
    Ok(cap_waits)
}
