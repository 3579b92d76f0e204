//! Sandbox lifecycle against the real kernel: run in the foreground and detached, exec,
//! connect and disconnect while running, stop, rm, host and none modes.

mod common;

use std::time::Duration;

use common::{weft_bin, Host};

fn interfaces(h: &Host, sandbox: &str) -> Vec<String> {
    h.interfaces(sandbox)
}

#[test]
fn foreground_run_passes_exit_code_and_leaves_nothing() {
    let h = Host::new("fg");
    h.weft_ok(&["network", "create", "n"]);
    let out = h.weft(&[
        "run",
        "--network",
        "n",
        "--name",
        "once",
        "--",
        "sh",
        "-c",
        "exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7));
    let ps = h.json(&["ps", "-a"]);
    assert_eq!(ps.as_array().unwrap().len(), 0, "{ps}");
    let netns_dir = h.run_dir().join("netns");
    let left: Vec<_> = std::fs::read_dir(&netns_dir).unwrap().collect();
    assert!(left.is_empty(), "namespace handles left: {left:?}");
    // The kernel destroys the namespace, and the veth with it, asynchronously.
    let mut links = String::new();
    for _ in 0..100 {
        links = h.ns.ip(&["-o", "link", "show"]);
        if !links.contains(": wv") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!links.contains(": wv"), "veth left on the host: {links}");
}

#[test]
fn foreground_run_sees_its_network_hostname_and_hosts_file() {
    let h = Host::new("fgv");
    h.weft_ok(&["network", "create", "n", "--subnet", "10.130.0.0/24"]);
    let out = h.weft_ok(&[
        "run",
        "--network",
        "n",
        "--ip",
        "10.130.0.9",
        "--hostname",
        "box1",
        "--",
        "sh",
        "-c",
        "hostname; cat /etc/hosts; cat /proc/net/route",
    ]);
    assert!(out.starts_with("box1\n"), "{out}");
    assert!(out.contains("10.130.0.9\tbox1"), "{out}");
    // Default route via the gateway 10.130.0.1 (0100820A little-endian).
    assert!(out.contains("eth0\t00000000\t0100820A"), "{out}");
}

#[test]
fn a_sandbox_s_hosts_and_resolv_conf_come_from_the_host_s_real_resolvers() {
    let h = Host::new("rsv");
    // Without weft's name resolution: the host's resolvers (tests/dns_plumbing.rs has the
    // networks with it).
    h.weft_ok(&[
        "network",
        "create",
        "n",
        "--subnet",
        "10.131.0.0/24",
        "--opt",
        "dns=false",
    ]);
    let files = |name: &str| {
        h.weft_ok(&[
            "run",
            "--network",
            "n",
            "--name",
            name,
            "--hostname",
            name,
            "--",
            "sh",
            "-c",
            "cat /etc/hosts; echo ---; cat /etc/resolv.conf",
        ])
    };
    // A host behind systemd-resolved's stub: 127.0.0.53 means nothing in the sandbox; its
    // upstream servers (and resolved's search list) are the host's real resolvers.
    h.resolv_conf("nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n");
    h.resolved_conf("nameserver 10.255.0.53\nnameserver fd00:53::1\nsearch corp.example\n");
    let out = files("box");
    let (hosts, conf) = out.split_once("---\n").unwrap();
    assert_eq!(
        conf, "nameserver 10.255.0.53\nnameserver fd00:53::1\nsearch corp.example\n",
        "{out}"
    );
    // The name is the hostname: once on its line.
    let own: Vec<&str> = hosts.lines().filter(|l| l.contains("box")).collect();
    assert_eq!(own.len(), 1, "{hosts}");
    assert!(
        own[0].starts_with("10.131.0.") && own[0].ends_with("\tbox"),
        "{hosts}"
    );
    // A local resolver that is not resolved's (dnsmasq, unbound on 127.0.0.1): its file is
    // what the host uses, loopback lines dropped; resolved's stale list is not read.
    h.resolv_conf("nameserver 127.0.0.1\nnameserver 192.0.2.53\nsearch lan\n");
    let out = files("box2");
    let (_, conf) = out.split_once("---\n").unwrap();
    assert_eq!(conf, "nameserver 192.0.2.53\nsearch lan\n", "{out}");
    // Only the stub and no upstream list: no nameserver is better than an unreachable one.
    h.resolv_conf("nameserver 127.0.0.53\n");
    std::fs::remove_file(h.dir.join("resolved.conf")).unwrap();
    let out = files("box3");
    let (_, conf) = out.split_once("---\n").unwrap();
    assert!(!conf.contains("nameserver"), "{out}");
}

#[test]
fn detached_run_keeps_running_then_stops_and_is_removed() {
    let h = Host::new("det");
    h.weft_ok(&["network", "create", "n"]);
    let id = h.weft_ok(&[
        "run",
        "-d",
        "--name",
        "bg",
        "--network",
        "n",
        "--",
        "sleep",
        "600",
    ]);
    assert_eq!(id.trim().len(), 64);
    let v = h.json(&["inspect", "bg"]);
    assert_eq!(v[0]["status"], "running");
    let pid = v[0]["pid"].as_u64().unwrap();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert_eq!(h.json(&["ps"]).as_array().unwrap().len(), 1);

    let err = h.weft_err(1, &["rm", "bg"]);
    assert!(err.contains("is running"), "{err}");

    h.weft_ok(&["stop", "-t", "5", "bg"]);
    let v = h.json(&["inspect", "bg"]);
    assert_eq!(v[0]["status"], "exited");
    assert_eq!(v[0]["pid"], serde_json::Value::Null);
    assert!(h.json(&["ps"]).as_array().unwrap().is_empty());
    assert_eq!(h.json(&["ps", "-a"]).as_array().unwrap().len(), 1);
    h.weft_ok(&["rm", "bg"]);
    assert!(h.json(&["ps", "-a"]).as_array().unwrap().is_empty());
}

#[test]
fn detached_run_with_rm_cleans_up_when_the_command_exits() {
    let h = Host::new("drm");
    h.weft_ok(&["network", "create", "n"]);
    h.weft_ok(&[
        "run",
        "-d",
        "--rm",
        "--name",
        "short",
        "--network",
        "n",
        "--",
        "sleep",
        "0.2",
    ]);
    let mut gone = false;
    for _ in 0..100 {
        if h.json(&["ps", "-a"]).as_array().unwrap().is_empty() {
            gone = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(gone, "sandbox not removed after its command exited");
    let net = h.json(&["network", "inspect", "n"]);
    assert!(net[0]["endpoints"].as_array().unwrap().is_empty(), "{net}");
}

#[test]
fn connect_and_disconnect_while_running() {
    let h = Host::new("conn");
    h.weft_ok(&["network", "create", "one"]);
    h.weft_ok(&["network", "create", "two"]);
    h.sleeper("a", &["--network", "one"]);
    h.sleeper("b", &["--network", "two"]);
    let b_ip = h.ip_of("b", 0);
    assert!(!h.pings("a", &b_ip), "a must not reach b before connecting");
    assert_eq!(interfaces(&h, "a"), vec!["lo", "eth0"]);

    let out = h.weft_ok(&["network", "connect", "two", "a"]);
    assert!(out.starts_with("eth1 "), "{out}");
    let mut ifs = interfaces(&h, "a");
    ifs.sort();
    assert_eq!(ifs, vec!["eth0", "eth1", "lo"]);
    assert!(h.pings("a", &b_ip), "a reaches b once connected to two");
    let v = h.json(&["inspect", "a"]);
    assert_eq!(v[0]["networks"][1]["network"], "two");
    assert_eq!(v[0]["networks"][1]["interface"], "eth1");

    h.weft_ok(&["network", "disconnect", "two", "a"]);
    assert_eq!(interfaces(&h, "a"), vec!["lo", "eth0"]);
    assert!(
        !h.pings("a", &b_ip),
        "a must not reach b after disconnecting"
    );
    // Still running throughout.
    assert_eq!(h.json(&["inspect", "a"])[0]["status"], "running");
    let err = h.weft_err(1, &["network", "disconnect", "two", "a"]);
    assert!(err.contains("not connected"), "{err}");

    // Leaving the first network hands the default route to the next one.
    h.weft_ok(&["network", "connect", "two", "a"]);
    h.weft_ok(&["network", "disconnect", "one", "a"]);
    let routes = h.weft_ok(&["exec", "a", "--", "cat", "/proc/net/route"]);
    assert!(
        routes.lines().any(|l| l.starts_with("eth1\t00000000\t")),
        "no default route via the remaining network: {routes}"
    );
}

#[test]
fn create_without_process_then_exec() {
    let h = Host::new("cre");
    h.weft_ok(&["network", "create", "n", "--subnet", "10.131.0.0/24"]);
    h.weft_ok(&["create", "--name", "idle", "--network", "n"]);
    assert_eq!(h.json(&["inspect", "idle"])[0]["status"], "created");
    let out = h.weft_ok(&["exec", "idle", "--", "cat", "/proc/net/fib_trie"]);
    assert!(out.contains("10.131.0.2"), "{out}");
    let out = h.weft(&["exec", "idle", "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn none_mode_has_only_loopback_and_host_mode_shares_the_host() {
    let h = Host::new("modes");
    h.ns.ip(&[
        "link",
        "add",
        "hostonly0",
        "type",
        "veth",
        "peer",
        "name",
        "hostonly1",
    ]);
    let none = h.weft_ok(&["run", "--network", "none", "--", "cat", "/proc/net/dev"]);
    let ifs: Vec<&str> = none
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(ifs, vec!["lo"]);
    let host = h.weft_ok(&["run", "--network", "host", "--", "cat", "/proc/net/dev"]);
    assert!(host.contains("hostonly0"), "{host}");
    let err = h.weft_err(
        125,
        &[
            "run",
            "--network",
            "host",
            "--network",
            "none",
            "--",
            "true",
        ],
    );
    assert!(err.contains("cannot be combined"), "{err}");
}

#[test]
fn default_network_is_created_on_first_use() {
    let h = Host::new("dflt");
    h.weft_ok(&["run", "--", "true"]);
    let nets = h.json(&["network", "ls"]);
    assert_eq!(nets[0]["name"], "weft");
    assert_eq!(nets[0]["bridge"], "weft0");
    let link = h.ns.ip(&["link", "show", "weft0"]);
    assert!(link.contains("weft0"));
}

#[test]
fn network_rm_refuses_attached_sandboxes_unless_forced() {
    let h = Host::new("nrm");
    h.weft_ok(&["network", "create", "n"]);
    h.sleeper("a", &["--network", "n"]);
    let err = h.weft_err(1, &["network", "rm", "n"]);
    assert!(err.contains("has sandboxes attached (a)"), "{err}");
    h.weft_ok(&["network", "rm", "--force", "n"]);
    assert!(h.json(&["network", "ls"]).as_array().unwrap().is_empty());
    assert!(h.json(&["inspect", "a"])[0]["networks"]
        .as_array()
        .unwrap()
        .is_empty());
    let _ = weft_bin();
}

#[test]
fn ipv6_network_gives_both_families() {
    let h = Host::new("v6");
    h.weft_ok(&[
        "network",
        "create",
        "dual",
        "--ipv6",
        "--subnet",
        "10.132.0.0/24",
        "--subnet",
        "fd00:132::/64",
    ]);
    h.sleeper("a", &["--network", "dual"]);
    h.sleeper("b", &["--network", "dual"]);
    let v = h.json(&["inspect", "b"]);
    let b6 = v[0]["networks"][0]["ipv6"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    assert!(b6.starts_with("fd00:132::"), "{b6}");
    assert!(h.pings("a", &b6), "a cannot reach b over IPv6");
    assert!(
        h.pings("a", "fd00:132::1"),
        "a cannot reach the IPv6 gateway"
    );
}

#[test]
fn rm_removes_every_name_it_can_and_reports_the_rest() {
    let h = Host::new("rmm");
    h.weft_ok(&["network", "create", "n"]);
    h.weft_ok(&["create", "--name", "a", "--network", "n"]);
    h.weft_ok(&["create", "--name", "b", "--network", "n"]);
    let out = h.weft(&["rm", "a", "nosuch", "b"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a\nb\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"nosuch\""));
    assert!(h.json(&["ps", "-a"]).as_array().unwrap().is_empty());
}

#[test]
fn json_documents_have_the_documented_fields() {
    let h = Host::new("json");
    h.weft_ok(&[
        "network",
        "create",
        "n",
        "--subnet",
        "10.133.0.0/24",
        "--ip-range",
        "10.133.0.128/25",
        "--aux-address",
        "printer=10.133.0.130",
        "--label",
        "team=a",
        "--opt",
        "icc=true",
    ]);
    h.weft_ok(&[
        "create",
        "--name",
        "s",
        "--network",
        "n",
        "--alias",
        "web",
        "--label",
        "tier=front",
    ]);
    let n = &h.json(&["network", "inspect", "n"])[0];
    for key in [
        "name",
        "id",
        "driver",
        "internal",
        "ipv6",
        "mtu",
        "bridge",
        "subnets",
        "options",
        "labels",
        "allocation",
        "endpoints",
    ] {
        assert!(n.get(key).is_some(), "network inspect lacks {key}: {n}");
    }
    assert_eq!(n["subnets"][0]["subnet"], "10.133.0.0/24");
    assert_eq!(n["subnets"][0]["gateway"], "10.133.0.1");
    assert_eq!(n["subnets"][0]["ip_range"], "10.133.0.128/25");
    assert_eq!(n["labels"]["team"], "a");
    assert_eq!(n["options"]["icc"], "true");
    assert_eq!(
        n["allocation"],
        serde_json::Value::Null,
        "explicit subnets are not auto-allocated"
    );
    let ep = &n["endpoints"][0];
    for key in ["sandbox", "interface", "ipv4", "ipv6", "mac"] {
        assert!(ep.get(key).is_some(), "endpoint lacks {key}: {ep}");
    }
    // The range starts at .128 and .130 is reserved: the first two go to .128 and .129, the
    // third skips .130.
    assert_eq!(ep["ipv4"], "10.133.0.128/24");
    h.weft_ok(&["create", "--name", "t", "--network", "n"]);
    h.weft_ok(&["create", "--name", "u", "--network", "n"]);
    assert_eq!(
        h.ip_of("u", 0),
        "10.133.0.131",
        "the aux address was handed out"
    );

    let s = &h.json(&["inspect", "s"])[0];
    for key in ["name", "id", "pid", "netns", "networks", "labels", "ports"] {
        assert!(s.get(key).is_some(), "sandbox inspect lacks {key}: {s}");
    }
    assert_eq!(s["pid"], serde_json::Value::Null);
    assert_eq!(s["labels"]["tier"], "front");
    let net = &s["networks"][0];
    for key in [
        "network",
        "interface",
        "host_interface",
        "ipv4",
        "ipv6",
        "mac",
        "aliases",
    ] {
        assert!(net.get(key).is_some(), "sandbox network lacks {key}: {net}");
    }
    assert_eq!(net["aliases"], serde_json::json!(["web"]));
    assert_eq!(net["mac"], "02:42:0a:85:00:80");
    // ls and ps are arrays of the same documents.
    assert_eq!(h.json(&["network", "ls"])[0]["name"], "n");
    assert_eq!(h.json(&["ps", "-a"]).as_array().unwrap().len(), 3);
}

#[test]
fn network_prune_removes_only_unused_networks() {
    let h = Host::new("prune");
    h.weft_ok(&["network", "create", "used"]);
    h.weft_ok(&["network", "create", "idle"]);
    h.weft_ok(&["create", "--name", "s", "--network", "used"]);
    let out = h.weft_ok(&["network", "prune", "-f"]);
    assert_eq!(out, "idle\n");
    let names: Vec<String> = h
        .json(&["network", "ls"])
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, vec!["used"]);
}

#[test]
fn a_foreground_run_passes_signals_to_its_command() {
    let h = Host::new("sig");
    h.weft_ok(&["network", "create", "n"]);
    let mut child = h
        .weft_cmd(&[
            "run",
            "--network",
            "n",
            "--",
            "sh",
            "-c",
            "trap 'exit 42' TERM; echo ready; sleep 5 & wait",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line, "ready\n");
    // The pid we started is nsenter, which execs weft in place: signal it.
    // SAFETY: kill(2) on a pid this test started.
    unsafe {
        libc::kill(i32::try_from(child.id()).unwrap(), libc::SIGTERM);
    }
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(42),
        "the command's trap should decide the exit code"
    );
    assert!(
        h.json(&["ps", "-a"]).as_array().unwrap().is_empty(),
        "the sandbox is torn down"
    );
}
