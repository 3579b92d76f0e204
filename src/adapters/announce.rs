//! Announcing a sandbox's addresses on its network: a gratuitous ARP for IPv4 and an
//! unsolicited neighbour advertisement for IPv6, carrying the sandbox's MAC, so that other
//! sandboxes replace a stale MAC they may still hold for a reused address.
//!
//! Sent from the bridge in the host namespace: the frame floods to every port that forwards,
//! while the sandbox's own new port may not forward yet (the kernel enables it
//! asynchronously after the veth's carrier comes on).

use std::ffi::CString;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// `sendto`'s result (`ssize_t`), or the errno it set.
fn check_sent(r: isize) -> io::Result<usize> {
    usize::try_from(r).map_err(|_| io::Error::last_os_error())
}

fn ifindex(ifname: &str) -> io::Result<u32> {
    let c = CString::new(ifname).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: valid C string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(idx)
    }
}

/// Sends the announcements for `addrs` from a detached grandchild process and returns at
/// once (false if it could not fork; the caller then sends them itself).
///
/// Why a process: closing a packet socket waits for an RCU grace period
/// (`synchronize_net()` in `packet_release`), several milliseconds here, which would
/// otherwise be paid by every attach. The grandchild is reparented to init, so no zombie is
/// left to the caller, and its standard streams go to /dev/null, so it holds no caller's
/// pipe open.
pub fn send_detached(ifname: &str, mac: [u8; 6], addrs: &[IpAddr]) -> bool {
    let Ok(name) = CString::new(ifname) else {
        return false;
    };
    // SAFETY: weft is single-threaded when it attaches (namespace threads are joined, the
    // netlink runtime is a current-thread one), so the children may run ordinary code; they
    // end with _exit and never return into the caller's logic.
    unsafe {
        match libc::fork() {
            -1 => false,
            0 => {
                if libc::fork() == 0 {
                    let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
                    if null >= 0 {
                        for fd in 0..3 {
                            libc::dup2(null, fd);
                        }
                    }
                    let ifname = name.to_string_lossy();
                    let mut ok = true;
                    for a in addrs {
                        ok &= send(&ifname, mac, *a).is_ok();
                    }
                    libc::_exit(if ok { 0 } else { 1 });
                }
                libc::_exit(0);
            }
            child => {
                let mut status = 0;
                libc::waitpid(child, &mut status, 0);
                true
            }
        }
    }
}

/// Sends the announcement for one address out of `ifname`.
pub fn send(ifname: &str, mac: [u8; 6], addr: IpAddr) -> io::Result<()> {
    match addr {
        IpAddr::V4(v4) => gratuitous_arp(ifname, mac, v4),
        IpAddr::V6(v6) => unsolicited_na(ifname, mac, v6),
    }
}

/// The ARP payload of a gratuitous request: sender and target address are both `ip`.
pub fn garp_payload(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 28] {
    let mut p = [0u8; 28];
    p[0..2].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    p[2..4].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    p[4] = 6;
    p[5] = 4;
    p[6..8].copy_from_slice(&1u16.to_be_bytes()); // request
    p[8..14].copy_from_slice(&mac);
    p[14..18].copy_from_slice(&ip.octets());
    // target hardware address stays zero
    p[24..28].copy_from_slice(&ip.octets());
    p
}

/// Broadcasts, out of `ifname`, a gratuitous ARP saying that `ip` is at `mac`.
pub fn gratuitous_arp(ifname: &str, mac: [u8; 6], ip: Ipv4Addr) -> io::Result<()> {
    let proto = crate::adapters::libc_consts::ETH_P_ARP.to_be();
    // SAFETY: socket(2); the fd is owned immediately.
    let fd = check(unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            proto as i32,
        )
    })?;
    // SAFETY: fd is fresh and ours.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: all-zero is a valid sockaddr_ll.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = crate::adapters::libc_consts::SA_PACKET;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex(ifname)? as i32;
    sll.sll_halen = 6;
    sll.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    let payload = garp_payload(mac, ip);
    // SAFETY: buffers are valid for the lengths given.
    check_sent(unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            payload.as_ptr() as *const libc::c_void,
            payload.len(),
            0,
            &sll as *const _ as *const libc::sockaddr,
            crate::adapters::libc_consts::socklen_of::<libc::sockaddr_ll>(),
        )
    })?;
    Ok(())
}

/// The ICMPv6 body of an unsolicited neighbour advertisement (override flag set, target
/// link-layer address option), checksum left for the kernel.
pub fn na_payload(mac: [u8; 6], ip: Ipv6Addr) -> [u8; 32] {
    let mut p = [0u8; 32];
    p[0] = 136; // neighbour advertisement
    p[4] = 0x20; // override
    p[8..24].copy_from_slice(&ip.octets());
    p[24] = 2; // target link-layer address
    p[25] = 1; // length in units of 8 bytes
    p[26..32].copy_from_slice(&mac);
    p
}

/// Sends, out of `ifname`, an unsolicited neighbour advertisement to all nodes saying that
/// `ip` is at `mac`.
pub fn unsolicited_na(ifname: &str, mac: [u8; 6], ip: Ipv6Addr) -> io::Result<()> {
    // SAFETY: socket(2); the fd is owned immediately.
    let fd = check(unsafe {
        libc::socket(
            libc::AF_INET6,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_ICMPV6,
        )
    })?;
    // SAFETY: fd is fresh and ours.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let idx = ifindex(ifname)?;
    let hops: libc::c_int = 255; // receivers drop NDP messages with any other hop limit
                                 // SAFETY: option values are valid for their sizes.
    unsafe {
        check(libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_MULTICAST_HOPS,
            &hops as *const _ as *const libc::c_void,
            4,
        ))?;
        check(libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_MULTICAST_IF,
            &idx as *const _ as *const libc::c_void,
            4,
        ))?;
    }
    // SAFETY: all-zero is a valid sockaddr_in6.
    let mut dst: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    dst.sin6_family = crate::adapters::libc_consts::SA_INET6;
    dst.sin6_addr.s6_addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1).octets();
    dst.sin6_scope_id = idx;
    let payload = na_payload(mac, ip);
    // SAFETY: buffers are valid for the lengths given.
    check_sent(unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            payload.as_ptr() as *const libc::c_void,
            payload.len(),
            0,
            &dst as *const _ as *const libc::sockaddr,
            crate::adapters::libc_consts::socklen_of::<libc::sockaddr_in6>(),
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garp_layout() {
        let p = garp_payload([2, 0x42, 10, 1, 2, 3], Ipv4Addr::new(10, 1, 2, 3));
        assert_eq!(&p[..8], &[0, 1, 8, 0, 6, 4, 0, 1]);
        assert_eq!(&p[8..14], &[2, 0x42, 10, 1, 2, 3]);
        assert_eq!(&p[14..18], &[10, 1, 2, 3]);
        assert_eq!(&p[18..24], &[0; 6]);
        assert_eq!(&p[24..28], &[10, 1, 2, 3]);
    }

    #[test]
    fn na_layout() {
        let ip: Ipv6Addr = "fd00::5".parse().unwrap();
        let p = na_payload([2, 0x42, 0, 0, 0, 5], ip);
        assert_eq!(p[0], 136);
        assert_eq!(p[4], 0x20);
        assert_eq!(&p[8..24], &ip.octets());
        assert_eq!(&p[24..26], &[2, 1]);
    }
}
