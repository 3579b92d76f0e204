//! The heap of a one-shot command: a bump arena. `weft create` and `weft rm` are processes of
//! a few milliseconds that allocate a few hundred KiB in thousands of small pieces and give
//! everything back at exit; a general-purpose malloc spends its time on bookkeeping that
//! exit makes moot (musl's mallocng cost an attach as much as musl's start-up saved, see
//! bench/README.md). Here an allocation is an add on one offset, a free gives memory back
//! only when it is the latest allocation (a temporary, a growing `Vec`), and nothing else is
//! ever reused.
//!
//! The arena is one fixed region in `.bss` (no system call to set up; the kernel maps a page
//! at its first touch). Past its end, and for good once [`stop`] was called (a process that
//! lives long: the agent, a sandbox's monitor), allocations go to the system allocator;
//! frees of arena memory stay no-ops then, so a long-lived process only ever keeps what its
//! start-up took.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Size of the arena. Far above what a one-shot command takes (see [`used`]); a command that
/// takes more continues on the system allocator.
const CAP: usize = 64 << 20;

/// The arena's memory. Page-aligned: the first allocation starts on a page.
#[repr(C, align(4096))]
struct Region(UnsafeCell<[u8; CAP]>);

// SAFETY: the region's bytes are handed out in disjoint pieces, each by exactly one
// successful compare-exchange on `TOP`; the region itself is never read or written here.
unsafe impl Sync for Region {}

static REGION: Region = Region(UnsafeCell::new([0; CAP]));

/// Offset of the first free byte of the arena.
static TOP: AtomicUsize = AtomicUsize::new(0);

/// The highest offset ever handed out: the arena above it was never written, so it is still
/// zero (`.bss`), and a zeroed allocation there needs no clearing (nor touches its pages).
static HIGH: AtomicUsize = AtomicUsize::new(0);

/// Whether new allocations still come from the arena.
static ON: AtomicBool = AtomicBool::new(true);

/// The global allocator of the `weft` binary: the arena, then the system's.
pub struct Arena;

fn base() -> usize {
    REGION.0.get() as usize
}

/// The arena's byte at `offset` (below `CAP`).
fn at(offset: usize) -> *mut u8 {
    REGION.0.get().cast::<u8>().wrapping_add(offset)
}

/// The arena offset of `ptr`, if it points into the arena.
fn offset_of(ptr: *mut u8) -> Option<usize> {
    (ptr as usize).checked_sub(base()).filter(|&o| o < CAP)
}

/// Marks the arena up to `end` as handed out; returns the mark before, below which the
/// piece may hold old bytes. Called after the piece was taken from `TOP` (whose acquire
/// orders it after the free of any earlier holder of these bytes, and so after that
/// holder's own mark).
fn mark(end: usize) -> usize {
    HIGH.fetch_max(end, Ordering::AcqRel)
}

/// Takes `layout` from the arena, or `None` when stopped or full: the piece and how many of
/// its first bytes may be dirty.
fn bump(layout: Layout) -> Option<(*mut u8, usize)> {
    if !ON.load(Ordering::Relaxed) {
        return None;
    }
    let mut top = TOP.load(Ordering::Relaxed);
    loop {
        // `align` is a power of two; the region's base is page-aligned, so aligning the
        // offset aligns the address for every alignment up to a page.
        let mask = layout.align().checked_sub(1)?;
        let start = top.checked_add(mask)? & !mask;
        let end = start.checked_add(layout.size())?;
        if end > CAP || layout.align() > 4096 {
            return None;
        }
        // AcqRel: a piece freed by one thread (its writes before the release) and taken
        // again by another (its writes after the acquire) are ordered.
        match TOP.compare_exchange_weak(top, end, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => {
                let dirty = mark(end).min(end).saturating_sub(start);
                return Some((at(start), dirty));
            }
            Err(now) => top = now,
        }
    }
}

