//! The underlay: the host interface holding the address the agent advertises to the cluster,
//! which VXLAN traffic leaves through and whose MTU bounds an overlay network's.

use std::net::IpAddr;

use anyhow::{Context as _, Result};

use crate::adapters::host_facts;
use crate::core::driver::Underlay;
use crate::user_err;

/// The interface of this namespace holding `advertise`, read through netlink; a user error
/// naming the address when no interface has it.
pub fn find(advertise: IpAddr) -> Result<Underlay> {
    let found = host_facts::interface_with(advertise)
        .with_context(|| format!("looking for the interface that holds {advertise}"))?;
    let (ifname, mtu) = found.ok_or_else(|| {
        user_err!(
            "--advertise {advertise} is not an address of this host: no interface has it; give the address this host has on the network the other hosts share"
        )
    })?;
    Ok(Underlay {
        ifname,
        mtu,
        overhead: crate::core::driver::overlay::overhead_for(advertise),
    })
}
