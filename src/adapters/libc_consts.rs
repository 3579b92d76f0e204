//! libc's `c_int` constants narrowed to the widths of the kernel fields that carry them
//! (`nfgenmsg.nfgen_family` is a `u8`, `sockaddr.sa_family` a `u16`), and struct sizes as
//! `socklen_t`. One place for these casts, each checked by the test below, so that everywhere
//! else a narrowing `as` is a lint error.

// Every value below fits its type (see the test); libc only offers them as `c_int`.
#![allow(clippy::cast_possible_truncation)]

/// `AF_UNSPEC` as an address-family byte.
pub const AF_UNSPEC: u8 = libc::AF_UNSPEC as u8;
/// `AF_INET` as an address-family byte.
pub const AF_INET: u8 = libc::AF_INET as u8;
/// `AF_INET6` as an address-family byte.
pub const AF_INET6: u8 = libc::AF_INET6 as u8;
/// `AF_INET` as a `sa_family_t`.
pub const SA_INET: libc::sa_family_t = libc::AF_INET as libc::sa_family_t;
/// `AF_INET6` as a `sa_family_t`.
pub const SA_INET6: libc::sa_family_t = libc::AF_INET6 as libc::sa_family_t;
/// `AF_PACKET` as a `sa_family_t`.
pub const SA_PACKET: libc::sa_family_t = libc::AF_PACKET as libc::sa_family_t;
/// `ETH_P_ARP` as the 16-bit protocol number it is on the wire.
pub const ETH_P_ARP: u16 = libc::ETH_P_ARP as u16;

/// The size of `T` as a `socklen_t`, for socket calls taking a struct and its length.
pub const fn socklen_of<T>() -> libc::socklen_t {
    // Socket address and option structs are a few dozen bytes.
    std::mem::size_of::<T>() as libc::socklen_t
}

/// `MSG_DONTWAIT` as the flags argument of `recvmmsg`/`sendmmsg`, which glibc declares as
/// `c_int` and musl as `c_uint`.
#[cfg(target_env = "gnu")]
pub const MMSG_DONTWAIT: libc::c_int = libc::MSG_DONTWAIT;
/// `MSG_DONTWAIT` as the flags argument of `recvmmsg`/`sendmmsg`, which glibc declares as
/// `c_int` and musl as `c_uint`.
#[cfg(not(target_env = "gnu"))]
#[allow(clippy::cast_sign_loss)]
pub const MMSG_DONTWAIT: libc::c_uint = libc::MSG_DONTWAIT as libc::c_uint;

/// `len` in the integer type this libc gives a length field of `msghdr` or `cmsghdr`
/// (`msg_iovlen`, `msg_controllen`, `cmsg_len`: `size_t` in glibc, `int` or `socklen_t` in
/// musl), or an error when it does not fit. Generic, so one call site builds for both.
pub fn len_field<T: TryFrom<usize>>(len: usize) -> std::io::Result<T> {
    T::try_from(len)
        .map_err(|_| std::io::Error::other(format!("length {len} does not fit libc's field")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrowed_constants_keep_their_values() {
        assert_eq!(i32::from(AF_UNSPEC), libc::AF_UNSPEC);
        assert_eq!(i32::from(AF_INET), libc::AF_INET);
        assert_eq!(i32::from(AF_INET6), libc::AF_INET6);
        assert_eq!(i32::from(SA_INET), libc::AF_INET);
        assert_eq!(i32::from(SA_INET6), libc::AF_INET6);
        assert_eq!(i32::from(SA_PACKET), libc::AF_PACKET);
        assert_eq!(i32::from(ETH_P_ARP), libc::ETH_P_ARP);
        assert_eq!(
            usize::try_from(socklen_of::<libc::sockaddr_in6>()).unwrap(),
            std::mem::size_of::<libc::sockaddr_in6>()
        );
    }
}
