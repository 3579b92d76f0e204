//! The production [`Executor`]: links, addresses and routes over rtnetlink, firewall elements
//! over nf_tables netlink, sysctls through `/proc/sys`.
//!
//! One rtnetlink socket per namespace: the host socket is opened on the calling thread, a
//! sandbox's socket on a short-lived thread that has entered the sandbox namespace (a netlink
//! socket stays bound to the namespace it was created in, so it can then be used from here).
//! Requests are single get/add/del messages addressed by name or index, never dumps, so an
//! attach costs the same whatever the number of sandboxes.

use std::collections::HashMap;
use std::fs::File;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::Path;

use futures::TryStreamExt;
use rtnetlink::packet_route::link::{AfSpecInet, AfSpecInet6, AfSpecUnspec, In6AddrGenMode};
use rtnetlink::packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, LinkAttribute,
    LinkMessage,
};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, RouteMessageBuilder};

mod observe;
mod vxlan;

pub(crate) use vxlan::{mac_of, raw_ip};

use super::{announce, conntrack, netns, nftables, sysctl};
use crate::core::firewall;
use crate::core::firewall::guard::PORT_GROUP_FWD_MASK;
use crate::core::plan::{ExecError, Executor, Ns, Op};

/// Applies [`Op`]s to the kernel of the namespace weft runs in and of sandbox namespaces.
pub struct KernelExecutor {
    rt: tokio::runtime::Runtime,
    host: Option<Handle>,
    sandboxes: HashMap<String, Handle>,
    applied: usize,
    crash_after: Option<usize>,
    fail_op: Option<String>,
    slow_op: Option<String>,
    /// Interface indexes already looked up, so an attach asks for each name once.
    indexes: HashMap<(Ns, String), u32>,
    /// A sandbox namespace being made ahead of its [`Op::CreateNetns`] (see
    /// [`KernelExecutor::prepare_netns`]), with the IPv6 setting it is made with.
    preparing: Option<(bool, netns::Making<Option<Handle>>)>,
}

/// Test hook (debug builds only): `WEFT_TEST_CRASH_AFTER_OPS=N` makes the process SIGKILL
/// itself before applying its (N+1)-th kernel operation, to prove that `weft gc` recovers from
/// a crash at any point.
pub const CRASH_ENV: &str = "WEFT_TEST_CRASH_AFTER_OPS";

/// Test hook (debug builds only): `WEFT_TEST_FAIL_OP=TEXT` makes every kernel operation whose
/// description starts with `TEXT` (`create veth`, ...) fail without touching the kernel, to
/// prove what a rollback leaves.
pub const FAIL_ENV: &str = "WEFT_TEST_FAIL_OP";

/// Test hook (debug builds only): `WEFT_TEST_SLOW_OP=TEXT[|TEXT...]` makes the process pause
/// for 5 s after each kernel operation (done or failed) whose description starts with one of
/// the `TEXT`s, so that a test can act while that command is half-way (a repair during a
/// disconnect or a rollback).
pub const SLOW_ENV: &str = "WEFT_TEST_SLOW_OP";

/// How long [`SLOW_ENV`] pauses.
const SLOW_PAUSE: std::time::Duration = std::time::Duration::from_secs(5);

impl Drop for KernelExecutor {
    fn drop(&mut self) {
        // A namespace made ahead and never claimed (the command failed before it): nothing
        // records it as made, so it goes now rather than waiting for gc.
        self.discard_prepared();
    }
}

fn errno_of(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(-m.raw_code()),
        _ => None,
    }
}

fn describe(e: &rtnetlink::Error) -> String {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io().to_string(),
        other => other.to_string(),
    }
}

fn exec_err(op: &Op, message: impl Into<String>) -> ExecError {
    ExecError {
        op: op.to_string(),
        message: message.into(),
    }
}

/// The most ports a Linux bridge holds: it numbers them 1..=1023 (`BR_MAX_PORTS` is 1024).
const BRIDGE_MAX_PORTS: usize = 1023;

