//! What root inside a sandbox may do: exactly Docker's default capabilities. weft's init
//! (`weft __init`) confines itself to them once the namespaces and mounts that need more are
//! set up, before it starts the command, so every process of a sandbox (`run`, `exec`,
//! `--network host` too) has them and nothing else: no CAP_SYS_ADMIN (no `setns`, `mount`,
//! `unshare`: a sandbox cannot enter the host's or another sandbox's namespaces), no
//! CAP_NET_ADMIN (it cannot change its own routes, addresses or links, as with Docker), no
//! CAP_SYS_PTRACE, CAP_SYS_MODULE, CAP_BPF, ... The other capabilities are also dropped from
//! the bounding set, so no setuid-root binary or file capability brings one back.

use std::io;

use caps::{CapSet, Capability, CapsHashSet};

/// Docker's default capability set (moby's `oci/caps/defaults.go`): what root in a sandbox
/// keeps. CAP_NET_RAW among them: raw and packet sockets (ping, DHCP clients, tcpdump) work,
/// and the port guard is what keeps them honest.
pub const SANDBOX: [Capability; 14] = [
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FSETID,
    Capability::CAP_FOWNER,
    Capability::CAP_MKNOD,
    Capability::CAP_NET_RAW,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
    Capability::CAP_SETFCAP,
    Capability::CAP_SETPCAP,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_SYS_CHROOT,
    Capability::CAP_KILL,
    Capability::CAP_AUDIT_WRITE,
];

fn err(what: &str) -> impl FnOnce(caps::errors::CapsError) -> io::Error + '_ {
    move |e| io::Error::other(format!("dropping capabilities: {what}: {e}"))
}

/// Confines the calling thread, and every process it starts from then on, to [`SANDBOX`]
/// (or to what of it this thread has): the others leave the bounding set, the effective,
/// permitted and inheritable sets become exactly that, the ambient set is cleared.
pub fn confine_to_sandbox() -> io::Result<()> {
    let permitted = caps::read(None, CapSet::Permitted).map_err(err("reading"))?;
    let keep: CapsHashSet = SANDBOX
        .iter()
        .copied()
        .filter(|c| {
            permitted.contains(c) && caps::has_cap(None, CapSet::Bounding, *c).unwrap_or(false)
        })
        .collect();
    // The bounding set first: dropping from it needs CAP_SETPCAP in the effective set.
    for cap in caps::all() {
        if !keep.contains(&cap) && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
            caps::drop(None, CapSet::Bounding, cap).map_err(err("bounding set"))?;
        }
    }
    drop_unknown_from_bounding()?;
    // Effective first: it must stay within the permitted set at every step.
    caps::set(None, CapSet::Effective, &keep).map_err(err("effective set"))?;
    caps::set(None, CapSet::Permitted, &keep).map_err(err("permitted set"))?;
    caps::set(None, CapSet::Inheritable, &keep).map_err(err("inheritable set"))?;
    caps::clear(None, CapSet::Ambient).map_err(err("ambient set"))?;
    Ok(())
}

/// Drops from the bounding set the capabilities a newer kernel has and the `caps` crate does
/// not know yet (it knows them up to CAP_CHECKPOINT_RESTORE, 40): none may slip through.
fn drop_unknown_from_bounding() -> io::Result<()> {
    let known = caps::all().iter().map(|c| c.index()).max().unwrap_or(0);
    let last: u8 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(63);
    for index in (known + 1)..=last.min(63) {
        // SAFETY: prctl with PR_CAPBSET_DROP takes a capability number and no pointers.
        let r = unsafe {
            libc::prctl(
                libc::PR_CAPBSET_DROP,
                libc::c_ulong::from(index),
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            )
        };
        // EINVAL: the kernel has no capability with this number.
        if r != 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
            return Err(io::Error::other(format!(
                "dropping capabilities: bounding set: capability {index}: {}",
                io::Error::last_os_error()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sandbox_set_is_dockers_default() {
        // What `docker run --rm alpine grep CapEff /proc/self/status` prints.
        let mask = SANDBOX.iter().fold(0, |m, c| m | c.bitmask());
        assert_eq!(mask, 0x0000_0000_a804_25fb);
    }
}
