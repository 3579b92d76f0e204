//! Cluster-wide choices made against a snapshot and committed with a create-if-absent
//! transaction: VNIs and overlay addresses. When the transaction finds the key taken (another
//! node won the race), the caller adds it to the taken set and chooses again; these functions
//! only ever choose among keys the snapshot shows free.

use std::collections::BTreeSet;
use std::net::IpAddr;

use thiserror::Error;

use crate::core::driver::overlay::VNI_MAX;
use crate::core::ipam::{allocate, AddressSpace, IpamError};

/// Why no choice could be made.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AllocError {
    /// Every VNI is taken.
    #[error("every VXLAN network identifier (1..=16777215) is in use: remove an overlay network")]
    VnisExhausted,
    /// The requested VNI is taken.
    #[error("VNI {vni} is already used by overlay network {by}: choose another --vni, or leave it out to get a free one")]
    VniTaken {
        /// The VNI.
        vni: u32,
        /// The network holding it.
        by: String,
    },
    /// No address left.
    #[error(transparent)]
    Ipam(#[from] IpamError),
}

/// The first VNI this walk hands out: low VNIs are often typed by hand (S2 used 42), so weft's
/// automatic ones start above the range people pick.
pub const VNI_AUTO_START: u32 = 4096;

/// The lowest free VNI from [`VNI_AUTO_START`], wrapping to 1.
pub fn choose_vni(is_taken: impl Fn(u32) -> bool) -> Result<u32, AllocError> {
    (VNI_AUTO_START..=VNI_MAX)
        .chain(1..VNI_AUTO_START)
        .find(|v| !is_taken(*v))
        .ok_or(AllocError::VnisExhausted)
}

/// Checks that a requested VNI (already range-checked by
/// [`crate::core::driver::overlay::check_vni`]) is free.
pub fn vni_free(vni: u32, holder: impl Fn(u32) -> Option<String>) -> Result<u32, AllocError> {
    match holder(vni) {
        Some(by) => Err(AllocError::VniTaken { vni, by }),
        None => Ok(vni),
    }
}

/// The next overlay address: the bridge networks' rules ([`allocate`]) over the claims the
/// snapshot shows plus those lost in races since.
pub fn choose_address(
    space: &AddressSpace,
    cursor: Option<IpAddr>,
    taken: &BTreeSet<IpAddr>,
) -> Result<IpAddr, AllocError> {
    Ok(allocate(space, cursor, |ip| taken.contains(&ip))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vnis_start_high_and_wrap() {
        assert_eq!(choose_vni(|_| false), Ok(4096));
        let taken: BTreeSet<u32> = [4096, 4097].into();
        assert_eq!(choose_vni(|v| taken.contains(&v)), Ok(4098));
        assert_eq!(choose_vni(|v| v >= VNI_AUTO_START), Ok(1));
        assert_eq!(choose_vni(|_| true), Err(AllocError::VnisExhausted));
    }

    #[test]
    fn requested_vnis_must_be_free() {
        assert_eq!(vni_free(42, |_| None), Ok(42));
        assert_eq!(
            vni_free(42, |_| Some("blue".into())),
            Err(AllocError::VniTaken {
                vni: 42,
                by: "blue".into()
            })
        );
    }

    #[test]
    fn addresses_skip_claims_and_the_gateway() {
        let space = AddressSpace {
            subnet: "12.12.12.0/29".parse().unwrap(),
            gateway: "12.12.12.1".parse().unwrap(),
            ip_range: None,
            reserved: vec![],
        };
        let taken: BTreeSet<IpAddr> = ["12.12.12.2".parse().unwrap()].into();
        assert_eq!(
            choose_address(&space, None, &taken),
            Ok("12.12.12.3".parse().unwrap())
        );
        let full: BTreeSet<IpAddr> = (2..=6)
            .map(|i| format!("12.12.12.{i}").parse().unwrap())
            .collect();
        assert!(matches!(
            choose_address(&space, None, &full),
            Err(AllocError::Ipam(_))
        ));
    }
}