// SAFETY: every pointer handed out is either a disjoint, suitably aligned piece of the
// arena of at least `layout.size()` bytes, or comes from `System` with the same layout;
// arena pieces are told apart by address and never passed to `System`.
unsafe impl GlobalAlloc for Arena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match bump(layout) {
            Some((p, _)) => p,
            // SAFETY: the caller's layout has a non-zero size, as `GlobalAlloc` requires.
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match bump(layout) {
            Some((p, dirty)) => {
                // SAFETY: the piece is ours and at least `dirty` bytes long.
                unsafe { std::ptr::write_bytes(p, 0, dirty) };
                p
            }
            // SAFETY: the caller's layout has a non-zero size, as `GlobalAlloc` requires.
            None => unsafe { System.alloc_zeroed(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match offset_of(ptr) {
            Some(start) => {
                // Only the latest piece goes back (the top moves down to its start);
                // any other stays taken until exit.
                if let Some(end) = start.checked_add(layout.size()) {
                    let _ = TOP.compare_exchange(end, start, Ordering::AcqRel, Ordering::Relaxed);
                }
            }
            // SAFETY: not an arena piece, so `System` allocated it with this layout.
            None => unsafe { System.dealloc(ptr, layout) },
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Some(start) = offset_of(ptr) else {
            // SAFETY: not an arena piece: `System` allocated it with this layout.
            return unsafe { System.realloc(ptr, layout, new_size) };
        };
        // The latest piece grows or shrinks where it is (a `Vec` or `String` being filled).
        if let (Some(end), Some(new_end)) = (
            start.checked_add(layout.size()),
            start.checked_add(new_size),
        ) {
            if new_end <= CAP
                && ON.load(Ordering::Relaxed)
                && TOP
                    .compare_exchange(end, new_end, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            {
                mark(new_end);
                return ptr;
            }
        }
        if new_size <= layout.size() {
            return ptr;
        }
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        // SAFETY: `new_layout` has a non-zero size (it is larger than the old one).
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both pieces are valid for the old size (the new one is larger) and
            // distinct (the old one is still taken).
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size());
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

/// Sends every later allocation to the system allocator: for a process that will live long
/// (the agent, a monitor), whose frees must give memory back.
pub fn stop() {
    ON.store(false, Ordering::Relaxed);
}

/// Bytes of the arena in use (the high part of what a one-shot command took), for
/// `WEFT_TIMINGS`.
pub fn used() -> usize {
    TOP.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The arena is process-wide and the test harness runs tests in parallel threads, so
    // these tests take pieces through `Arena` directly and only check their own.

    #[test]
    fn pieces_are_aligned_and_disjoint() {
        let a = Arena;
        let l1 = Layout::from_size_align(3, 1).unwrap();
        let l2 = Layout::from_size_align(64, 64).unwrap();
        // SAFETY: non-zero layouts; the pieces are freed with the same layouts.
        unsafe {
            let p = a.alloc(l1);
            let q = a.alloc(l2);
            assert!(!p.is_null() && !q.is_null());
            assert_eq!(q as usize % 64, 0);
            assert!(q as usize >= p as usize + 3 || q as usize + 64 <= p as usize);
            a.dealloc(q, l2);
            a.dealloc(p, l1);
        }
    }

    #[test]
    fn realloc_keeps_the_bytes() {
        let a = Arena;
        let l = Layout::from_size_align(8, 8).unwrap();
        // SAFETY: non-zero layouts, pointers from this allocator, sizes as allocated.
        unsafe {
            let p = a.alloc(l);
            std::ptr::copy_nonoverlapping(b"abcdefgh".as_ptr(), p, 8);
            let other = a.alloc(l); // p is no longer the latest piece: it must move
            let q = a.realloc(p, l, 4096);
            assert_eq!(std::slice::from_raw_parts(q, 8), b"abcdefgh");
            let r = a.realloc(q, Layout::from_size_align(4096, 8).unwrap(), 2);
            assert_eq!(std::slice::from_raw_parts(r, 2), b"ab");
            a.dealloc(r, Layout::from_size_align(2, 8).unwrap());
            a.dealloc(other, l);
        }
    }

    #[test]
    fn zeroed_pieces_are_zero_after_reuse() {
        let a = Arena;
        let l = Layout::from_size_align(256, 8).unwrap();
        // SAFETY: non-zero layouts, pieces freed with their layouts.
        unsafe {
            for _ in 0..3 {
                let p = a.alloc(l);
                std::ptr::write_bytes(p, 0xa5, 256);
                a.dealloc(p, l); // the latest piece: its bytes are taken again next
                let z = a.alloc_zeroed(l);
                assert!(std::slice::from_raw_parts(z, 256).iter().all(|&b| b == 0));
                a.dealloc(z, l);
            }
        }
    }

    #[test]
    fn concurrent_pieces_never_overlap() {
        // Threads take, grow and give back pieces at once (frees of the latest piece move the
        // top down under the others' feet); every piece kept is filled with its owner's byte
        // and must still hold it at the end.
        let threads: Vec<_> = (1u8..=4)
            .map(|t| {
                std::thread::spawn(move || {
                    let a = Arena;
                    let mut kept = Vec::new();
                    for i in 0..5000usize {
                        let size = 1 + (i * 7 + usize::from(t) * 13) % 300;
                        let l = Layout::from_size_align(size, 1 << (i % 5)).unwrap();
                        // SAFETY: non-zero layouts; each piece is written only within its
                        // size and freed (or grown) with the layout it has.
                        unsafe {
                            let p = a.alloc(l);
                            assert!(!p.is_null());
                            std::ptr::write_bytes(p, t, size);
                            match i % 3 {
                                0 => a.dealloc(p, l),
                                1 => {
                                    let q = a.realloc(p, l, size * 2);
                                    std::ptr::write_bytes(q, t, size * 2);
                                    let grown =
                                        Layout::from_size_align(size * 2, l.align()).unwrap();
                                    kept.push((q, grown));
                                }
                                _ => kept.push((p, l)),
                            }
                        }
                    }
                    for (p, l) in &kept {
                        // SAFETY: the piece is still ours, `l.size()` bytes long.
                        let bytes = unsafe { std::slice::from_raw_parts(*p, l.size()) };
                        assert!(
                            bytes.iter().all(|&b| b == t),
                            "a piece of thread {t} was overwritten"
                        );
                    }
                    kept.len()
                })
            })
            .collect();
        for t in threads {
            assert!(t.join().unwrap() > 0);
        }
    }

    #[test]
    fn too_large_goes_to_the_system() {
        let a = Arena;
        let l = Layout::from_size_align(CAP + 1, 8).unwrap();
        // SAFETY: non-zero layout, freed with the same layout.
        unsafe {
            let p = a.alloc(l);
            assert!(!p.is_null());
            assert!(offset_of(p).is_none());
            a.dealloc(p, l);
        }
    }
}
