//! `forward` allocates nothing after its first call: scratch is reused, not reallocated.
//!
//! Allocations are counted per thread: the test harness's other threads allocate whenever they
//! like, and a process-wide count would see them (it failed 18 runs in 200 that way).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    /// Allocations made by this thread. A const-initialised `Cell` has no destructor and
    /// allocates nothing itself, so the allocator can touch it at any time.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

/// The allocations this thread has made so far.
fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

// SAFETY: every call forwards to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract for `dealloc` is passed on as is.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

kcp::kcp_layer! { struct Ucf11 { in_shape: [8, 20, 20, 18], out_shape: [4, 4, 4, 16], rank: 4, bias: true } }
kcp::kcp_layer! { struct WithPreProduct { in_shape: [4, 4], out_shape: [4, 4], rank: 16 } }

#[test]
fn forward_allocates_only_on_its_first_call() {
    let ucf11 = Ucf11::random(1);
    let small = WithPreProduct::random(2);
    let x = vec![0.25f32; 3 * Ucf11::IN];
    let mut y = vec![0.0f32; 3 * Ucf11::OUT];
    // 21 rows: one interleaved block of 16, then 5 rows one at a time.
    let xs = vec![0.5f32; 21 * WithPreProduct::IN];
    let mut ys = vec![0.0f32; 21 * WithPreProduct::OUT];
    ucf11.forward(&x, &mut y).unwrap();
    small.forward(&xs, &mut ys).unwrap();
    let before = allocations();
    for _ in 0..3 {
        ucf11.forward(&x, &mut y).unwrap();
        small.forward(&xs, &mut ys).unwrap();
    }
    assert_eq!(allocations() - before, 0);
    // The counter does see allocations: this thread's, and another's in that thread's count.
    let probe: Vec<u8> = Vec::with_capacity(std::hint::black_box(8));
    assert_eq!(allocations() - before, 1);
    drop(probe);
    let other = std::thread::spawn(|| {
        let start = allocations();
        drop(Vec::<u8>::with_capacity(std::hint::black_box(8)));
        allocations() - start
    });
    assert_eq!(other.join().unwrap(), 1);
    assert!(y.iter().all(|v| v.is_finite()) && ys.iter().all(|v| v.is_finite()));
}

kcp::kcp_layer! { struct Trained { in_shape: [8, 20, 6], out_shape: [4, 16, 2], rank: 4, bias: true, backward: dx } }

/// The training path on this thread, `forward_train` then `backward` with dx, allocates
/// nothing after its first call with a batch size: the trace holds every buffer.
#[test]
fn training_allocates_only_on_its_first_call() {
    let layer = Trained::random(3);
    let x = vec![0.25f32; 5 * Trained::IN];
    let dy = vec![0.5f32; 5 * Trained::OUT];
    let (mut y, mut dx) = (vec![0.0f32; dy.len()], vec![0.0f32; x.len()]);
    let mut trace = kcp::Trace::new();
    let mut grads = Trained::zero_grads();
    const { assert!(Trained::KEPT_PER_SAMPLE > 0, "the layer keeps intermediates") };
    layer.forward_train(&x, &mut y, &mut trace).unwrap();
    layer.backward(&x, &dy, &mut trace, Some(&mut dx), &mut grads).unwrap();
    let before = allocations();
    for _ in 0..3 {
        layer.forward_train(&x, &mut y, &mut trace).unwrap();
        layer.backward(&x, &dy, &mut trace, Some(&mut dx), &mut grads).unwrap();
    }
    assert_eq!(allocations() - before, 0);
    assert!(grads.cores.iter().flatten().all(|v| v.is_finite()));
}
