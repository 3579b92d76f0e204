//! Sets, maps and their elements.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

use super::expr::Verdict;
use super::observed::SetInfo;
use super::{
    align4, NFT_SET_CONCAT, NFT_SET_CONSTANT, NFT_SET_INTERVAL, NFT_SET_MAP, NFT_SET_TIMEOUT,
};

/// One component of a set key or map value, as nft knows it. The type ids are nft's own
/// (`enum datatypes` in nftables' `datatype.h`); the kernel stores them opaquely and nft uses
/// them to print elements (`nft list ruleset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scalar {
    /// Interface name: 16 bytes, NUL-padded (`ifname`, type 41).
    Ifname,
    /// IPv4 address, network order (`ipv4_addr`, type 7).
    Ipv4Addr,
    /// IPv6 address, network order (`ipv6_addr`, type 8).
    Ipv6Addr,
    /// Layer-4 protocol number, 1 byte (`inet_proto`, type 12).
    InetProto,
    /// Port, 2 bytes network order (`inet_service`, type 13).
    InetService,
    /// Packet mark, 4 bytes host order (`mark`, type 19).
    Mark,
    /// Ethernet address, 6 bytes (`ether_addr`, type 9).
    EtherAddr,
}

impl Scalar {
    /// nft's datatype id.
    pub fn type_id(self) -> u32 {
        match self {
            Scalar::Ifname => 41,
            Scalar::Ipv4Addr => 7,
            Scalar::Ipv6Addr => 8,
            Scalar::InetProto => 12,
            Scalar::InetService => 13,
            Scalar::Mark => 19,
            Scalar::EtherAddr => 9,
        }
    }

    /// Length in bytes, before padding.
    pub fn byte_len(self) -> u32 {
        match self {
            Scalar::Ifname | Scalar::Ipv6Addr => 16,
            Scalar::Ipv4Addr | Scalar::Mark => 4,
            Scalar::InetProto => 1,
            Scalar::InetService => 2,
            Scalar::EtherAddr => 6,
        }
    }
}

/// nft's `TYPE_BITS`: concatenated type ids are packed 6 bits per component.
const TYPE_BITS: u32 = 6;

/// The type of a set key (or of a map's value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// `ifname`.
    Ifname,
    /// `ifname . ifname` (32 bytes).
    IfnamePair,
    /// `ipv4_addr`.
    Ipv4Addr,
    /// `ipv6_addr`.
    Ipv6Addr,
    /// `inet_proto`.
    InetProto,
    /// `inet_service`.
    InetService,
    /// `mark`.
    Mark,
    /// `ipv4_addr . inet_proto . inet_service` (12 bytes): a published port's match key.
    Ipv4ProtoService,
    /// `ipv6_addr . inet_proto . inet_service` (24 bytes).
    Ipv6ProtoService,
    /// `ipv4_addr . inet_service` (8 bytes): a DNAT target.
    Ipv4Service,
    /// `ipv6_addr . inet_service` (20 bytes).
    Ipv6Service,
    /// `inet_proto . inet_service` (8 bytes): a port published on every host address.
    ProtoService,
    /// `ipv4_addr . ipv4_addr` (8 bytes): a (source, destination) pair.
    Ipv4Pair,
    /// `ipv6_addr . ipv6_addr` (32 bytes).
    Ipv6Pair,
    /// `ifname . ether_addr . ipv4_addr` (28 bytes): a bridge port, the MAC and the IPv4
    /// address its sandbox may send from.
    IfnameEtherIpv4,
    /// `ifname . ether_addr . ipv6_addr` (40 bytes).
    IfnameEtherIpv6,
}

