//! The multi-host overlay harness: an underlay (a bridge in a namespace of its own) that
//! "hosts" plug into, and cluster agents started by a test, killed when dropped.

use std::cell::Cell;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Stdio};

use super::{Host, Netns};

/// The underlay: a bridge in its own namespace; [`Underlay::plug`] connects a namespace.
pub struct Underlay {
    /// Its namespace, holding `br0`.
    pub ns: Netns,
    ports: Cell<u32>,
}

impl Underlay {
    /// A new underlay in namespace `prefix-…`.
    pub fn new(prefix: &str) -> Self {
        let ns = Netns::new(prefix);
        ns.ip(&["link", "add", "br0", "type", "bridge"]);
        ns.ip(&["link", "set", "br0", "up"]);
        Underlay {
            ns,
            ports: Cell::new(0),
        }
    }

    /// Gives `other` an `eth0` with `addr` (CIDR) on the underlay.
    pub fn plug(&self, other: &Netns, addr: &str) {
        let n = self.ports.get();
        self.ports.set(n + 1);
        let port = format!("p{n}");
        self.ns.ip(&[
            "link",
            "add",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &other.name,
        ]);
        self.ns.ip(&["link", "set", &port, "master", "br0", "up"]);
        other.ip(&["addr", "add", addr, "dev", "eth0"]);
        other.ip(&["link", "set", "eth0", "up"]);
    }
}

/// `weft daemon --stay` with a cluster, started by the test, its log in the host's
/// directory; killed (if still running) when dropped.
pub struct Agent {
    child: Option<Child>,
    log: PathBuf,
}

impl Agent {
    /// Starts `h`'s agent on etcd `etcd`, advertising `ip` as node `node` with a lease of
    /// `ttl` seconds, and waits until it answers.
    pub fn start(h: &Host, etcd: &str, ip: &str, node: &str, ttl: u64) -> Agent {
        // The state store made first, by one process: the agent and the status polls below
        // would otherwise race to create it.
        h.weft_ok(&["network", "ls"]);
        let log = h.dir.join(format!("agent-{node}.log"));
        let ttl = ttl.to_string();
        let child = h
            .weft_cmd(&[
                "daemon",
                "--stay",
                "--etcd",
                etcd,
                "--advertise",
                ip,
                "--node",
                node,
                "--lease-ttl",
                &ttl,
            ])
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let a = Agent {
            child: Some(child),
            log,
        };
        let up = super::wait_for(10, || h.weft(&["daemon", "status"]).status.success());
        assert!(up, "agent {node} did not start: {}", a.log());
        a
    }

    /// No agent (a placeholder while one is replaced).
    pub fn none() -> Agent {
        Agent {
            child: None,
            log: PathBuf::new(),
        }
    }

    /// What the agent logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the agent (SIGKILL) and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Whether interface `name` exists in `h`'s namespace.
pub fn has_link(h: &Host, name: &str) -> bool {
    h.ns.cmd("ip", &["link", "show", name])
        .output()
        .is_ok_and(|o| o.status.success())
}
