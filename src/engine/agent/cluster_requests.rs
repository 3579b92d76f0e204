//! The agent's answers to the commands' cluster requests (create or remove an overlay
//! network, attach or detach a sandbox, list the hosts). They run on a blocking thread, off
//! the event loop: every one waits for the cluster store.

use std::sync::Arc;

use crate::core::agent::{ClusterAttach, Request, Response};
use crate::core::cluster::records::{AddressRecord, EndpointRecord};
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
        Request::ClusterCreateNetwork {
            network,
            candidates,
            mtu_given,
        } => create_network::create_network_choosing(
            m.store.as_ref(),
            *network,
            m.vxlan_port,
            &candidates,
            mtu_given,
        )
        .map(|n| Response {
            network: Some(Box::new(n)),
            ..Response::ok()
        }),
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
                let known = m
                    .claims()
                    .as_ref()
                    .map(|c| addresses::Known::of(c, &network_id, &sandbox));
                addresses::release_address(
                    m.store.as_ref(),
                    &network_id,
                    &sandbox,
                    None,
                    known.as_ref(),
                )
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
    // The claims the cluster task keeps (copied out: the lock is never held across a call
    // to the store), so that the attach reads only the keys it claims.
    let known = m
        .claims()
        .as_ref()
        .map(|c| addresses::Known::of(c, &net.id, &a.sandbox));
    let claimed = addresses::claim(
        store,
        &net,
        &m.node,
        &a.sandbox,
        false,
        a.ip.map(std::net::IpAddr::V4),
        known.as_ref(),
    )?;
    let ip = claimed.ip;
    let std::net::IpAddr::V4(v4) = ip else {
        let _ = addresses::release_address(store, &net.id, &a.sandbox, Some(ip), None);
        return Err(ClusterError::Address {
            network: net.name,
            detail: format!("{ip} is not an IPv4 address"),
        });
    };
    let mac = match a.mac.as_deref().map(parse_mac) {
        Some(Some(mac)) => mac,
        Some(None) => {
            let _ = addresses::release_address(store, &net.id, &a.sandbox, Some(ip), None);
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
        let _ = addresses::release_address(store, &net.id, &a.sandbox, Some(ip), None);
        return Err(e);
    }
    // Noted in the task's copy of the claims at once: its watch reports the claim a moment
    // later, and an attach tried again meanwhile (its answer lost) must find the address the
    // sandbox holds rather than take a second one. Only once registered: a failed attach
    // gave its claim back. The watch's event, when it comes, says the same.
    if let Some(c) = m.claims().as_mut() {
        c.insert(
            claimed.key,
            AddressRecord {
                sandbox: a.sandbox.clone(),
                node: m.node.clone(),
            },
            claimed.revision,
        );
    }
    tracing::info!(network = %net.name, sandbox = %a.sandbox, %ip, mac = %format_mac(&mac), "overlay endpoint registered");
    Ok(Response {
        address: Some(ip),
        network: Some(Box::new(net)),
        ..Response::ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::cluster::memory::MemoryStore;
    use crate::adapters::cluster::{ClusterStore, LeaseId};
    use crate::core::cluster::claims::Claims;
    use crate::core::cluster::keys::PREFIX;
    use crate::core::driver::overlay::Overlay;
    use crate::core::driver::{Driver as _, Request as DriverRequest};
    use crate::core::model::Network;
    use std::sync::Mutex;
    use std::time::Duration;

    fn overlay(name: &str, subnet: &str) -> Network {
        let mut n = Network::example();
        n.name = name.into();
        n.id = "ab".repeat(32);
        n.driver = "overlay".into();
        let net: ipnet::IpNet = subnet.parse().unwrap();
        n.driver_data = Overlay
            .validate(&DriverRequest {
                network: name,
                subnets: &[net],
                ..Default::default()
            })
            .unwrap();
        n.subnets = vec![crate::core::ipam::validate_subnet(net, None, None, &[]).unwrap()];
        n
    }

    /// Creates the overlay network `ovl` (12.12.12.0/24) through `m`; its id.
    fn create_ovl(m: &Arc<Membership>) -> String {
        let r = handle(
            Some(m.clone()),
            Request::ClusterCreateNetwork {
                network: Box::new(overlay("ovl", "12.12.12.0/24")),
                candidates: vec![],
                mtu_given: false,
            },
        );
        assert!(r.ok, "{r:?}");
        r.network.unwrap().id
    }

    fn member(store: Arc<MemoryStore>, lease: Option<LeaseId>) -> Arc<Membership> {
        Arc::new(Membership {
            store,
            node: "h1".into(),
            vtep: "10.99.0.1".parse().unwrap(),
            vxlan_port: 4789,
            lease: Mutex::new(lease),
            claims: Mutex::new(None),
        })
    }

    fn attach_req(sandbox: &str) -> Request {
        Request::ClusterAttach(ClusterAttach {
            network: "ovl".into(),
            sandbox: sandbox.into(),
            name: "pink".into(),
            hostname: None,
            aliases: vec![],
            ip: None,
            mac: None,
        })
    }

    fn keys(s: &MemoryStore, under: &str) -> usize {
        s.snapshot(&format!("{PREFIX}{under}")).unwrap().kvs.len()
    }

    #[test]
    fn without_a_membership_the_error_names_the_flags() {
        let r = handle(None, Request::ClusterHosts);
        assert!(!r.ok);
        assert_eq!(
            r.error.as_deref(),
            Some("overlay networks need a cluster: start the agent with weft daemon --etcd URL --advertise IP")
        );
    }

    #[test]
    fn attach_claims_and_registers_detach_gives_both_back() {
        let s = Arc::new(MemoryStore::new());
        let lease = s.grant_lease(Duration::from_secs(10)).unwrap();
        let m = member(s.clone(), Some(lease.id()));
        let id = create_ovl(&m);
        let r = handle(Some(m.clone()), attach_req("sb1"));
        assert_eq!(r.address, Some("12.12.12.2".parse().unwrap()), "{r:?}");
        let ep = s
            .get(&format!("{PREFIX}endpoints/{id}/h1/sb1"))
            .unwrap()
            .unwrap();
        assert_eq!(ep.lease, Some(lease.id()));
        let rec = EndpointRecord::decode(&id, "h1", "sb1", &ep.value).unwrap();
        assert_eq!(rec.mac, mac_for(Some("12.12.12.2".parse().unwrap()), None));
        let r = handle(
            Some(m.clone()),
            Request::ClusterRemoveNetwork { name: "ovl".into() },
        );
        assert_eq!(
            r.error.as_deref(),
            Some(
                "network \"ovl\" has sandboxes attached on h1 (1); remove or disconnect them first"
            )
        );
        let r = handle(
            Some(m),
            Request::ClusterDetach {
                network_id: id,
                sandbox: "sb1".into(),
            },
        );
        assert!(r.ok, "{r:?}");
        assert_eq!(keys(&s, "endpoints/"), 0);
        assert_eq!(keys(&s, "addresses/"), 0);
    }

    #[test]
    fn an_attach_tried_again_before_the_watch_reports_its_claim_gets_the_same_address() {
        let s = Arc::new(MemoryStore::new());
        let lease = s.grant_lease(Duration::from_secs(10)).unwrap();
        let m = member(s.clone(), Some(lease.id()));
        // The task has synced (it keeps the claims) and its watch has not reported any.
        *m.claims() = Some(Claims::default());
        create_ovl(&m);
        for _ in 0..2 {
            let r = handle(Some(m.clone()), attach_req("sb1"));
            assert_eq!(r.address, Some("12.12.12.2".parse().unwrap()), "{r:?}");
        }
        assert_eq!(keys(&s, "addresses/"), 1);
        // Another sandbox gets the next address, without a conflict to retry on.
        let r = handle(Some(m), attach_req("sb2"));
        assert_eq!(r.address, Some("12.12.12.3".parse().unwrap()), "{r:?}");
        assert_eq!(keys(&s, "addresses/"), 2);
    }

    #[test]
    fn a_failed_registration_leaves_no_claim() {
        let s = Arc::new(MemoryStore::new());
        let m = member(s.clone(), None);
        create_ovl(&m);
        // No lease: refused before anything is claimed.
        let r = handle(Some(m), attach_req("sb1"));
        assert_eq!(r.error.as_deref(), Some(format!("cluster store {} is unreachable or this host's lease expired: new overlay attachments fail until it is back", s.endpoints()).as_str()));
        // A lease the store no longer has (expired since the task last looked): the claim
        // is made, the registration fails, the claim is given back.
        let m = member(s.clone(), Some(LeaseId(999)));
        let r = handle(Some(m), attach_req("sb2"));
        assert!(!r.ok, "{r:?}");
        assert_eq!(keys(&s, "addresses/"), 0);
        assert_eq!(keys(&s, "endpoints/"), 0);
        // The store unreachable: the error names it, nothing is written.
        let lease = s.grant_lease(Duration::from_secs(10)).unwrap();
        let m = member(s.clone(), Some(lease.id()));
        s.set_reachable(false);
        let r = handle(Some(m), attach_req("sb3"));
        assert!(
            r.error
                .as_deref()
                .unwrap_or_default()
                .contains(&s.endpoints()),
            "{r:?}"
        );
        s.set_reachable(true);
        assert_eq!(keys(&s, "addresses/"), 0);
        assert_eq!(keys(&s, "endpoints/"), 0);
    }
}
