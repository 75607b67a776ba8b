//! `forward` allocates nothing after its first call: scratch is reused, not reallocated.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call forwards to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
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
    // 13 rows: one interleaved block of 8, then 5 rows one at a time.
    let xs = vec![0.5f32; 13 * WithPreProduct::IN];
    let mut ys = vec![0.0f32; 13 * WithPreProduct::OUT];
    ucf11.forward(&x, &mut y).unwrap();
    small.forward(&xs, &mut ys).unwrap();
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    for _ in 0..3 {
        ucf11.forward(&x, &mut y).unwrap();
        small.forward(&xs, &mut ys).unwrap();
    }
    assert_eq!(ALLOCATIONS.load(Ordering::SeqCst) - before, 0);
    // The counter does see allocations.
    let probe: Vec<u8> = Vec::with_capacity(std::hint::black_box(8));
    assert_eq!(ALLOCATIONS.load(Ordering::SeqCst) - before, 1);
    drop(probe);
    assert!(y.iter().all(|v| v.is_finite()) && ys.iter().all(|v| v.is_finite()));
}
