//! weft's nftables set elements rebuilt from the records: after `gc`, and after a record that
//! could not be read was removed (its elements cannot be derived from it one by one).

use anyhow::Result;

use crate::adapters::nftables;
use crate::adapters::store::{Mode, Store as _};
use crate::core::firewall;
use crate::core::model::Status;
use crate::core::plan::{firewall_of, firewall_ports};
use crate::engine::Ctx;

/// Makes the set elements exactly those of the records, while holding the write lock so that
/// no network or sandbox is recorded meanwhile. Records still being created by a live process
/// count: their own elements may already be in.
pub fn rebuild(ctx: &Ctx) -> Result<()> {
    let tx = ctx.store.begin(Mode::Write)?;
    let nets = tx.networks()?;
    let sbs = tx.sandboxes()?;
    if !nets.is_empty()
        || nftables::table_exists(firewall::FAMILY, firewall::TABLE).unwrap_or(false)
    {
        let mut batch = nftables::Batch::new();
        firewall::ensure_base(&mut batch);
        firewall::flush_elements(&mut batch);
        for n in nets.iter().filter(|n| n.status != Status::Removing) {
            firewall::add_network(&mut batch, &firewall_of(n));
        }
        for sb in sbs.iter().filter(|s| s.status != Status::Removing) {
            firewall::publish(&mut batch, &firewall_ports(sb));
        }
        nftables::send(&batch).map_err(|e| anyhow::anyhow!("rebuilding nftables sets: {e}"))?;
    }
    tx.commit()?;
    Ok(())
}
