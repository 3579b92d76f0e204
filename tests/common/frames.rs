//! Hand-made Ethernet frames for attacker tests: spoofed IPv4/IPv6 sources, ARP, router
//! advertisements, neighbour advertisements, VLAN tags. Sent from inside a sandbox with
//! `weft tool frame eth0 HEX` (a packet socket: what CAP_NET_RAW allows), seen by
//! `weft tool sniff` in another sandbox.

#![allow(dead_code)]

use std::net::{Ipv4Addr, Ipv6Addr};

/// A MAC from `02:42:..` text.
pub fn mac(s: &str) -> [u8; 6] {
    let mut m = [0u8; 6];
    for (b, p) in m.iter_mut().zip(s.split(':')) {
        *b = u8::from_str_radix(p, 16).unwrap();
    }
    m
}

/// Lower-case hex, as `weft tool frame` and `sniff` take it.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The broadcast MAC.
pub const BROADCAST: [u8; 6] = [0xff; 6];

/// The Ethernet multicast MAC of an IPv6 multicast address (33:33 + its last 4 bytes).
pub fn mcast_mac(a: Ipv6Addr) -> [u8; 6] {
    let o = a.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

/// An Ethernet frame.
pub fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&dst);
    v.extend_from_slice(&src);
    v.extend_from_slice(&ethertype.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// An 802.1Q-tagged Ethernet frame.
pub fn eth_vlan(dst: [u8; 6], src: [u8; 6], vid: u16, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut inner = vid.to_be_bytes().to_vec();
    inner.extend_from_slice(&ethertype.to_be_bytes());
    inner.extend_from_slice(payload);
    eth(dst, src, 0x8100, &inner)
}

/// The folded one's complement of a 32-bit sum (0 when a header with its checksum verifies).
pub fn fold(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !u16::try_from(sum).expect("folded to 16 bits")
}

/// A length field: test frames are far below 64 KiB.
fn len16(n: usize) -> [u8; 2] {
    u16::try_from(n).expect("test frame too long").to_be_bytes()
}

/// The 16-bit one's complement sum of `data`.
pub fn sum16(data: &[u8]) -> u32 {
    data.chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

/// An IPv4 packet (TTL 64, header checksum filled in).
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&len16(20 + payload.len()));
    h.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    let c = fold(sum16(&h));
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

/// A UDP datagram over IPv4 (no checksum, which IPv4 allows).
pub fn udp4(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&len16(8 + data.len()));
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(data);
    ipv4(src, dst, 17, &u)
}

/// An ICMP redirect ("use `gateway` for `target`") about a packet to `target`.
pub fn icmp_redirect(src: Ipv4Addr, dst: Ipv4Addr, gateway: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let inner = udp4(dst, target, 1000, 2000, b"");
    let mut m = vec![5, 1, 0, 0];
    m.extend_from_slice(&gateway.octets());
    m.extend_from_slice(&inner[..28]);
    let c = fold(sum16(&m));
    m[2..4].copy_from_slice(&c.to_be_bytes());
    ipv4(src, dst, 1, &m)
}

/// An IPv6 packet with `next` header and hop limit `hops`.
pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, hops: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&len16(payload.len()));
    h.push(next);
    h.push(hops);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(payload);
    h
}

fn pseudo6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, body: &[u8]) -> u16 {
    let mut p = Vec::new();
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(&len16(body.len()));
    p.extend_from_slice(&[0, 0, 0, next]);
    p.extend_from_slice(body);
    fold(sum16(&p))
}

/// A UDP datagram over IPv6 (checksum filled in).
pub fn udp6(src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&len16(8 + data.len()));
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(data);
    let c = pseudo6(src, dst, 17, &u);
    u[6..8].copy_from_slice(&c.to_be_bytes());
    ipv6(src, dst, 17, 64, &u)
}

/// An ICMPv6 message (checksum filled in), hop limit 255 as neighbour discovery requires.
pub fn icmp6(src: Ipv6Addr, dst: Ipv6Addr, ty: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![ty, 0, 0, 0];
    m.extend_from_slice(body);
    let c = pseudo6(src, dst, 58, &m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    ipv6(src, dst, 58, 255, &m)
}

/// A router advertisement: default router with high preference, lifetime 1800 s, and an
/// autonomous on-link prefix `prefix/64` (SLAAC), from `src_mac`.
pub fn router_advert(src: Ipv6Addr, src_mac: [u8; 6], prefix: Ipv6Addr) -> Vec<u8> {
    let mut b = vec![64, 0x08, 0x07, 0x08]; // hop limit, flags (prf high), lifetime 1800
    b.extend_from_slice(&[0; 8]); // reachable, retrans
                                  // Prefix information: type 3, len 4, /64, L|A, valid 86400, preferred 14400.
    b.extend_from_slice(&[3, 4, 64, 0xc0]);
    b.extend_from_slice(&86400u32.to_be_bytes());
    b.extend_from_slice(&14400u32.to_be_bytes());
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&prefix.octets());
    // Source link-layer address.
    b.extend_from_slice(&[1, 1]);
    b.extend_from_slice(&src_mac);
    let all_nodes: Ipv6Addr = "ff02::1".parse().unwrap();
    eth(
        mcast_mac(all_nodes),
        src_mac,
        0x86dd,
        &icmp6(src, all_nodes, 134, &b),
    )
}

/// An unsolicited neighbour advertisement (override flag) to all nodes: `target` is at
/// `tlla`.
pub fn neighbour_advert(
    src: Ipv6Addr,
    src_mac: [u8; 6],
    target: Ipv6Addr,
    tlla: [u8; 6],
) -> Vec<u8> {
    let mut b = vec![0x20, 0, 0, 0];
    b.extend_from_slice(&target.octets());
    b.extend_from_slice(&[2, 1]);
    b.extend_from_slice(&tlla);
    let all_nodes: Ipv6Addr = "ff02::1".parse().unwrap();
    eth(
        mcast_mac(all_nodes),
        src_mac,
        0x86dd,
        &icmp6(src, all_nodes, 136, &b),
    )
}

/// A gratuitous ARP (a broadcast request for `spa` itself) claiming `spa` is at `sha`.
pub fn gratuitous_arp(src_mac: [u8; 6], sha: [u8; 6], spa: Ipv4Addr) -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4, 0, 1];
    a.extend_from_slice(&sha);
    a.extend_from_slice(&spa.octets());
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&spa.octets());
    eth(BROADCAST, src_mac, 0x0806, &a)
}

/// An ARP reply claiming `spa` is at `sha`, addressed to `tha`/`tpa` (and sent to `dst`).
pub fn arp_reply(
    dst: [u8; 6],
    src_mac: [u8; 6],
    sha: [u8; 6],
    spa: Ipv4Addr,
    tha: [u8; 6],
    tpa: Ipv4Addr,
) -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4, 0, 2];
    a.extend_from_slice(&sha);
    a.extend_from_slice(&spa.octets());
    a.extend_from_slice(&tha);
    a.extend_from_slice(&tpa.octets());
    eth(dst, src_mac, 0x0806, &a)
}