impl KeyType {
    /// The components, in order.
    pub fn fields(self) -> &'static [Scalar] {
        use Scalar::*;
        match self {
            KeyType::Ifname => &[Ifname],
            KeyType::IfnamePair => &[Ifname, Ifname],
            KeyType::Ipv4Addr => &[Ipv4Addr],
            KeyType::Ipv6Addr => &[Ipv6Addr],
            KeyType::InetProto => &[InetProto],
            KeyType::InetService => &[InetService],
            KeyType::Mark => &[Mark],
            KeyType::Ipv4ProtoService => &[Ipv4Addr, InetProto, InetService],
            KeyType::Ipv6ProtoService => &[Ipv6Addr, InetProto, InetService],
            KeyType::Ipv4Service => &[Ipv4Addr, InetService],
            KeyType::Ipv6Service => &[Ipv6Addr, InetService],
            KeyType::ProtoService => &[InetProto, InetService],
            KeyType::Ipv4Pair => &[Ipv4Addr, Ipv4Addr],
            KeyType::Ipv6Pair => &[Ipv6Addr, Ipv6Addr],
            KeyType::IfnameEtherIpv4 => &[Ifname, EtherAddr, Ipv4Addr],
            KeyType::IfnameEtherIpv6 => &[Ifname, EtherAddr, Ipv6Addr],
        }
    }

    /// Whether this is a concatenation of several components.
    pub fn is_concat(self) -> bool {
        self.fields().len() > 1
    }

    /// nft's type id: `(a << 6) | b` for concatenations.
    pub fn type_id(self) -> u32 {
        self.fields()
            .iter()
            .fold(0, |acc, f| (acc << TYPE_BITS) | f.type_id())
    }

    /// Key length in bytes as the kernel sees it: every component padded to 4 bytes.
    pub fn byte_len(self) -> u32 {
        self.fields()
            .iter()
            .map(|f| f.byte_len().div_ceil(4) * 4)
            .sum()
    }
}

/// What a map maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    /// A verdict map (`vmap`): elements map to accept/drop/jump...
    Verdict,
    /// A data map: elements map to values of this type.
    Value(KeyType),
}

/// Set flags the caller chooses; `map` and `concat` are derived from the [`SetSpec`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SetFlags(u32);

impl SetFlags {
    /// No flags: a hash set of single keys.
    pub const NONE: SetFlags = SetFlags(0);
    /// Elements are ranges (prefixes): `flags interval`.
    pub const INTERVAL: SetFlags = SetFlags(NFT_SET_INTERVAL);
    /// Elements may carry a timeout.
    pub const TIMEOUT: SetFlags = SetFlags(NFT_SET_TIMEOUT);
    /// The set cannot change after its batch.
    pub const CONSTANT: SetFlags = SetFlags(NFT_SET_CONSTANT);

    /// The flag bits.
    pub fn bits(self) -> u32 {
        self.0
    }

    /// Whether every flag of `other` is set.
    pub fn contains(self, other: SetFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for SetFlags {
    type Output = SetFlags;
    fn bitor(self, rhs: SetFlags) -> SetFlags {
        SetFlags(self.0 | rhs.0)
    }
}

/// A named set or map in a table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SetSpec {
    /// Set name.
    pub name: String,
    /// Key type.
    pub key: KeyType,
    /// Caller-chosen flags.
    pub flags: SetFlags,
    /// `Some` for maps and verdict maps.
    pub data: Option<DataType>,
}

impl SetSpec {
    /// A plain set of `key`.
    pub fn new(name: &str, key: KeyType) -> SetSpec {
        SetSpec {
            name: name.to_string(),
            key,
            flags: SetFlags::NONE,
            data: None,
        }
    }

    /// The same set with `flags interval`.
    pub fn interval(mut self) -> SetSpec {
        self.flags = self.flags | SetFlags::INTERVAL;
        self
    }

    /// The same set as a map to `data`.
    pub fn map(mut self, data: DataType) -> SetSpec {
        self.data = Some(data);
        self
    }

    /// The `NFTA_SET_FLAGS` value. The kernel compares it on re-adds (a differing set is
    /// `EEXIST`), so it must be computed the same way every time.
    pub fn kernel_flags(&self) -> u32 {
        let mut f = self.flags.bits();
        if self.data.is_some() {
            f |= NFT_SET_MAP;
        }
        // As nft does: only interval concatenations are flagged (they need the pipapo
        // backend and NFTA_SET_DESC_CONCAT); plain concatenations go to a hash.
        if self.flags.contains(SetFlags::INTERVAL) && self.key.is_concat() {
            f |= NFT_SET_CONCAT;
        }
        f
    }

