//! Fork-join for calls of tens of microseconds: some work on rayon's pool, some on the calling
//! thread, and a return once all of it is done.
//!
//! `rayon::in_place_scope` alone makes a caller from outside the pool that finishes first sleep
//! on a lock until the pool's thread is done, and waking it costs more than the work it waits
//! for on small calls (~6 us on the benchmark VM, out of a 25 us half of the small layer at
//! batch 256). Here a caller from outside the pool spins on a counter that each pool thread
//! bumps as its last act, for at most [`SPIN_FOR`], about what sleeping and waking costs; a pool
//! thread that is later than that (it started late, or shares a core with the caller) is waited
//! for by sleeping.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long the caller spins for the pool's threads before sleeping until they finish: a
/// spinning caller that shares a core with them (a shared VM's host can do that for a while)
/// slows them down, so it spins no longer than a sleep and a wake-up would cost.
const SPIN_FOR: Duration = Duration::from_micros(10);

/// Runs `theirs` on `helpers` tasks of rayon's pool and `mine` on this thread; returns when all
/// have returned. A panic in any of them reaches the caller (rayon's scope rethrows it).
pub(crate) fn join(helpers: usize, theirs: impl Fn() + Sync, mine: impl FnOnce()) {
    let (done, theirs) = (&AtomicUsize::new(0), &theirs);
    rayon::in_place_scope(|scope| {
        for _ in 0..helpers {
            scope.spawn(move |_| {
                theirs();
                done.fetch_add(1, Ordering::Release);
            });
        }
        mine();
        // A caller that is itself a thread of the pool never sleeps in the scope: it runs or
        // steals the helpers' tasks instead (which spinning would only delay, when the pool's
        // other threads are busy with their own calls).
        if rayon::current_thread_index().is_none() {
            let start = Instant::now();
            while done.load(Ordering::Acquire) < helpers && start.elapsed() < SPIN_FOR {
                std::hint::spin_loop();
            }
        }
    });
}

/// [`join`] with one helper running `theirs` once.
pub(crate) fn pair(theirs: impl FnOnce() + Send, mine: impl FnOnce()) {
    let theirs = Mutex::new(Some(theirs));
    let run = || {
        if let Some(f) = theirs.lock().unwrap_or_else(PoisonError::into_inner).take() {
            f();
        }
    };
    join(1, run, mine);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread::ThreadId;

    #[test]
    fn every_helper_and_the_caller_finish_before_join_returns() {
        for helpers in [0, 1, 3] {
            let ran = AtomicUsize::new(0);
            let mut caller = false;
            join(
                helpers,
                || {
                    // Longer than the spinning, so the sleeping wait is exercised too.
                    std::thread::sleep(Duration::from_millis(2));
                    ran.fetch_add(1, Ordering::Relaxed);
                },
                || caller = true,
            );
            assert_eq!(ran.load(Ordering::Relaxed), helpers);
            assert!(caller);
        }
    }

    #[test]
    fn mine_runs_on_the_calling_thread() {
        let here = std::thread::current().id();
        let seen: Mutex<Option<ThreadId>> = Mutex::new(None);
        join(1, || {}, || *seen.lock().unwrap() = Some(std::thread::current().id()));
        assert_eq!(*seen.lock().unwrap(), Some(here));
    }

    #[test]
    fn a_caller_inside_a_one_thread_pool_runs_the_helpers_itself() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let ran = AtomicUsize::new(0);
        pool.install(|| join(2, || _ = ran.fetch_add(1, Ordering::Relaxed), || {}));
        assert_eq!(ran.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn pair_runs_both_once() {
        let (mut a, mut b) = (0, 0);
        pair(|| a += 1, || b += 1);
        assert_eq!((a, b), (1, 1));
    }

    #[test]
    fn a_panicking_helper_reaches_the_caller() {
        let result = std::panic::catch_unwind(|| join(1, || panic!("helper failed"), || {}));
        let message = result.expect_err("the panic propagates");
        assert_eq!(message.downcast_ref::<&str>(), Some(&"helper failed"));
    }
}
