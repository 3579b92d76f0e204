//! SQLite's allocations through Rust's global allocator, so that in a one-shot command they
//! land in its arena ([`super::arena`]) like weft's own, instead of in the C library's
//! malloc. SQLite asks for many small pieces when it reads the schema and prepares
//! statements; the sizes of pieces are kept in a header, as SQLite's `xSize` needs them.

use std::alloc::Layout;
use std::os::raw::{c_int, c_void};

use rusqlite::ffi;

/// Header before every piece: its size. 16 bytes keep the piece 16-aligned, as malloc's are.
const HEADER: usize = 16;
const ALIGN: usize = 16;

fn layout(size: usize) -> Option<Layout> {
    Layout::from_size_align(size.checked_add(HEADER)?, ALIGN).ok()
}

/// The piece's size, read from its header.
///
/// # Safety
/// `p` must come from [`x_malloc`] or [`x_realloc`] and not be freed yet.
unsafe fn size_of_piece(p: *mut c_void) -> usize {
    // SAFETY: per the contract, HEADER bytes before `p` hold the size written at allocation.
    unsafe { (p.cast::<u8>().sub(HEADER)).cast::<usize>().read() }
}

unsafe extern "C" fn x_malloc(n: c_int) -> *mut c_void {
    let Ok(size) = usize::try_from(n) else {
        return std::ptr::null_mut();
    };
    let Some(l) = layout(size) else {
        return std::ptr::null_mut();
    };
    // SAFETY: `l` is at least HEADER bytes, so non-zero.
    let p = unsafe { std::alloc::alloc(l) };
    if p.is_null() {
        return p.cast();
    }
    // SAFETY: the piece is HEADER + size bytes, 16-aligned: the header holds a usize.
    unsafe {
        p.cast::<usize>().write(size);
        p.add(HEADER).cast()
    }
}

unsafe extern "C" fn x_free(p: *mut c_void) {
    if p.is_null() {
        return;
    }
    // SAFETY: SQLite frees only what x_malloc/x_realloc gave it; the layout is rebuilt from
    // the size they recorded.
    unsafe {
        let size = size_of_piece(p);
        if let Some(l) = layout(size) {
            std::alloc::dealloc(p.cast::<u8>().sub(HEADER), l);
        }
    }
}

unsafe extern "C" fn x_realloc(p: *mut c_void, n: c_int) -> *mut c_void {
    // SQLite never passes a null pointer or a size of 0 here (sqlite3Realloc handles those).
    let Ok(new) = usize::try_from(n) else {
        return std::ptr::null_mut();
    };
    // SAFETY: `p` is a live piece of ours; its layout is rebuilt from its header, and the
    // new total size is checked to form a valid layout before it is used.
    unsafe {
        let old = size_of_piece(p);
        let (Some(l), Some(total)) = (layout(old), new.checked_add(HEADER)) else {
            return std::ptr::null_mut();
        };
        if layout(new).is_none() {
            return std::ptr::null_mut();
        }
        let q = std::alloc::realloc(p.cast::<u8>().sub(HEADER), l, total);
        if q.is_null() {
            return q.cast();
        }
        q.cast::<usize>().write(new);
        q.add(HEADER).cast()
    }
}

unsafe extern "C" fn x_size(p: *mut c_void) -> c_int {
    if p.is_null() {
        return 0;
    }
    // SAFETY: SQLite asks only about live pieces of ours.
    c_int::try_from(unsafe { size_of_piece(p) }).unwrap_or(c_int::MAX)
}

unsafe extern "C" fn x_roundup(n: c_int) -> c_int {
    // Pieces are as large as asked; SQLite wants a multiple of 8.
    n.checked_add(7).map_or(n, |m| m & !7)
}

unsafe extern "C" fn x_init(_: *mut c_void) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_shutdown(_: *mut c_void) {}

/// The method table, shareable: its only pointer (`pAppData`) is null.
struct Methods(ffi::sqlite3_mem_methods);

// SAFETY: the table is never written, and holds function pointers and a null pointer.
unsafe impl Sync for Methods {}

static METHODS: Methods = Methods(ffi::sqlite3_mem_methods {
    xMalloc: Some(x_malloc),
    xFree: Some(x_free),
    xRealloc: Some(x_realloc),
    xSize: Some(x_size),
    xRoundup: Some(x_roundup),
    xInit: Some(x_init),
    xShutdown: Some(x_shutdown),
    pAppData: std::ptr::null_mut(),
});

/// Routes SQLite's heap through Rust's global allocator, without SQLite's memory statistics
/// (kept up to date under a process-wide mutex on every allocation and free, and read by
/// nothing in weft). Must run before SQLite is first used in the process (later, SQLite
/// refuses and keeps its own: returns false).
pub fn install() -> bool {
    // SAFETY: SQLITE_CONFIG_MALLOC takes a pointer to a sqlite3_mem_methods that SQLite
    // copies; the functions it names are valid for the life of the process.
    let rc = unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_MALLOC, &METHODS.0) };
    let off: c_int = 0;
    // SAFETY: SQLITE_CONFIG_MEMSTATUS takes one int.
    let stats = unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, off) };
    rc == ffi::SQLITE_OK && stats == ffi::SQLITE_OK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_keep_their_size_and_bytes() {
        // SAFETY: the pieces come from these functions and are freed once.
        unsafe {
            let p = x_malloc(10);
            assert!(!p.is_null());
            assert_eq!(p as usize % 16, 0);
            assert_eq!(x_size(p), 10);
            std::ptr::copy_nonoverlapping(b"0123456789".as_ptr(), p.cast::<u8>(), 10);
            let q = x_realloc(p, 1000);
            assert_eq!(x_size(q), 1000);
            assert_eq!(
                std::slice::from_raw_parts(q.cast::<u8>(), 10),
                b"0123456789"
            );
            x_free(q);
            assert!(x_malloc(-1).is_null());
            assert_eq!(x_roundup(9), 16);
        }
    }
}