    /// The data type id the kernel stores for a map (`NFT_DATA_VERDICT` for verdict maps).
    pub fn data_type_id(&self) -> Option<u32> {
        match self.data {
            Some(DataType::Verdict) => Some(NFT_DATA_VERDICT),
            Some(DataType::Value(t)) => Some(t.type_id()),
            None => None,
        }
    }

    /// Whether a set read back from the kernel has exactly this definition.
    pub fn matches(&self, seen: &SetInfo) -> bool {
        let data_len = match self.data {
            Some(DataType::Value(t)) => Some(t.byte_len()),
            _ => None,
        };
        seen.name == self.name
            && seen.flags == self.kernel_flags()
            && seen.key_type == self.key.type_id()
            && seen.key_len == self.key.byte_len()
            && seen.data_type == self.data_type_id()
            && (data_len.is_none() || seen.data_len == data_len)
    }
}

/// `NFT_DATA_VERDICT`: the data type of verdict maps.
pub const NFT_DATA_VERDICT: u32 = 0xffff_ff00;

/// What a map element maps to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ElemData {
    /// Bytes of the map's value type (padded like a key; see [`concat()`]).
    Value(Vec<u8>),
    /// A verdict, for verdict maps.
    Verdict(Verdict),
}

/// One set element.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Elem {
    /// The key bytes ([`KeyType::byte_len`] long).
    pub key: Vec<u8>,
    /// The end of a range in one element (`NFTA_SET_ELEM_KEY_END`), as interval
    /// concatenations require. Plain interval sets use a separate end element instead.
    pub key_end: Option<Vec<u8>>,
    /// This element closes an interval started by the previous one
    /// (`NFT_SET_ELEM_INTERVAL_END`); its key is the first value *after* the range.
    pub interval_end: bool,
    /// Map data.
    pub data: Option<ElemData>,
}

/// An interface name as a 16-byte key, NUL-padded. Linux names have at most 15 bytes; a longer
/// name is cut to 16 bytes, which can never equal a real interface's name, so it never matches.
pub fn ifname(name: &str) -> [u8; 16] {
    let mut k = [0u8; 16];
    let b = name.as_bytes();
    let n = b.len().min(16);
    k[..n].copy_from_slice(&b[..n]);
    k
}

/// A concatenated key: each part padded with zeros to a multiple of 4 bytes, as the kernel
/// lays concatenations out in its 32-bit registers.
pub fn concat(parts: &[&[u8]]) -> Vec<u8> {
    let mut v = Vec::new();
    for p in parts {
        v.extend_from_slice(p);
        v.resize(align4(v.len()), 0);
    }
    v
}

impl Elem {
    /// An element with this key.
    pub fn new(key: impl Into<Vec<u8>>) -> Elem {
        Elem {
            key: key.into(),
            key_end: None,
            interval_end: false,
            data: None,
        }
    }

    /// The same element mapping to `data`.
    pub fn with_data(mut self, data: ElemData) -> Elem {
        self.data = Some(data);
        self
    }

    /// An `ifname` element.
    pub fn ifname(name: &str) -> Elem {
        Elem::new(ifname(name))
    }

    /// An `ifname . ifname` element.
    pub fn ifname_pair(a: &str, b: &str) -> Elem {
        Elem::new(concat(&[&ifname(a), &ifname(b)]))
    }

    /// An `ipv4_addr . inet_proto . inet_service` element.
    pub fn ipv4_proto_service(addr: Ipv4Addr, proto: u8, port: u16) -> Elem {
        Elem::new(concat(&[&addr.octets(), &[proto], &port.to_be_bytes()]))
    }