/// The error of making `bridge` one more port: the kernel's `EXFULL` for a bridge without a
/// free port is said as what it is, not as "Exchange full" (or musl's "No error
/// information"). weft does not count the ports first: that would be a read of every
/// endpoint of the network in every attach, and the kernel's refusal comes before anything
/// but the namespace is made, which the failed attach removes like the rest.
fn port_err(op: &Op, bridge: &str, e: &rtnetlink::Error) -> ExecError {
    if errno_of(e) == Some(libc::EXFULL) {
        exec_err(
            op,
            format!(
                "bridge {bridge} has no free port (a Linux bridge holds at most {BRIDGE_MAX_PORTS}); remove a sandbox or another port from it, or create another network and connect the sandbox to it"
            ),
        )
    } else {
        exec_err(op, describe(e))
    }
}

impl KernelExecutor {
    /// An executor for the namespace of the calling thread. Sockets open lazily.
    pub fn new() -> std::io::Result<Self> {
        let start = std::time::Instant::now();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        crate::timing::record("runtime", start.elapsed());
        Ok(Self {
            rt,
            host: None,
            sandboxes: HashMap::new(),
            applied: 0,
            indexes: HashMap::new(),
            preparing: None,
            // Only test builds honour the hook; a release binary ignores the variable.
            crash_after: if cfg!(debug_assertions) {
                std::env::var(CRASH_ENV).ok().and_then(|v| v.parse().ok())
            } else {
                None
            },
            fail_op: if cfg!(debug_assertions) {
                std::env::var(FAIL_ENV).ok().filter(|v| !v.is_empty())
            } else {
                None
            },
            slow_op: if cfg!(debug_assertions) {
                std::env::var(SLOW_ENV).ok().filter(|v| !v.is_empty())
            } else {
                None
            },
        })
    }

    /// Starts making the sandbox namespace at `path` on a thread of its own, so that the
    /// kernel's work (about a millisecond) overlaps what the caller does before it applies
    /// [`Op::CreateNetns`] for that path, which then only waits for it. The caller must have
    /// recorded the namespace's owner first, as for the operation itself. A namespace made
    /// this way and never claimed by its operation is deleted when the executor is dropped.
    pub fn prepare_netns(&mut self, path: &str, ipv6: bool) {
        self.discard_prepared();
        let making = netns::spawn_create(Path::new(path), ipv6, self.open_inside());
        self.preparing = Some((ipv6, making));
    }

