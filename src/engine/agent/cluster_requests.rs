//! The agent's answers to the commands' cluster requests (create or remove an overlay
//! network, attach or detach a sandbox, list the hosts). They run on a blocking thread, off
//! the event loop: every one waits for the cluster store.

use std::sync::Arc;

use crate::core::agent::{ClusterAttach, Request, Response};
use crate::core::cluster::records::EndpointRecord;
use crate::core::driver::DriverError;
use crate::core::model::{format_mac, mac_for};
use crate::core::plan::parse_mac;
use crate::engine::cluster::{
    addresses, create_network, endpoints, hosts, networks, remove_network, ClusterError, Membership,
};

/// Whether `req` is one [`handle`] answers.
pub(super) fn is_cluster_request(req: &Request) -> bool {
    matches!(
        req,
        Request::ClusterCreateNetwork { .. }
            | Request::ClusterRemoveNetwork { .. }
            | Request::ClusterAttach(_)
            | Request::ClusterDetach { .. }
            | Request::ClusterHosts
    )
}

/// Answers a cluster request with this host's membership (`None`: no cluster). Blocking:
/// call it off the event loop.
pub(super) fn handle(membership: Option<Arc<Membership>>, req: Request) -> Response {
    let Some(m) = membership else {
        return Response::failed(DriverError::NeedsCluster.to_string());
    };
    let answer = match req {
        Request::ClusterCreateNetwork { network } => {
            create_network::create_network(m.store.as_ref(), *network, m.vxlan_port).map(|n| {
                Response {
                    network: Some(Box::new(n)),
                    ..Response::ok()
                }
            })
        }
        Request::ClusterRemoveNetwork { name } => {
            remove_network::remove_network(m.store.as_ref(), &name).map(|n| Response {
                network: Some(Box::new(n)),
                ..Response::ok()
            })
        }
        Request::ClusterAttach(a) => attach(&m, a),
        Request::ClusterDetach {
            network_id,
            sandbox,
        } => endpoints::unregister_endpoint(m.store.as_ref(), &m.node, &network_id, &sandbox)
            .and_then(|()| {
                addresses::release_address(m.store.as_ref(), &network_id, &sandbox, None)
            })
            .map(|_| Response::ok()),
        Request::ClusterHosts => hosts::hosts(m.store.as_ref()).map(|h| Response {
            hosts: Some(h),
            ..Response::ok()
        }),
        _ => return Response::failed("not a cluster request"),
    };
    answer.unwrap_or_else(|e| Response::failed(e.to_string()))
}

/// Claims an address and registers the endpoint; a failed registration releases the claim.
fn attach(m: &Membership, a: ClusterAttach) -> Result<Response, ClusterError> {
    let store = m.store.as_ref();
    let Some((net, _)) = networks::by_name(store, &a.network)? else {
        return Err(ClusterError::NoSuchNetwork(a.network));
    };
    // No lease, no claim: checked first so that an unreachable store or a lost lease fails
    // before anything is written.
    if m.lease().is_none() {
        return Err(ClusterError::NoLease {
            endpoints: store.endpoints(),
        });
    }
    let ip = addresses::claim_address(
        store,
        &net,
        &m.node,
        &a.sandbox,
        false,
        a.ip.map(std::net::IpAddr::V4),
    )?;
    let std::net::IpAddr::V4(v4) = ip else {
        let _ = addresses::release_address(store, &net.id, &a.sandbox, Some(ip));
        return Err(ClusterError::Address {
            network: net.name,
            detail: format!("{ip} is not an IPv4 address"),
        });
    };
    let mac = match a.mac.as_deref().map(parse_mac) {
        Some(Some(mac)) => mac,
        Some(None) => {
            let _ = addresses::release_address(store, &net.id, &a.sandbox, Some(ip));
            return Err(ClusterError::Address {
                network: net.name,
                detail: format!("invalid MAC {:?}", a.mac.unwrap_or_default()),
            });
        }
        None => mac_for(Some(v4), None),
    };
    let mut record =
        EndpointRecord::new(&m.node, &net.id, &a.sandbox, &a.name, Some(v4), None, mac);
    record.hostname = a.hostname.filter(|h| *h != a.name);
    record.aliases = a.aliases;
    if let Err(e) = endpoints::register_endpoint(m, &net.name, &record) {
        // Best effort: with the store unreachable the claim stays, and this node's next
        // attach of the same sandbox, or a detach, finds it again.
        let _ = addresses::release_address(store, &net.id, &a.sandbox, Some(ip));
        return Err(e);
    }
    tracing::info!(network = %net.name, sandbox = %a.sandbox, %ip, mac = %format_mac(&mac), "overlay endpoint registered");
    Ok(Response {
        address: Some(ip),
        network: Some(Box::new(net)),
        ..Response::ok()
    })
}