    /// The elements of an interval set that cover `net`: its first address, then the address
    /// after its last one flagged as interval end. A prefix reaching 255.255.255.255 has no
    /// "after": the interval stays open, as nft does it.
    pub fn prefix_v4(net: Ipv4Net) -> Vec<Elem> {
        let start = u32::from(net.network());
        let last = u32::from(net.broadcast());
        let mut v = vec![Elem::new(start.to_be_bytes())];
        if let Some(end) = last.checked_add(1) {
            v.push(Elem {
                interval_end: true,
                ..Elem::new(end.to_be_bytes())
            });
        }
        v
    }

    /// [`Elem::prefix_v4`] for IPv6.
    pub fn prefix_v6(net: Ipv6Net) -> Vec<Elem> {
        let start = u128::from(net.network());
        let last = u128::from(net.broadcast());
        let mut v = vec![Elem::new(start.to_be_bytes())];
        if let Some(end) = last.checked_add(1) {
            v.push(Elem {
                interval_end: true,
                ..Elem::new(end.to_be_bytes())
            });
        }
        v
    }

    /// An `ipv6_addr` element.
    pub fn ipv6(addr: Ipv6Addr) -> Elem {
        Elem::new(addr.octets())
    }

    /// An `ifname . ether_addr . ipv4_addr` element.
    pub fn port_mac_ipv4(port: &str, mac: [u8; 6], addr: Ipv4Addr) -> Elem {
        Elem::new(concat(&[&ifname(port), &mac, &addr.octets()]))
    }

    /// An `ifname . ether_addr . ipv6_addr` element.
    pub fn port_mac_ipv6(port: &str, mac: [u8; 6], addr: Ipv6Addr) -> Elem {
        Elem::new(concat(&[&ifname(port), &mac, &addr.octets()]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_ids_and_lengths() {
        assert_eq!(KeyType::Ifname.type_id(), 41);
        assert_eq!(KeyType::IfnamePair.type_id(), 0x0a69); // as nft 1.0.6 sends it
        assert_eq!(KeyType::IfnamePair.byte_len(), 32);
        assert_eq!(KeyType::Ipv4ProtoService.type_id(), 0x730d); // nft: 00 00 73 0d
        assert_eq!(KeyType::Ipv4ProtoService.byte_len(), 12);
        assert_eq!(KeyType::Ipv4Service.type_id(), 0x1cd);
        assert_eq!(KeyType::Ipv4Service.byte_len(), 8);
        assert_eq!(KeyType::Ipv6ProtoService.byte_len(), 24);
        // nft: `type ifname . ether_addr . ipv4_addr` is 0x29247 (41 << 12 | 9 << 6 | 7).
        assert_eq!(
            KeyType::IfnameEtherIpv4.type_id(),
            (41 << 12) | (9 << 6) | 7
        );
        assert_eq!(KeyType::IfnameEtherIpv4.byte_len(), 28);
        assert_eq!(KeyType::IfnameEtherIpv6.byte_len(), 40);
    }

    #[test]
    fn concat_pads_each_component() {
        let e = Elem::ipv4_proto_service(Ipv4Addr::new(10, 0, 0, 2), 6, 8080);
        assert_eq!(e.key, vec![10, 0, 0, 2, 6, 0, 0, 0, 0x1f, 0x90, 0, 0]);
        assert_eq!(Elem::ifname_pair("a", "b").key.len(), 32);
    }

    #[test]
    fn prefixes() {
        let v = Elem::prefix_v4("10.1.2.3/16".parse().unwrap());
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].key, vec![10, 1, 0, 0]);
        assert!(!v[0].interval_end);
        assert_eq!(v[1].key, vec![10, 2, 0, 0]);
        assert!(v[1].interval_end);
        let open = Elem::prefix_v4("255.255.255.0/24".parse().unwrap());
        assert_eq!(open.len(), 1);
        let v6 = Elem::prefix_v6("fd00:1::/64".parse().unwrap());
        assert_eq!(
            v6[1].key,
            "fd00:1:0:1::"
                .parse::<Ipv6Addr>()
                .unwrap()
                .octets()
                .to_vec()
        );
    }
}