    /// What the thread that makes a namespace runs inside it: the namespace's netlink socket,
    /// registered with this executor's runtime (`None` if it cannot be opened, out of
    /// descriptors say: the first operation inside then opens one the usual way and reports
    /// the error).
    fn open_inside(&self) -> impl FnOnce() -> Option<Handle> + Send + 'static {
        let rt = self.rt.handle().clone();
        move || {
            let _guard = rt.enter();
            rtnetlink::new_connection().ok().map(|(conn, handle, _)| {
                rt.spawn(conn);
                handle
            })
        }
    }

    /// Deletes a prepared namespace nothing claimed.
    fn discard_prepared(&mut self) {
        if let Some((_, making)) = self.preparing.take() {
            let path = making.path().to_path_buf();
            if making.wait().is_ok() {
                let _ = netns::delete(&path);
            }
        }
    }

    fn handle(&mut self, ns: &Ns) -> Result<Handle, String> {
        match ns {
            Ns::Host => {
                if let Some(h) = &self.host {
                    return Ok(h.clone());
                }
                // The socket registers with this executor's runtime.
                let _guard = self.rt.enter();
                let (conn, handle, _) =
                    rtnetlink::new_connection().map_err(|e| format!("netlink socket: {e}"))?;
                self.rt.spawn(conn);
                self.host = Some(handle.clone());
                Ok(handle)
            }
            Ns::Sandbox(path) => {
                if let Some(h) = self.sandboxes.get(path) {
                    return Ok(h.clone());
                }
                // Created on a thread inside the sandbox namespace (so the socket lives
                // there), registered with this executor's runtime, which drives it from here.
                let rt = self.rt.handle().clone();
                let start = std::time::Instant::now();
                let handle = netns::run_in(Path::new(path), move || {
                    let _guard = rt.enter();
                    rtnetlink::new_connection().map(|(conn, handle, _)| {
                        rt.spawn(conn);
                        handle
                    })
                })
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("netlink socket in {path}: {e}"))?;
                crate::timing::record("sandbox-socket", start.elapsed());
                self.sandboxes.insert(path.clone(), handle.clone());
                Ok(handle)
            }
        }
    }

    /// The kernel's message for interface `name` in `h`'s namespace; `None` if it does not
    /// exist.
    fn get_link(&self, h: &Handle, name: &str) -> Result<Option<LinkMessage>, rtnetlink::Error> {
        let res = self.rt.block_on(async {
            h.link()
                .get()
                .match_name(name.to_string())
                .execute()
                .try_next()
                .await
        });
        match res {
            Err(e) if matches!(errno_of(&e), Some(libc::ENODEV) | Some(libc::ENOENT)) => Ok(None),
            other => other,
        }
    }

    /// Index of an interface by name, `None` if it does not exist.
    pub fn link_index(&mut self, ns: &Ns, name: &str) -> Result<Option<u32>, String> {
        if let Some(i) = self.indexes.get(&(ns.clone(), name.to_string())) {
            return Ok(Some(*i));
        }
        // Loopback is interface 1 in every network namespace.
        if name == "lo" {
            return Ok(Some(1));
        }
        let h = self.handle(ns)?;
        let Some(m) = self.get_link(&h, name).map_err(|e| describe(&e))? else {
            return Ok(None);
        };
        self.indexes
            .insert((ns.clone(), name.to_string()), m.header.index);
        Ok(Some(m.header.index))
    }

    /// The interface's per-interface IPv4 and IPv6 settings as the kernel
    /// reports them with the link (`IFLA_AF_SPEC`), keyed as the sysctls they are
    /// (`net/ipv4/conf/NAME/route_localnet`, ...): one request instead of a file per
    /// setting. Only the settings weft sets are listed. `None` if there is no such interface.
    pub fn link_sysctls(
        &mut self,
        ns: &Ns,
        name: &str,
    ) -> Result<Option<HashMap<String, String>>, String> {
        let h = self.handle(ns)?;
        let Some(m) = self.get_link(&h, name).map_err(|e| describe(&e))? else {
            return Ok(None);
        };
        self.indexes
            .insert((ns.clone(), name.to_string()), m.header.index);
        let mut out = HashMap::new();
        let mut put = |family: &str, key: &str, v: i32| {
            out.insert(format!("net/{family}/conf/{name}/{key}"), v.to_string());
        };
        for a in &m.attributes {
            let LinkAttribute::AfSpecUnspec(specs) = a else {
                continue;
            };
            for spec in specs {
                match spec {
                    AfSpecUnspec::Inet(v4) => {
                        for c in v4 {
                            if let AfSpecInet::DevConf(c) = c {
                                put("ipv4", "accept_redirects", c.accept_redirects);
                                put("ipv4", "send_redirects", c.send_redirects);
                                put("ipv4", "route_localnet", c.route_localnet);
                            }
                        }
                    }
                    AfSpecUnspec::Inet6(v6) => {
                        for c in v6 {
                            if let AfSpecInet6::DevConf(c) = c {
                                put("ipv6", "accept_ra", c.accept_ra);
                                put("ipv6", "autoconf", c.autoconf);
                                put("ipv6", "accept_redirects", c.accept_redirects);
                                put("ipv6", "accept_dad", c.accept_dad);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(Some(out))
    }

    /// Every host interface tagged by this state directory (`instance`), as (name, owner id)
    /// — for `weft gc`. Interfaces of other instances are never listed.
    pub fn owned_links(&mut self, instance: &str) -> Result<Vec<(String, String)>, String> {
        let h = self.handle(&Ns::Host)?;
        let links: Vec<LinkMessage> = self
            .rt
            .block_on(async { h.link().get().execute().try_collect().await })
            .map_err(|e| describe(&e))?;
        let mut out = Vec::new();
        for l in links {
            let mut name = None;
            let mut alias = None;
            for a in &l.attributes {
                match a {
                    LinkAttribute::IfName(n) => name = Some(n.clone()),
                    LinkAttribute::IfAlias(s) => alias = Some(s.clone()),
                    _ => {}
                }
            }
            if let (Some(n), Some(a)) = (name, alias) {
                if let Some(id) = crate::core::plan::alias_owner(instance, &a) {
                    out.push((n, id.to_string()));
                }
            }
        }
        Ok(out)
    }

    /// Host interfaces tagged by another weft instance (another state directory): (name,
    /// alias).
    pub fn foreign_links(&mut self, instance: &str) -> Result<Vec<(String, String)>, String> {
        let h = self.handle(&Ns::Host)?;
        let links: Vec<LinkMessage> = self
            .rt
            .block_on(async { h.link().get().execute().try_collect().await })
            .map_err(|e| describe(&e))?;
        Ok(links
            .iter()
            .filter_map(|l| {
                let (mut name, mut alias) = (None, None);
                for a in &l.attributes {
                    match a {
                        LinkAttribute::IfName(n) => name = Some(n.clone()),
                        LinkAttribute::IfAlias(s) => alias = Some(s.clone()),
                        _ => {}
                    }
                }
                let (name, alias) = (name?, alias?);
                let other = crate::core::plan::alias_instance(&alias)? != instance;
                other.then_some((name, alias))
            })
            .collect())
    }

    fn index_or_err(&mut self, op: &Op, ns: &Ns, name: &str) -> Result<u32, ExecError> {
        match self.link_index(ns, name) {
            Ok(Some(i)) => Ok(i),
            Ok(None) => Err(exec_err(op, format!("interface {name} does not exist"))),
            Err(e) => Err(exec_err(op, e)),
        }
    }

    fn run(&mut self, op: &Op) -> Result<(), ExecError> {
        let fail = |e: rtnetlink::Error| exec_err(op, describe(&e));
        match op {
            Op::CreateBridge {
                name,
                mtu,
                mac,
                alias,
                ipv6,
            } => {
                let h = self.handle(&Ns::Host).map_err(|e| exec_err(op, e))?;
                // A bridge of that name may have existed before (deleted behind our back).
                self.indexes.remove(&(Ns::Host, name.clone()));
                // Multicast snooping off: with it on, every port that starts forwarding
                // re-arms two query timers on *every* port of the bridge (the kernel's
                // `br_port_state_selection`), so an attach cost O(ports) timer work that grew
                // with the network (bench/README.md). Forwarding stays as it was: snooping only
                // restricts multicast once a querier is heard on the bridge, and weft runs
                // none (groups of a sandbox that sends queries are now flooded to every port).
                let msg = LinkMessageBuilder::<rtnetlink::LinkBridge>::new(name)
                    .mtu(*mtu)
                    .address(mac.to_vec())
                    .mcast_snooping(false)
                    .build();
                self.rt
                    .block_on(h.link().add(msg).execute())
                    .map_err(|e| match errno_of(&e) {
                        Some(libc::EEXIST) => exec_err(
                            op,
                            format!(
                                "interface {name} already exists; choose another --bridge-name"
                            ),
                        ),
                        _ => fail(e),
                    })?;
                let idx = self.index_or_err(op, &Ns::Host, name)?;
                // The bridge exists now: if tagging it fails, take it away again, or nothing
                // (not even gc, which goes by the tag) would know it is weft's.
                self.tag(op, &h, idx, alias, !ipv6).inspect_err(|_| {
                    let _ = self.rt.block_on(h.link().del(idx).execute());
                })
            }
            Op::AddAddress { ns, ifname, addr } => {
                let h = self.handle(ns).map_err(|e| exec_err(op, e))?;
                let idx = self.index_or_err(op, ns, ifname)?;
                match self.rt.block_on(
                    h.address()
                        .add(idx, addr.addr(), addr.prefix_len())
                        .execute(),
                ) {
                    Ok(()) => Ok(()),
                    Err(e) if errno_of(&e) == Some(libc::EEXIST) => Ok(()),
                    Err(e) => Err(fail(e)),
                }
            }
            Op::LinkUp { ns, ifname } => {
                let h = self.handle(ns).map_err(|e| exec_err(op, e))?;
                let idx = self.index_or_err(op, ns, ifname)?;
                let msg = LinkUnspec::new_with_index(idx).up().build();
                self.rt.block_on(h.link().set(msg).execute()).map_err(fail)
            }
            Op::Sysctl { ns, key, value } => {
                let (k, v) = (key.clone(), value.clone());
                let res = match ns {
                    Ns::Host => sysctl::set(&k, &v),
                    Ns::Sandbox(p) => netns::run_in(Path::new(p), move || sysctl::set(&k, &v))
                        .map_err(|e| std::io::Error::other(e.to_string()))
                        .and_then(|r| r),
                };
                match res {
                    // A kernel without IPv6 has no IPv6 keys, and nothing for them to do.
                    Err(e)
                        if e.kind() == std::io::ErrorKind::NotFound
                            && sysctl::is_ipv6_key(key)
                            && !sysctl::ipv6_present() =>
                    {
                        Ok(())
                    }
                    other => other.map_err(|e| exec_err(op, e.to_string())),
                }
            }
            Op::FirewallAdd(fw) => {
                // Elements only: the tables and rules are the engine's to ensure (and repair)
                // before it plans anything that needs them.
                let mut batch = nftables::Batch::new();
                firewall::add_network(&mut batch, fw);
                nftables::send(&batch).map_err(|e| exec_err(op, e.to_string()))
            }
            Op::FirewallRemove(fw) => {
                let mut batch = nftables::Batch::new();
                firewall::remove_network(&mut batch, fw);
                match nftables::send(&batch) {
                    Ok(()) => Ok(()),
                    // No table at all: nothing to remove.
                    Err(e) if e.errno() == Some(libc::ENOENT) => Ok(()),
                    Err(e) => Err(exec_err(op, e.to_string())),
                }
            }
            Op::FirewallAttach { endpoints, ports } => {
                let mut batch = nftables::Batch::new();
                firewall::attach(&mut batch, endpoints, ports);
                nftables::send(&batch).map_err(|e| exec_err(op, e.to_string()))
            }
            Op::FirewallDetach { endpoints, ports } => {
                let mut batch = nftables::Batch::new();
                firewall::detach(&mut batch, endpoints, ports);
                match nftables::send(&batch) {
                    Err(e) if e.errno() == Some(libc::ENOENT) => {
                        // One of the two tables is gone: the other's elements (published
                        // ports, say) must still go, so each table on its own.
                        for b in firewall::detach_per_table(endpoints, ports) {
                            if b.is_empty() {
                                continue;
                            }
                            match nftables::send(&b) {
                                Err(e) if e.errno() != Some(libc::ENOENT) => {
                                    return Err(exec_err(op, e.to_string()))
                                }
                                _ => {}
                            }
                        }
                        Ok(())
                    }
                    other => other.map_err(|e| exec_err(op, e.to_string())),
                }
            }
            Op::ForgetConnections(addrs) => conntrack::forget(addrs)
                .map(|_| ())
                .map_err(|e| exec_err(op, e.to_string())),
            Op::CreateNetns { path, ipv6 } => {
                // The sandbox's netlink socket is opened by the thread that made the
                // namespace, while it is still inside: no second thread to enter it later.
                let prepared = match self.preparing.take() {
                    Some((v6, making)) if v6 == *ipv6 && making.path() == Path::new(path) => {
                        Some(making)
                    }
                    other => {
                        self.preparing = other;
                        None
                    }
                };
                let making = prepared.unwrap_or_else(|| {
                    netns::spawn_create(Path::new(path), *ipv6, self.open_inside())
                });
                let handle = making.wait().map_err(|e| exec_err(op, e.to_string()))?;
                if let Some(h) = handle {
                    self.sandboxes.insert(path.clone(), h);
                }
                Ok(())
            }
            Op::DeleteNetns { path } => {
                self.sandboxes.remove(path);
                let gone = Ns::Sandbox(path.clone());
                self.indexes.retain(|(n, _), _| *n != gone);
                netns::delete(Path::new(path)).map_err(|e| exec_err(op, e.to_string()))
            }
            Op::CreateVeth {
                host_ifname,
                bridge,
                mtu,
                isolated,
                alias,
                peer_ns,
                peer_ifname,
                peer_mac,
                peer_ipv6,
            } => {
                let h = self.handle(&Ns::Host).map_err(|e| exec_err(op, e))?;
                // Names made again by a repair get new indexes.
                self.indexes.remove(&(Ns::Host, host_ifname.clone()));
                self.indexes
                    .remove(&(Ns::Sandbox(peer_ns.clone()), peer_ifname.clone()));
                let br = self.index_or_err(op, &Ns::Host, bridge)?;
                let nsfile =
                    File::open(peer_ns).map_err(|e| exec_err(op, format!("{peer_ns}: {e}")))?;
                // (The sandbox end's IPv6 is decided by the namespace's defaults, see
                // `netns::create` and the plan's sysctl for IPv6 endpoints.)
                let _ = peer_ipv6;
                let peer = LinkMessageBuilder::<LinkUnspec>::new()
                    .name(peer_ifname.clone())
                    .mtu(*mtu)
                    .address(peer_mac.to_vec())
                    .setns_by_fd(nsfile.as_raw_fd())
                    .append_extra_attribute(LinkAttribute::NumTxQueues(1))
                    .append_extra_attribute(LinkAttribute::NumRxQueues(1))
                    .build();
                // Made down, and brought up with its port options below: in between, IPv6
                // is turned off on the host end.
                let msg =
                    LinkMessageBuilder::<rtnetlink::LinkVeth>::new_with_info_kind(InfoKind::Veth)
                        .name(host_ifname.clone())
                        .mtu(*mtu)
                        .controller(br)
                        // One queue each way, said rather than defaulted: a veth is made
                        // with a queue per possible CPU and then cut down to one real queue,
                        // and that cut (per end) waits for an expedited RCU grace period
                        // (`netif_set_real_num_tx_queues`), 0.5-2 ms of each attach here.
                        // What the device ends up with is the same: one real queue.
                        .append_extra_attribute(LinkAttribute::NumTxQueues(1))
                        .append_extra_attribute(LinkAttribute::NumRxQueues(1))
                        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
                        .build();
                let made = self.rt.block_on(h.link().add(msg).execute());
                drop(nsfile);
                made.map_err(|e| port_err(op, bridge, &e))?;
                // A bridge port needs no IPv6 of its own. With it, coming up added a
                // multicast route per port to the host's IPv6 table, and each later state
                // change of a port walked that whole table (`rt6_sync_down_dev`): an attach
                // cost O(ports) (bench/README.md). Without IPv6 in the kernel the file does
                // not exist; a failure only costs that time again, so it is not an error.
                let _ = sysctl::write(&format!("net/ipv6/conf/{host_ifname}/disable_ipv6"), "1");
                // An attach's last sysctl: its procfs instance goes now, while the rest of
                // the attach runs, rather than at the process's exit (see `release`).
                sysctl::release();
                // The port's options go by name (no lookup of the new interface's index).
                let port = port_options_msg(
                    LinkUnspec::new_with_name(host_ifname).up(),
                    alias,
                    *isolated,
                );
                let options = self.rt.block_on(h.link().set_port(port).execute());
                options.map_err(|e| {
                    // Made but not tagged: take it away again (by its index), or nothing
                    // would know it is weft's.
                    if let Ok(Some(idx)) = self.link_index(&Ns::Host, host_ifname) {
                        let _ = self.rt.block_on(h.link().del(idx).execute());
                        self.indexes.remove(&(Ns::Host, host_ifname.clone()));
                    }
                    fail(e)
                })
            }
            Op::SetPort {
                ifname,
                bridge,
                isolated,
                alias,
            } => {
                let h = self.handle(&Ns::Host).map_err(|e| exec_err(op, e))?;
                // Fresh indexes: the bridge may just have been made again.
                self.indexes.remove(&(Ns::Host, bridge.clone()));
                self.indexes.remove(&(Ns::Host, ifname.clone()));
                let br = self.index_or_err(op, &Ns::Host, bridge)?;
                let idx = self.index_or_err(op, &Ns::Host, ifname)?;
                // Port options need the port enslaved first (the kernel takes them from the
                // current master's driver).
                let msg = LinkUnspec::new_with_index(idx).controller(br).up().build();
                self.rt
                    .block_on(h.link().set(msg).execute())
                    .map_err(|e| port_err(op, bridge, &e))?;
                self.port_options(&h, idx, alias, *isolated).map_err(fail)
            }
            Op::DeleteAddress { ns, ifname, addr } => {
                let h = self.handle(ns).map_err(|e| exec_err(op, e))?;
                let idx = self.index_or_err(op, ns, ifname)?;
                let found = self.rt.block_on(async {
                    h.address()
                        .get()
                        .set_link_index_filter(idx)
                        .set_address_filter(addr.addr())
                        .set_prefix_length_filter(addr.prefix_len())
                        .execute()
                        .try_next()
                        .await
                });
                match found {
                    Ok(Some(msg)) => match self.rt.block_on(h.address().del(msg).execute()) {
                        Ok(()) => Ok(()),
                        Err(e) if errno_of(&e) == Some(libc::EADDRNOTAVAIL) => Ok(()),
                        Err(e) => Err(fail(e)),
                    },
                    Ok(None) => Ok(()),
                    Err(e) => Err(fail(e)),
                }
            }
            Op::AddDefaultRoute { ns, gateway } => {
                let h = self.handle(ns).map_err(|e| exec_err(op, e))?;
                let msg = match gateway {
                    IpAddr::V4(g) => RouteMessageBuilder::<std::net::Ipv4Addr>::new()
                        .gateway(*g)
                        .build(),
                    IpAddr::V6(g) => RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                        .gateway(*g)
                        .build(),
                };
                match self.rt.block_on(h.route().add(msg).execute()) {
                    Ok(()) => Ok(()),
                    Err(e) if errno_of(&e) == Some(libc::EEXIST) => Ok(()),
                    Err(e) => Err(fail(e)),
                }
            }
            Op::Announce { bridge, mac, addrs } => {
                self.index_or_err(op, &Ns::Host, bridge)?;
                if !announce::send_detached(bridge, *mac, addrs) {
                    for a in addrs {
                        announce::send(bridge, *mac, *a)
                            .map_err(|e| exec_err(op, e.to_string()))?;
                    }
                }
                // What the host itself believes is set by the plan's permanent entry that
                // follows (Op::AddNeighbour), not left to a frame.
                Ok(())
            }
            Op::AddNeighbour {
                ns,
                ifname,
                ip,
                mac,
            } => {
                let h = self.handle(ns).map_err(|e| exec_err(op, e))?;
                let idx = self.index_or_err(op, ns, ifname)?;
                self.rt
                    .block_on(
                        h.neighbours()
                            .add(idx, *ip)
                            .link_layer_address(mac)
                            .state(NeighbourState::Permanent)
                            .replace()
                            .execute(),
                    )
                    .map_err(fail)
            }
            Op::DeleteNeighbour { ns, ifname, ip } => {
                if let Ns::Sandbox(p) = ns {
                    if !Path::new(p).exists() {
                        return Ok(());
                    }
                }
                let h = self.handle(ns).map_err(|e| exec_err(op, e))?;
                // The interface gone (a bridge deleted) took its entries with it.
                let Some(idx) = self.link_index(ns, ifname).map_err(|e| exec_err(op, e))? else {
                    return Ok(());
                };
                let mut msg = NeighbourMessage::default();
                msg.header.ifindex = idx;
                msg.header.family = match ip {
                    IpAddr::V4(_) => AddressFamily::Inet,
                    IpAddr::V6(_) => AddressFamily::Inet6,
                };
                msg.attributes
                    .push(NeighbourAttribute::Destination(match ip {
                        IpAddr::V4(a) => NeighbourAddress::Inet(*a),
                        IpAddr::V6(a) => NeighbourAddress::Inet6(*a),
                    }));
                match self.rt.block_on(h.neighbours().del(msg).execute()) {
                    Ok(()) => Ok(()),
                    Err(e) if matches!(errno_of(&e), Some(libc::ENOENT) | Some(libc::ENODEV)) => {
                        Ok(())
                    }
                    Err(e) => Err(fail(e)),
                }
            }
            Op::DeleteLink { ns, ifname } => {
                if let Ns::Sandbox(p) = ns {
                    // The namespace may already be gone (sandbox removed): so is the link.
                    if !Path::new(p).exists() {
                        return Ok(());
                    }
                }
                let h = self.handle(ns).map_err(|e| exec_err(op, e))?;
                let Some(link) = self.get_link(&h, ifname).map_err(fail)? else {
                    return Ok(());
                };
                // In the host namespace weft deletes only what it tagged as its own: a bridge
                // named by --bridge-name may be the user's.
                if *ns == Ns::Host && !is_weft_link(&link) {
                    return Ok(());
                }
                let idx = link.header.index;
                self.indexes.remove(&(ns.clone(), ifname.clone()));
                match self.rt.block_on(h.link().del(idx).execute()) {
                    Ok(()) => Ok(()),
                    Err(e) if matches!(errno_of(&e), Some(libc::ENODEV) | Some(libc::ENOENT)) => {
                        Ok(())
                    }
                    Err(e) => Err(fail(e)),
                }
            }
            Op::CreateVxlan {
                name,
                vni,
                local,
                port,
                mtu,
                bridge,
                alias,
            } => self.create_vxlan(op, name, *vni, *local, *port, *mtu, bridge, alias),
            Op::AddFdb { ifname, mac, dst } => self.add_fdb(op, ifname, *mac, *dst),
            Op::DeleteFdb { ifname, mac, dst } => self.delete_fdb(op, ifname, *mac, *dst),
        }
    }

    /// One request for a bridge port's tag, IPv6 mode and port options. Tagged as weft's, and
    /// without an IPv6 link-local address: a bridge port needs none, and its router
    /// solicitations and MLD reports would flood every port of the bridge on every attach.
    /// Hairpin: a sandbox reaching its own published port through the host address is DNAT'd
    /// back to itself; br_netfilter then bridges the frame out of the port it came in on, which
    /// the bridge only allows with hairpin mode.
    fn port_options(
        &mut self,
        h: &Handle,
        idx: u32,
        alias: &str,
        isolated: bool,
    ) -> Result<(), rtnetlink::Error> {
        let msg = port_options_msg(LinkUnspec::new_with_index(idx), alias, isolated);
        self.rt.block_on(h.link().set_port(msg).execute())
    }

    /// Tags a link as weft's; `no_ipv6` also keeps it from making an IPv6 link-local address
    /// (and from sending router solicitations and MLD reports to every bridge port).
    fn tag(
        &mut self,
        op: &Op,
        h: &Handle,
        idx: u32,
        alias: &str,
        no_ipv6: bool,
    ) -> Result<(), ExecError> {
        let mut msg = LinkUnspec::new_with_index(idx).alias(alias.to_string());
        if no_ipv6 {
            msg =
                msg.append_extra_attribute(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(
                    vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::None)],
                )]));
        }
        let msg = msg.build();
        self.rt
            .block_on(h.link().set(msg).execute())
            .map_err(|e| exec_err(op, describe(&e)))
    }
}

/// The request of [`KernelExecutor::port_options`] for the link `link` names (by index or
/// by name).
fn port_options_msg(
    link: LinkMessageBuilder<LinkUnspec>,
    alias: &str,
    isolated: bool,
) -> LinkMessage {
    let port = vec![
        InfoBridgePort::HairpinMode(true),
        InfoBridgePort::Isolated(isolated),
        // Frames to the IEEE link-local group addresses are forwarded (through the port
        // guard), not passed up through this port to the host's stack.
        InfoBridgePort::GroupFwdMask(PORT_GROUP_FWD_MASK),
    ];
    link.alias(alias.to_string())
        .append_extra_attribute(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(
            vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::None)],
        )]))
        .set_port_kind(InfoPortKind::Bridge)
        .set_port_data(InfoPortData::BridgePort(port))
        .build()
}

