//! damon's allocator on Linux: dlmalloc, behind a lock of damon's own.
//!
//! The static (musl) build is what ships, and musl's malloc returns each freed block group to
//! the kernel at once (about 90 mmap/munmap calls and their page faults a launch, docs/cost.md);
//! dlmalloc keeps what it freed, as glibc's malloc does. The dlmalloc crate's own global
//! allocator takes a pthread mutex around each call, and musl's lock and unlock were a tenth of
//! damon's instructions in a launch (callgrind: 75k of 658k, for some 1,600 calls): two atomic
//! operations and a call into libc each time. This lock is one compare-and-swap to take and a
//! plain store to release. damon's threads (the metrics server's) seldom allocate at the same
//! time as the main thread, so a waiter spins briefly and then yields.
//!
//! The other Linux builds (glibc: the tests') use it too, so that the tests run what ships.
//!
//! Forks: damon forks its guard while it has one thread, so the lock is free in the guard's copy;
//! the child shares damon's memory until its exec and allocates nothing.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, Ordering};

use dlmalloc::Dlmalloc;

pub struct LockedDlmalloc {
    locked: AtomicBool,
    heap: UnsafeCell<Dlmalloc>,
}

// SAFETY: the heap is reached only through `with_heap`, which holds the lock for as long as it
// lends it out, so no two threads use it at once.
unsafe impl Sync for LockedDlmalloc {}

impl LockedDlmalloc {
    /// Spins before yielding the CPU to the thread that holds the lock.
    const SPINS_BEFORE_YIELD: u32 = 64;

    pub const fn new() -> LockedDlmalloc {
        LockedDlmalloc { locked: AtomicBool::new(false), heap: UnsafeCell::new(Dlmalloc::new()) }
    }

    #[inline]
    fn with_heap<R>(&self, use_heap: impl FnOnce(&mut Dlmalloc) -> R) -> R {
        let mut spins = 0;
        while self.locked.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            while self.locked.load(Ordering::Relaxed) {
                if spins < Self::SPINS_BEFORE_YIELD {
                    spins += 1;
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
        }
        // SAFETY: the lock is held (taken above, released below), so this is the heap's only
        // reference until `use_heap` returns; `use_heap` cannot keep it past its return.
        let result = use_heap(unsafe { &mut *self.heap.get() });
        self.locked.store(false, Ordering::Release);
        result
    }
}

// SAFETY: each method passes GlobalAlloc's contract on to dlmalloc's method of the same name,
// which has the same contract (a block is freed or resized with the layout it was allocated
// with), one call at a time under the lock.
unsafe impl GlobalAlloc for LockedDlmalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl.
        self.with_heap(|heap| unsafe { heap.malloc(layout.size(), layout.align()) })
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: see the impl.
        self.with_heap(|heap| unsafe { heap.free(ptr, layout.size(), layout.align()) })
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl.
        self.with_heap(|heap| unsafe { heap.calloc(layout.size(), layout.align()) })
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: see the impl.
        self.with_heap(|heap| unsafe { heap.realloc(ptr, layout.size(), layout.align(), new_size) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static HEAP: LockedDlmalloc = LockedDlmalloc::new();

    /// Four threads allocate, fill, check, grow and free blocks of the one heap at once: a lock
    /// that let two of them in together would hand out a block twice or corrupt dlmalloc's lists,
    /// and a block would then hold another thread's bytes.
    #[test]
    fn threads_allocating_at_once_each_keep_their_own_blocks() {
        let threads: Vec<_> = (0..4u8)
            .map(|id| {
                std::thread::spawn(move || {
                    let mut blocks: Vec<(*mut u8, Layout)> = Vec::new();
                    for round in 0..20_000usize {
                        let layout = Layout::from_size_align(8 + (round * 7 + usize::from(id)) % 300, 8).unwrap();
                        // SAFETY: the layout's size is not zero; each block is written within its size,
                        // resized and freed with the layout it has, once.
                        unsafe {
                            let block = HEAP.alloc(layout);
                            assert!(!block.is_null());
                            block.write_bytes(id, layout.size());
                            blocks.push((block, layout));
                            if blocks.len() > 16 {
                                let (old, old_layout) = blocks.swap_remove(round % 16);
                                assert!((0..old_layout.size()).all(|i| *old.add(i) == id));
                                let grown = HEAP.realloc(old, old_layout, old_layout.size() * 2);
                                assert!(!grown.is_null());
                                assert!((0..old_layout.size()).all(|i| *grown.add(i) == id));
                                HEAP.dealloc(grown, Layout::from_size_align(old_layout.size() * 2, 8).unwrap());
                            }
                        }
                    }
                    for (block, layout) in blocks {
                        // SAFETY: each block is still allocated, with this layout.
                        unsafe { HEAP.dealloc(block, layout) };
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
    }
}
