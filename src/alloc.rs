//! The global allocator: mimalloc (v3), asked for plain blocks whenever a
//! plain block is aligned enough.
//!
//! The `mimalloc` crate's allocator passes every allocation to
//! `mi_malloc_aligned`, whatever its alignment. That takes mimalloc's fast
//! path while the size class's page has a free block at hand; when it has
//! none, it does not collect the page's freed blocks as `mi_malloc` would,
//! but allocates `size + align - 1` bytes from the next size class up (for
//! a block size that is not a power of two), and that class's page is the
//! one it refills. The first class's freed blocks are then never collected
//! for these requests, so, once its free list ran dry, every allocation of
//! that size took the slow path: 48-byte blocks, the most common size per
//! request, came from the 56-byte class, and the slow path was ~5 calls
//! per request (callgrind; docs/performance.md, eleventh session).
//!
//! Every mimalloc block is aligned to 8 bytes (block sizes are multiples
//! of the word), so a layout aligned to at most 8 gets `mi_malloc`; larger
//! alignments keep `mi_malloc_aligned`.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// Alignment every mimalloc block has.
const PLAIN: usize = 8;

/// mimalloc, as described in the module's comment.
pub struct Mimalloc;

#[allow(unsafe_code)]
// SAFETY: each method hands its arguments to the mimalloc function for the
// same job; a block is freed by `mi_free` whichever function made it, and
// `mi_malloc`'s blocks are aligned to `PLAIN` (module comment).
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= PLAIN {
            unsafe { mi::mi_malloc(layout.size()) }.cast()
        } else {
            unsafe { mi::mi_malloc_aligned(layout.size(), layout.align()) }.cast()
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= PLAIN {
            unsafe { mi::mi_zalloc(layout.size()) }.cast()
        } else {
            unsafe { mi::mi_zalloc_aligned(layout.size(), layout.align()) }.cast()
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= PLAIN {
            unsafe { mi::mi_realloc(ptr.cast::<c_void>(), new_size) }.cast()
        } else {
            unsafe { mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()) }.cast()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks of every size and alignment come back aligned, hold their
    /// bytes through a reallocation, and zeroed ones are zero.
    #[test]
    #[allow(unsafe_code)]
    fn blocks_are_aligned_and_keep_their_bytes() {
        let a = Mimalloc;
        for align in [1, 2, 4, 8, 16, 32, 64, 128, 4096] {
            for size in [1, 7, 8, 24, 40, 48, 56, 100, 1072, 5000, 70_000] {
                let size = size.max(align);
                let l = Layout::from_size_align(size, align).unwrap();
                // SAFETY: a non-zero size; each block is freed once, with its layout.
                unsafe {
                    let p = a.alloc(l);
                    assert!(!p.is_null() && (p as usize).is_multiple_of(align), "size {size} align {align}");
                    p.write_bytes(0xab, size);
                    let q = a.realloc(p, l, size * 2);
                    assert!(!q.is_null() && (q as usize).is_multiple_of(align), "realloc: size {size} align {align}");
                    assert!(std::slice::from_raw_parts(q, size).iter().all(|&b| b == 0xab));
                    a.dealloc(q, Layout::from_size_align(size * 2, align).unwrap());
                    let z = a.alloc_zeroed(l);
                    assert!(!z.is_null() && (z as usize).is_multiple_of(align));
                    assert!(std::slice::from_raw_parts(z, size).iter().all(|&b| b == 0));
                    a.dealloc(z, l);
                }
            }
        }
    }
}
