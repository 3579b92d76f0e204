//! The agent's heap: a long-lived process whose gc pass reads every record and dumps the
//! kernel's links, addresses and rules once a minute. glibc keeps what such a pass freed (and
//! one arena per thread that ever allocated), so the agent's resident memory grew by tens of
//! MiB with a thousand sandboxes although it held no more data.

/// At most this many malloc arenas: the agent's threads (event loop, worker, DNS server) are
/// few and not allocation-bound, so sharing arenas costs nothing measurable.
#[cfg(target_env = "gnu")]
const ARENAS: libc::c_int = 2;

/// Limits glibc's malloc arenas (call once, before the agent starts its threads).
#[cfg(target_env = "gnu")]
pub fn limit_arenas() {
    // SAFETY: mallopt takes two integers and changes only malloc's own settings.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
    }
}

/// Gives the heap's free pages back to the kernel (after a pass that allocated a lot).
#[cfg(target_env = "gnu")]
pub fn trim() {
    // SAFETY: malloc_trim takes an integer and only returns free heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// musl's malloc has no arenas to limit.
#[cfg(not(target_env = "gnu"))]
pub fn limit_arenas() {}

/// musl's malloc returns freed spans to the kernel itself (it has no `malloc_trim`).
#[cfg(not(target_env = "gnu"))]
pub fn trim() {}