/// Whether a link carries a `weft:` alias (of any instance).
fn is_weft_link(m: &LinkMessage) -> bool {
    m.attributes
        .iter()
        .any(|a| matches!(a, LinkAttribute::IfAlias(s) if s.starts_with("weft:")))
}

impl Executor for KernelExecutor {
    fn apply(&mut self, op: &Op) -> Result<(), ExecError> {
        if self.crash_after == Some(self.applied) {
            // SAFETY: plain system calls; this is the test hook's whole point.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
        self.applied += 1;
        let phase = match op {
            Op::CreateNetns { .. } | Op::DeleteNetns { .. } => "netns",
            Op::FirewallAdd(_)
            | Op::FirewallRemove(_)
            | Op::FirewallAttach { .. }
            | Op::FirewallDetach { .. } => "nftables",
            Op::ForgetConnections(_) => "conntrack",
            Op::Announce { .. } => "announce",
            Op::Sysctl { .. } => "sysctl",
            Op::CreateVeth { .. } => "netlink-veth",
            Op::AddAddress { .. } => "netlink-address",
            Op::LinkUp { .. } => "netlink-up",
            Op::AddDefaultRoute { .. } => "netlink-route",
            Op::AddNeighbour { .. } | Op::DeleteNeighbour { .. } => "netlink-neigh",
            Op::CreateVxlan { .. } => "netlink-vxlan",
            Op::AddFdb { .. } | Op::DeleteFdb { .. } => "netlink-fdb",
            _ => "netlink",
        };
        let start = std::time::Instant::now();
        let described = || op.to_string();
        let res = match &self.fail_op {
            Some(prefix) if described().starts_with(prefix.as_str()) => {
                Err(exec_err(op, format!("failed on purpose ({FAIL_ENV})")))
            }
            _ => self.run(op),
        };
        crate::timing::record(phase, start.elapsed());
        if let Some(prefixes) = &self.slow_op {
            if prefixes.split('|').any(|p| described().starts_with(p)) {
                std::thread::sleep(SLOW_PAUSE);
            }
        }
        res
    }
}
