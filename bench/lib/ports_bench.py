#!/usr/bin/env python3
"""bench/ports: published-port data plane, connection rate and publish cost of weft vs its
peers (python3 stdlib only; iperf3, socat, netavark and the CNI plugins as tools).

Topology (every namespace is made by this run and deleted at its end, also on error/Ctrl-C;
the root network namespace is never changed and no traffic leaves these namespaces):

  (a) a-veth       wpb-P-a1 198.18.3.1 --veth-- 198.18.3.2 wpb-P-a2          the ceiling
  weft:  host namespace wpb-P-wh, network pbw 198.18.20.0/24 (bridge made by weft),
         sandboxes srv (iperf3 -s, -p 5201:5201), rsrv (connection server, -p 5202:5202),
         cli (sleep); client namespace wpb-P-wc 198.18.10.2 --veth-- 198.18.10.1 ext0 in wpb-P-wh
  (b) b-weft       `weft exec cli -- iperf3 -c <srv>`: sandbox -> bridge -> sandbox
  (c) c-weft       wpb-P-wc -> 198.18.10.1:5201 -> weft DNAT -> bridge -> srv:5201
  (d) d-proxy      wpb-P-wc -> 198.18.10.1:5301 -> socat (fork) in wpb-P-wh -> srv:5201
                   (what Docker's userland proxy, docker-proxy, does)
  (e) e-netavark   own host wpb-P-nh + client wpb-P-nc, same 198.18.10.0/24 link; container
                   namespace wpb-P-nv 198.18.21.2 attached by `netavark setup` with
                   port_mappings 5201->5201, 5202->5202 (iptables in wpb-P-nh)
      e-cni        own host wpb-P-ch + client wpb-P-cc; container wpb-P-cv 198.18.22.2 by the
                   CNI bridge plugin (host-local) + portmap (5201, 5202; iptables in wpb-P-ch)
  diag b-weft-nobrnf   like (b) with net.bridge.bridge-nf-call-iptables=0 set in wpb-P-wh only
                   (shows what br_netfilter costs the bridged path; not a target)

Throughput: iperf3 -t T, one TCP stream, client -> server; repeats interleaved across paths
(path order rotates every repeat). Connection rate: ports_conn.py client (connect, recv 1
byte, close, for S seconds) against ports_conn.py server in the sandbox / container, through
the published port (weft, netavark, CNI) or socat (proxy). Publish cost: in a fresh weft host
namespace wpb-P-ph, time `weft create --name xK --network pbp -p PORT:80` (and, alternating,
the same create without -p) with 0, then 1000 (one sandbox `-p 20000-20999:20000-20999`),
then 0 ports published again; ratio = median at 1000 / median at 0.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import attach_bench as ab  # noqa: E402  (helpers only: setns, mounts, table, build, idle wait)
import nsbench  # noqa: E402  (resources, clean-up, root check, lock, iperf3, CPU readings)

BENCH = os.path.dirname(HERE)
REPO = os.path.dirname(BENCH)
KIT = nsbench.Kit("ports", "wpb-", "ports_bench.py")
PID = KIT.pid
TMP_PREFIX = KIT.tmp_prefix
NETAVARK = os.environ.get("NETAVARK_BIN", "/usr/lib/podman/netavark")
CNI_DIR = os.environ.get("CNI_PLUGIN_DIR", "/usr/lib/cni")
CONN = os.path.join(HERE, "ports_conn.py")
PY = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
HOST_IP, CLIENT_IP = "198.18.10.1", "198.18.10.2"
CONN_SOURCES = 12   # connection-rate repeats that get a fresh client address


def conn_source(rep):
    """The client address of connection-rate repeat `rep`. Each repeat makes ~20-25k
    connections; reusing the same (client address, port) within conntrack's TIME_WAIT
    timeout (120 s) collapses the rate through every DNAT path (weft, netavark and CNI
    alike: ~10 ms per connection once the client's ports wrap around), so every repeat
    connects from a fresh address: 198.18.10.11, .12, ..."""
    return "198.18.10.%d" % (10 + (rep - 1) % CONN_SOURCES + 1)


PATHS = {
    # id: (label, what)
    "a-veth": ("(a)", "ns -> ns over one direct veth pair (ceiling)"),
    "b-weft": ("(b)", "sandbox -> sandbox, same weft bridge"),
    "c-weft": ("(c)", "client ns -> host:5201 -> weft DNAT -> sandbox"),
    "d-proxy": ("(d)", "client ns -> host:5301 -> socat (userland proxy) -> sandbox"),
    "e-netavark": ("(e)", "client ns -> host:5201 -> netavark DNAT (iptables) -> container"),
    "e-cni": ("(e)", "client ns -> host:5201 -> CNI portmap DNAT (iptables) -> container"),
    "b-weft-nobrnf": ("diag", "(b) with bridge-nf-call-iptables=0 in weft's host ns"),
}
REFERENCE = {"b-weft": "a-veth", "c-weft": "b-weft", "d-proxy": "c-weft", "e-netavark": "c-weft",
             "e-cni": "c-weft", "b-weft-nobrnf": "b-weft"}
CONN_TARGETS = ["weft", "netavark", "cni", "proxy"]


log = KIT.log
run = ab.run
must = ab.must
pct = ab.pct
table = ab.table
nsx = nsbench.nsx
wait_listen = nsbench.wait_listen
iperf_once = nsbench.iperf_once
proc_cpu = nsbench.proc_cpu


# --------------------------------------------------------------------------- resources
class Resources(nsbench.Resources):
    """What nsbench.Resources keeps, plus the weft hosts (their sandboxes and networks removed
    with weft itself) and the peers' attachments, torn down once the servers are stopped;
    every process started records its PID as one of ours for the CPU accounting."""

    def __init__(self):
        super().__init__(KIT)
        self.weft_hosts = []   # WeftHost
        self.peers = []        # objects with .teardown()

    def bg(self, name, ns, argv, env=None):
        p = super().bg(name, ns, argv, env)
        SERVER_PIDS.append(p.pid)
        return p

    def cleanup(self):
        try:
            ab.back_to_root()
        except OSError as e:
            log("could not return to the root namespace: %s" % e)
        self.stop_procs()
        for p in reversed(self.peers):
            try:
                p.teardown()
            except Exception as e:  # the namespaces go anyway
                log("teardown of %s: %s" % (p.name, e))
        self.peers = []
        for h in reversed(self.weft_hosts):
            try:
                h.teardown()
            except Exception as e:
                log("weft teardown in %s: %s" % (h.ns, e))
        self.weft_hosts = []
        super().cleanup()


RES = Resources()


def link_client(host_ns, client_ns):
    """veth ext0 (host, 198.18.10.1/24) <-> eth0 (client, 198.18.10.2/24), made inside the
    host namespace (nothing is ever created in the root namespace)."""
    must(["ip", "-n", host_ns, "link", "add", "ext0", "type", "veth", "peer", "name", "eth0", "netns", client_ns])
    must(["ip", "-n", host_ns, "addr", "add", HOST_IP + "/24", "dev", "ext0"])
    must(["ip", "-n", client_ns, "addr", "add", CLIENT_IP + "/24", "dev", "eth0"])
    must(["ip", "-n", host_ns, "link", "set", "ext0", "up"])
    must(["ip", "-n", client_ns, "link", "set", "eth0", "up"])
    # the client makes thousands of short connections: give it the widest port range, and
    # one extra source address per connection-rate repeat (see conn_source)
    must(nsx(client_ns) + ["sysctl", "-qw", "net.ipv4.ip_local_port_range=10000 65000"])
    for k in range(1, CONN_SOURCES + 1):
        must(["ip", "-n", client_ns, "addr", "add", "%s/24" % conn_source(k), "dev", "eth0"])


# --------------------------------------------------------------------------- weft
class WeftHost:
    def __init__(self, binary, tag):
        self.bin = binary
        self.name = "weft"
        self.ns = "wpb-%d-%sh" % (PID, tag)
        self.dir = os.path.join(RES.dir, "weft-" + tag)
        self.sandboxes = []
        self.networks = []
        self.env = ab.base_env()

    def base(self):
        return [self.bin, "--state-dir", self.dir + "/state", "--run-dir", self.dir + "/run",
                "--config", self.dir + "/weft.toml"]

    def argv(self, *args):
        return nsx(self.ns) + self.base() + list(args)

    def w(self, *args, check=True, timeout=120):
        p = run(self.argv(*args), env=self.env, timeout=timeout)
        if check and p.returncode != 0:
            raise RuntimeError("weft %s failed rc=%d: %s%s" % (" ".join(args), p.returncode,
                               p.stdout.decode(errors="replace")[-1500:], p.stderr.decode(errors="replace")[-1500:]))
        return p

    def start(self):
        os.makedirs(self.dir)
        with open(self.dir + "/weft.toml", "w") as f:
            f.write("")
        RES.add_ns(self.ns)
        RES.weft_hosts.append(self)

    def network(self, name, subnet):
        self.networks.append(name)
        self.w("network", "create", name, "--subnet", subnet)

    def run_d(self, name, network, publish, cmd):
        self.sandboxes.append(name)
        args = ["run", "-d", "--name", name, "--network", network]
        for p in publish:
            args += ["-p", p]
        self.w(*(args + ["--"] + cmd))
        return self.inspect(name)

    def inspect(self, name):
        return json.loads(self.w("--format", "json", "inspect", name).stdout)[0]

    def teardown(self):
        if not os.path.exists("/run/netns/" + self.ns):
            return
        ok = True
        # The host agent the first command started: stopped before the namespace goes.
        self.w("daemon", "stop", check=False)
        try:
            names = [s["name"] for s in json.loads(self.w("--format", "json", "ps", "-a").stdout)]
        except (ValueError, RuntimeError):
            names = list(self.sandboxes)
        for name in names:
            p = self.w("rm", "-f", name, check=False)
            if p.returncode != 0:
                ok = False
                log("weft rm -f %s: %s" % (name, p.stderr.decode(errors="replace").strip()))
        for n in self.networks:
            p = self.w("network", "rm", n, check=False)
            if p.returncode != 0:
                ok = False
                log("weft network rm %s: %s" % (n, p.stderr.decode(errors="replace").strip()))
        if not ok:
            self.w("gc", check=False)
        self.sandboxes, self.networks = [], []


def sandbox_ip(info):
    return info["networks"][0]["ipv4"].split("/")[0]


# --------------------------------------------------------------------------- peers
class NetavarkHost:
    name = "netavark"
    subnet, gateway, ip = "198.18.21.0/24", "198.18.21.1", "198.18.21.2"

    def __init__(self):
        self.ns, self.client, self.ctr = ("wpb-%d-%s" % (PID, x) for x in ("nh", "nc", "nv"))
        self.cfg = os.path.join(RES.dir, "netavark")
        self.attached = False

    def options(self):
        return {
            "container_id": "%064x" % 0xB0001,
            "container_name": "wpb-nv",
            "port_mappings": [{"host_ip": "", "container_port": p, "host_port": p, "range": 1,
                               "protocol": "tcp"} for p in (5201, 5202)],
            "networks": {"wpbnet": {"static_ips": [self.ip], "interface_name": "eth0"}},
            "network_info": {"wpbnet": {
                "name": "wpbnet", "id": "%064x" % 0xBEEF1, "driver": "bridge",
                "network_interface": "wpbnv0",
                "subnets": [{"subnet": self.subnet, "gateway": self.gateway}],
                "ipv6_enabled": False, "internal": False, "dns_enabled": False,
                "ipam_options": {"driver": "host-local"}}},
        }

    def _call(self, verb):
        return run(nsx(self.ns) + [NETAVARK, "--config", self.cfg, verb, "/run/netns/" + self.ctr],
                   input=json.dumps(self.options()).encode(), env=ab.base_env(), timeout=60)

    def start(self):
        os.makedirs(self.cfg)
        RES.add_ns(self.ns, self.client, self.ctr)
        RES.peers.append(self)
        link_client(self.ns, self.client)
        p = self._call("setup")
        if p.returncode != 0:
            raise RuntimeError("netavark setup failed: %s %s" % (p.stdout.decode(errors="replace"),
                                                                 p.stderr.decode(errors="replace")))
        self.attached = True

    def teardown(self):
        if self.attached and os.path.exists("/run/netns/" + self.ns):
            p = self._call("teardown")
            if p.returncode != 0:
                log("netavark teardown: %s" % p.stderr.decode(errors="replace").strip())
        self.attached = False


class CniHost:
    name = "cni"
    subnet, gateway, ip = "198.18.22.0/24", "198.18.22.1", "198.18.22.2"

    def __init__(self):
        self.ns, self.client, self.ctr = ("wpb-%d-%s" % (PID, x) for x in ("ch", "cc", "cv"))
        self.bridge_conf = {
            "cniVersion": "1.0.0", "name": "wpbcni", "type": "bridge", "bridge": "wpbcni0",
            "isGateway": True, "ipMasq": True, "hairpinMode": True,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": self.subnet, "gateway": self.gateway}]],
                     "routes": [{"dst": "0.0.0.0/0"}], "dataDir": os.path.join(RES.dir, "cni-ipam")}}
        self.result = None
        self.portmapped = False

    def portmap_conf(self, prev):
        return {"cniVersion": "1.0.0", "name": "wpbcni", "type": "portmap",
                "capabilities": {"portMappings": True}, "snat": True,
                "runtimeConfig": {"portMappings": [{"hostPort": p, "containerPort": p, "protocol": "tcp"}
                                                   for p in (5201, 5202)]},
                "prevResult": prev}

    def _plugin(self, plugin, cmd, conf):
        e = ab.base_env()
        e.update(CNI_COMMAND=cmd, CNI_CONTAINERID="wpbcni0001", CNI_NETNS="/run/netns/" + self.ctr,
                 CNI_IFNAME="eth0", CNI_PATH=CNI_DIR)
        return run(nsx(self.ns) + [os.path.join(CNI_DIR, plugin)], input=json.dumps(conf).encode(), env=e,
                   timeout=60)

    def start(self):
        RES.add_ns(self.ns, self.client, self.ctr)
        RES.peers.append(self)
        link_client(self.ns, self.client)
        p = self._plugin("bridge", "ADD", self.bridge_conf)
        if p.returncode != 0:
            raise RuntimeError("CNI bridge ADD failed: %s %s" % (p.stdout.decode(errors="replace"),
                                                                 p.stderr.decode(errors="replace")))
        self.result = json.loads(p.stdout)
        got = self.result["ips"][0]["address"].split("/")[0]
        if got != self.ip:
            raise RuntimeError("CNI host-local gave %s, expected %s" % (got, self.ip))
        p = self._plugin("portmap", "ADD", self.portmap_conf(self.result))
        if p.returncode != 0:
            raise RuntimeError("CNI portmap ADD failed: %s %s" % (p.stdout.decode(errors="replace"),
                                                                  p.stderr.decode(errors="replace")))
        self.portmapped = True

    def teardown(self):
        if self.result is None or not os.path.exists("/run/netns/" + self.ns):
            return
        if self.portmapped:
            p = self._plugin("portmap", "DEL", self.portmap_conf(self.result))
            if p.returncode != 0:
                log("CNI portmap DEL: %s" % p.stderr.decode(errors="replace").strip())
        bc = dict(self.bridge_conf)
        bc["prevResult"] = self.result
        p = self._plugin("bridge", "DEL", bc)
        if p.returncode != 0:
            log("CNI bridge DEL: %s" % p.stderr.decode(errors="replace").strip())
        self.result = None
        self.portmapped = False


# --------------------------------------------------------------------------- set-up
class Setup:
    """Builds every path and knows how to run its iperf3 client / connection client."""

    def __init__(self, a, weft_bin):
        self.a = a
        self.bin = weft_bin
        self.paths = {}     # path id -> argv of the iperf3 client (without -t/-J)
        self.conns = {}     # conn target -> argv prefix of the connection client
        self.pre = {}       # path id -> (before, after) callables
        self.info = {}

    def build(self, want_paths, want_conn):
        need = set(want_paths)
        conn = set(want_conn)
        if "a-veth" in need:
            a1, a2 = "wpb-%d-a1" % PID, "wpb-%d-a2" % PID
            RES.add_ns(a1, a2)
            must(["ip", "-n", a1, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", a2])
            must(["ip", "-n", a1, "addr", "add", "198.18.3.1/24", "dev", "eth0"])
            must(["ip", "-n", a2, "addr", "add", "198.18.3.2/24", "dev", "eth0"])
            must(["ip", "-n", a1, "link", "set", "eth0", "up"])
            must(["ip", "-n", a2, "link", "set", "eth0", "up"])
            p = RES.bg("iperf-a", a2, ["iperf3", "-s", "-p", "5201"])
            wait_listen("/run/netns/" + a2, 5201, p)
            self.paths["a-veth"] = nsx(a1) + ["iperf3", "-c", "198.18.3.2", "-p", "5201"]

        weft_paths = {"b-weft", "c-weft", "d-proxy", "b-weft-nobrnf"} & need
        if weft_paths or conn & {"weft", "proxy"}:
            h = WeftHost(self.bin, "w")
            h.start()
            wc = "wpb-%d-wc" % PID
            RES.add_ns(wc)
            link_client(h.ns, wc)
            h.network("pbw", "198.18.20.0/24")
            srv = h.run_d("srv", "pbw", ["5201:5201"], ["iperf3", "-s", "-p", "5201"])
            rsrv = h.run_d("rsrv", "pbw", ["5202:5202"], [PY, CONN, "server", "5202"])
            cli = h.run_d("cli", "pbw", [], ["sleep", "infinity"])
            srv_ip, rsrv_ip = sandbox_ip(srv), sandbox_ip(rsrv)
            SERVER_PIDS.extend(x["pid"] for x in (srv, rsrv) if x.get("pid"))
            wait_listen(srv["netns"], 5201)
            wait_listen(rsrv["netns"], 5202)
            ports = h.w("port", "srv").stdout.decode().strip()
            self.info["weft"] = {"host_ns": h.ns, "client_ns": wc, "srv": srv_ip, "rsrv": rsrv_ip,
                                 "cli": sandbox_ip(cli), "weft port srv": ports,
                                 "bridge_nf_call_iptables": read_sysctl(h.ns, "net.bridge.bridge-nf-call-iptables")}
            # userland proxy: socat in the host namespace, like docker-proxy
            p = RES.bg("socat-iperf", h.ns, ["socat", "TCP-LISTEN:5301,fork,reuseaddr,backlog=4096",
                                             "TCP:%s:5201" % srv_ip])
            wait_listen("/run/netns/" + h.ns, 5301, p)
            p = RES.bg("socat-conn", h.ns, ["socat", "TCP-LISTEN:5302,fork,reuseaddr,backlog=4096",
                                            "TCP:%s:5202" % rsrv_ip])
            wait_listen("/run/netns/" + h.ns, 5302, p)
            cli_iperf = h.argv("exec", "cli", "--", "iperf3", "-c", srv_ip, "-p", "5201")
            self.paths["b-weft"] = cli_iperf
            self.paths["b-weft-nobrnf"] = cli_iperf
            self.pre["b-weft-nobrnf"] = (lambda: set_brnf(h.ns, 0), lambda: set_brnf(h.ns, 1))
            self.paths["c-weft"] = nsx(wc) + ["iperf3", "-c", HOST_IP, "-p", "5201"]
            self.paths["d-proxy"] = nsx(wc) + ["iperf3", "-c", HOST_IP, "-p", "5301"]
            self.conns["weft"] = nsx(wc) + [PY, CONN, "client", HOST_IP, "5202"]
            self.conns["proxy"] = nsx(wc) + [PY, CONN, "client", HOST_IP, "5302"]

        for cls, key in ((NetavarkHost, "netavark"), (CniHost, "cni")):
            if "e-" + key in need or key in conn:
                peer = cls()
                peer.start()
                p = RES.bg("iperf-" + key, peer.ctr, ["iperf3", "-s", "-p", "5201"])
                wait_listen("/run/netns/" + peer.ctr, 5201, p)
                p = RES.bg("conn-" + key, peer.ctr, [PY, CONN, "server", "5202"])
                wait_listen("/run/netns/" + peer.ctr, 5202, p)
                self.paths["e-" + key] = nsx(peer.client) + ["iperf3", "-c", HOST_IP, "-p", "5201"]
                self.conns[key] = nsx(peer.client) + [PY, CONN, "client", HOST_IP, "5202"]
                self.info[key] = {"host_ns": peer.ns, "client_ns": peer.client, "container": peer.ctr,
                                  "container_ip": peer.ip,
                                  "iptables_rules": count_rules(peer.ns),
                                  "bridge_nf_call_iptables": read_sysctl(peer.ns, "net.bridge.bridge-nf-call-iptables")}


def read_sysctl(ns, key):
    p = run(nsx(ns) + ["sysctl", "-n", key])
    return p.stdout.decode().strip() if p.returncode == 0 else None


def set_brnf(ns, value):
    """bridge-nf-call-iptables is per network namespace (kernel >= 5.3): this changes weft's
    host namespace only. The root namespace's value is checked before and after the run."""
    must(nsx(ns) + ["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=%d" % value])
    must(nsx(ns) + ["sysctl", "-qw", "net.bridge.bridge-nf-call-ip6tables=%d" % value])


def count_rules(ns):
    p = run(nsx(ns) + ["iptables-save"])
    return sum(1 for l in p.stdout.decode(errors="replace").splitlines() if l.startswith("-A "))


# --------------------------------------------------------------------------- measuring
def conn_once(argv, secs):
    p = run(argv + ["--seconds", str(secs), "--json"], timeout=secs + 30)
    try:
        return json.loads(p.stdout)
    except ValueError:
        return {"error": (p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace"))[-400:]}


SERVER_PIDS = []   # iperf3 / connection servers / socat we started or weft started for us


def cpu_mark():
    """(wall, machine busy CPU s, CPU s of this process + waited children + our servers)."""
    t, busy, mine = ab.cpu_mark()
    return t, busy, mine + sum(proc_cpu(p) for p in SERVER_PIDS)


def others_during(m0):
    """cores used during the measurement by everything but the benchmark, its clients and
    its servers (softirq work runs mostly in our processes' context; kernel workers count
    as others)."""
    return round(ab.others_cores(m0, cpu_mark()), 2)


def idle_gate(limit):
    if limit <= 0:
        return None
    o, _w = ab.wait_idle(limit)
    return round(o, 2)


def measure_throughput(st, paths, reps, secs, wait_idle, results):
    # untimed warm-up: neighbour entries, conntrack, page cache of iperf3
    for pid in paths:
        r = iperf_once(st.paths[pid], 1)
        if "error" in r:
            raise RuntimeError("warm-up of %s failed: %s" % (pid, r["error"]))
    n = len(paths)
    for rep in range(1, reps + 1):
        k = (rep - 1) % n
        order = paths[k:] + paths[:k]
        for pid in order:
            others = idle_gate(wait_idle)
            before, after = st.pre.get(pid, (None, None))
            if before:
                before()
            try:
                t0 = time.time()
                m0 = cpu_mark()
                r = iperf_once(st.paths[pid], secs)
                r["others_cores_during"] = others_during(m0)
            finally:
                if after:
                    after()
            r.update(path=pid, rep=rep, others_cores_before=others, at=round(t0, 1),
                     loadavg=open("/proc/loadavg").read().split()[0])
            results.append(r)
            if "error" in r:
                log("rep %d %-14s iperf3 FAILED: %s" % (rep, pid, r["error"]))
            else:
                log("rep %d %-14s %6.2f Gbit/s  retr %-5s cpu host %.0f%% remote %.0f%%%s" % (
                    rep, pid, r["gbps"], r["retransmits"], r["cpu"].get("host_total", 0),
                    r["cpu"].get("remote_total", 0),
                    "" if r.get("others_cores_during", 0) < 0.3 else "  (NOISY: others used %.1f cores)" % r["others_cores_during"]))


def measure_conn(st, targets, reps, secs, wait_idle, results, same_source=False):
    for t in targets:
        r = conn_once(st.conns[t] + ["--bind", CLIENT_IP], 0.5)
        if "error" in r or not r.get("ok"):
            raise RuntimeError("connection warm-up of %s failed: %s" % (t, r))
    n = len(targets)
    for rep in range(1, reps + 1):
        k = (rep - 1) % n
        for t in targets[k:] + targets[:k]:
            others = idle_gate(wait_idle)
            m0 = cpu_mark()
            src = CLIENT_IP if same_source else conn_source(rep)
            r = conn_once(st.conns[t] + ["--bind", src], secs)
            r.update(target=t, rep=rep, source=src, others_cores_before=others,
                     others_cores_during=others_during(m0))
            results.append(r)
            if "error" in r:
                log("rep %d conn %-9s FAILED: %s" % (rep, t, r["error"]))
            else:
                log("rep %d conn %-9s %7.0f conn/s (%d ok, %d failed, p50 %.0f us, p99 %.0f us)%s" % (
                    rep, t, r["rate"], r["ok"], r["failed"], r["p50_us"], r["p99_us"],
                    "" if r.get("others_cores_during", 0) < 0.3 else "  (NOISY: others used %.1f cores)" %
                    r["others_cores_during"]))


def timed_weft(h, args, env):
    t0 = time.perf_counter()
    p = subprocess.run(h.base() + args, capture_output=True, env=env)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError("weft %s failed rc=%d: %s" % (" ".join(args), p.returncode,
                                                          p.stderr.decode(errors="replace")[-1500:]))
    return dt, ab.parse_timings(p.stderr)


def measure_publish(weft_bin, samples, big, cycles, wait_idle):
    """Time `weft create -p P:80` (and the same create without -p) with 0, `big`, then 0
    ports already published by another sandbox. The benchmark process setns()es into the
    host namespace so no nsenter lands in the timed path."""
    h = WeftHost(weft_bin, "p")
    h.start()
    h.network("pbp", "198.18.24.0/22")
    env = ab.base_env()
    env["WEFT_TIMINGS"] = "1"
    out = {"samples_per_phase": samples, "big": big, "cycles": cycles, "phases": []}
    ab.setns_path("/run/netns/" + h.ns)
    try:
        port = 30000
        seq = 0

        def phase(label):
            nonlocal port, seq
            idle_gate(wait_idle)
            ph = {"label": label, "with_p": [], "without_p": [], "rm_with_p": [], "rm_without_p": [],
                  "timings_with_p": [], "timings_without_p": []}
            for k in range(samples + 2):   # first 2: warm-up, dropped
                seq += 1
                port += 1
                name = "x%d" % seq
                h.sandboxes.append(name)
                dt, tm = timed_weft(h, ["create", "--name", name, "--network", "pbp", "-p", "%d:80" % port], env)
                drt, _ = timed_weft(h, ["rm", name], env)
                h.sandboxes.remove(name)
                seq += 1
                name = "x%d" % seq
                h.sandboxes.append(name)
                dt0, tm0 = timed_weft(h, ["create", "--name", name, "--network", "pbp"], env)
                drt0, _ = timed_weft(h, ["rm", name], env)
                h.sandboxes.remove(name)
                if k >= 2:
                    ph["with_p"].append(dt)
                    ph["without_p"].append(dt0)
                    ph["rm_with_p"].append(drt)
                    ph["rm_without_p"].append(drt0)
                    ph["timings_with_p"].append(tm)
                    ph["timings_without_p"].append(tm0)
            out["phases"].append(ph)
            log("publish cost, %-14s create -p: p50 %.2f ms; create without -p: p50 %.2f ms; rm -p'd: p50 %.2f ms" % (
                label, 1000 * statistics.median(ph["with_p"]), 1000 * statistics.median(ph["without_p"]),
                1000 * statistics.median(ph["rm_with_p"])))

        spec = "20000-%d:20000-%d" % (20000 + big - 1, 20000 + big - 1)
        out["big_create_s"], out["big_rm_s"], out["big_create_timings"] = [], [], []
        phase("0 published")
        for c in range(1, cycles + 1):
            h.sandboxes.append("big")
            dt, tm = timed_weft(h, ["create", "--name", "big", "--network", "pbp", "-p", spec], env)
            out["big_create_s"].append(dt)
            out["big_create_timings"].append(tm)
            nports = len(json.loads(subprocess.run(h.base() + ["--format", "json", "port", "big"],
                                                   capture_output=True, env=env).stdout or b"[]"))
            out["big_ports"] = nports
            nft = subprocess.run(["nft", "list", "map", "inet", "weft", "dnat4any"], capture_output=True)
            out["dnat4any_elements"] = nft.stdout.decode().count(" : ")
            log("published %d ports on sandbox big in %.1f ms (nft map dnat4any has %d elements)" % (
                nports, 1000 * dt, out["dnat4any_elements"]))
            phase("%d published" % big)
            dt, _ = timed_weft(h, ["rm", "big"], env)
            h.sandboxes.remove("big")
            out["big_rm_s"].append(dt)
            phase("0 published")
    finally:
        ab.back_to_root()
    h.teardown()
    return out


# --------------------------------------------------------------------------- report
def summarize(out):
    lines = []
    summ = {}
    tp = [r for r in out["throughput"] if "gbps" in r]
    failed = [r for r in out["throughput"] if "error" in r]
    paths = [p for p in PATHS if any(r["path"] == p for r in tp)]
    by = {p: {r["rep"]: r["gbps"] for r in tp if r["path"] == p} for p in paths}
    med = {p: statistics.median(by[p].values()) for p in paths}
    summ["throughput"] = {p: {"median": med[p], "min": min(by[p].values()), "max": max(by[p].values()),
                              "runs": len(by[p]),
                              "retransmits_median": statistics.median(
                                  [r["retransmits"] or 0 for r in tp if r["path"] == p])} for p in paths}

    def paired(p, q):
        """median over repeats of p_i / q_i (adjacent in time, so drift cancels)."""
        v = [by[p][k] / by[q][k] for k in by[p] if k in by[q]]
        return (statistics.median(v), min(v), max(v)) if v else None

    m = out["meta"]
    lines.append("Throughput: iperf3 one TCP stream, -t %s s, %d interleaved repeats per path "
                 "(Gbit/s received; ratio = median / median of the reference path):" % (m["seconds"], m["reps"]))
    lines.append("")
    rows = []
    for p in paths:
        ref = REFERENCE.get(p)
        s = summ["throughput"][p]
        rows.append([PATHS[p][0], p, PATHS[p][1], s["runs"], "%.2f" % s["median"],
                     "%.2f..%.2f" % (s["min"], s["max"]), "%.0f" % s["retransmits_median"],
                     ("%.2f of %s" % (med[p] / med[ref], ref)) if ref in med else "-",
                     ("%.2f" % (med[p] / med["a-veth"])) if "a-veth" in med else "-"])
    lines.append(table(rows, ["", "path", "what", "runs", "median", "min..max", "retr", "ratio to reference",
                              "of (a)"]))
    if failed:
        lines.append("FAILED runs: " + ", ".join("%s rep %d (%s)" % (r["path"], r["rep"], r["error"][:80])
                                                  for r in failed))
    lines.append("")

    # connection rate
    cr = [r for r in out["conn"] if "rate" in r]
    targets = [t for t in CONN_TARGETS if any(r["target"] == t for r in cr)]
    cby = {t: {r["rep"]: r for r in cr if r["target"] == t} for t in targets}
    cmed = {t: statistics.median(r["rate"] for r in cby[t].values()) for t in targets}
    summ["conn"] = {}
    if targets:
        lines.append("Connection rate through the published port: connect + recv 1 byte + close in a loop for "
                     "%s s (python client in the client namespace, python server in the sandbox/container), "
                     "%d interleaved repeats:" % (m["conn_seconds"], m["conn_reps"]))
        lines.append("")
        rows = []
        for t in targets:
            rs = list(cby[t].values())
            s = {"median": cmed[t], "min": min(r["rate"] for r in rs), "max": max(r["rate"] for r in rs),
                 "failed": sum(r["failed"] for r in rs), "p50_us": statistics.median(r["p50_us"] for r in rs),
                 "p99_us": statistics.median(r["p99_us"] for r in rs)}
            summ["conn"][t] = s
            rows.append([t, {"weft": "weft DNAT (nft map)", "netavark": "netavark DNAT (iptables)",
                             "cni": "CNI portmap DNAT (iptables)", "proxy": "socat fork per connection"}[t],
                         len(rs), "%.0f" % s["median"], "%.0f..%.0f" % (s["min"], s["max"]), s["failed"],
                         "%.0f / %.0f" % (s["p50_us"], s["p99_us"]),
                         ("%.2f" % (cmed["weft"] / cmed[t])) if "weft" in cmed else "-"])
        lines.append(table(rows, ["target", "path", "runs", "conn/s median", "min..max", "failed",
                                  "latency p50 / p99 us", "weft / this"]))
        bad = [r for r in out["conn"] if "error" in r]
        if bad:
            lines.append("FAILED: " + ", ".join("%s rep %d" % (r["target"], r["rep"]) for r in bad))
        lines.append("")

    # publish cost
    pc = out.get("publish")
    if pc:
        ph = pc["phases"]
        isbig = lambda p: not p["label"].startswith("0 ")
        pool = lambda key, big: [x for p in ph if isbig(p) == big for x in p[key]]
        tpool = lambda key, big: [t for p in ph if isbig(p) == big for t in p[key] if t]
        med_ms = lambda v: 1000 * statistics.median(v)
        r = statistics.median(pool("with_p", True)) / statistics.median(pool("with_p", False))
        r0 = statistics.median(pool("without_p", True)) / statistics.median(pool("without_p", False))
        rrm = statistics.median(pool("rm_with_p", True)) / statistics.median(pool("rm_with_p", False))
        np_with, np_without = unphased(tpool("timings_with_p", False)), unphased(tpool("timings_without_p", False))
        summ["publish"] = {
            "ratio": r, "ratio_without_p": r0, "rm_ratio": rrm,
            "create_p_p50_ms": {"0": med_ms(pool("with_p", False)), str(pc["big"]): med_ms(pool("with_p", True))},
            "create_no_p_p50_ms": {"0": med_ms(pool("without_p", False)),
                                   str(pc["big"]): med_ms(pool("without_p", True))},
            "publish_extra_ms_at_0": med_ms(pool("with_p", False)) - med_ms(pool("without_p", False)),
            "unphased_us_at_0": {"with_p": np_with, "without_p": np_without}}
        lines.append("Publish cost: wall time of `weft create --name xK --network pbp -p PORT:80`, alternating with "
                     "the same create without -p (%d samples per phase, phases in this order), ms:" %
                     pc["samples_per_phase"])
        lines.append("")
        rows = []
        for p in ph:
            rows.append([p["label"], "%.2f" % med_ms(p["with_p"]), "%.2f" % (1000 * pct(p["with_p"], 90)),
                         "%.2f" % med_ms(p["without_p"]), "%.2f" % med_ms(p["rm_with_p"]),
                         "%.2f" % med_ms(p["rm_without_p"])])
        lines.append(table(rows, ["already published", "create -p p50", "p90", "create (no -p) p50",
                                  "rm (-p'd) p50", "rm (no -p) p50"]))
        lines.append("")
        lines.append("publish at %d / at 0 (pooled medians): %.2f  (create without -p: %.2f; rm of the -p'd "
                     "sandbox: %.2f)" % (pc["big"], r, r0, rrm))
        lines.append("publishing one port adds %.1f ms to a create at 0 (create -p p50 %.2f vs %.2f ms); in-process "
                     "time outside every weft-timings phase: %.1f ms with -p, %.1f ms without" % (
                         summ["publish"]["publish_extra_ms_at_0"], med_ms(pool("with_p", False)),
                         med_ms(pool("without_p", False)), np_with / 1000, np_without / 1000))
        lines.append("%d ports in one `weft create -p 20000-%d:...`: %s ms; `weft rm` of it: %s ms" % (
            pc.get("big_ports", 0), 20000 + pc["big"] - 1, " / ".join("%.1f" % (1000 * x) for x in pc["big_create_s"]),
            " / ".join("%.1f" % (1000 * x) for x in pc["big_rm_s"])))
        phs = phase_growth(tpool("timings_with_p", False), tpool("timings_with_p", True))
        if phs:
            lines.append("weft-timings phases of create -p, mean us at 0 -> at %d: %s" % (pc["big"], phs))
        lines.append("")

    # targets
    lines.append("Targets (shown, not asserted; paired = median over repeats of the per-repeat ratio):")
    tg = []

    def target(label, val, goal, ok, extra=""):
        tg.append({"target": label, "value": val, "goal": goal, "ok": ok})
        lines.append("  %-46s %-8s %-12s %-5s %s" % (label, "n/a" if val is None else val, goal,
                                                      "-" if ok is None else ("ok" if ok else "MISS"), extra))

    def pr(p, q):
        x = paired(p, q) if p in by and q in by else None
        return "paired %.2f (%.2f..%.2f)" % x if x else ""

    if "b-weft" in med and "a-veth" in med:
        v = med["b-weft"] / med["a-veth"]
        target("(b)/(a) sandbox->sandbox vs veth ceiling", "%.2f" % v, ">= 0.90", v >= 0.90, pr("b-weft", "a-veth"))
    if "c-weft" in med and "b-weft" in med:
        v = med["c-weft"] / med["b-weft"]
        target("(c)/(b) published port vs same bridge", "%.2f" % v, ">= 0.95", v >= 0.95, pr("c-weft", "b-weft"))
    if "c-weft" in med and "d-proxy" in med:
        v = med["c-weft"] / med["d-proxy"]
        target("(c)/(d) published port vs userland proxy", "%.2fx" % v, ">= 3x", v >= 3, pr("c-weft", "d-proxy"))
    for peer in ("e-netavark", "e-cni"):
        if "c-weft" in med and peer in med:
            v = med["c-weft"] / med[peer]
            target("(c)/%s published port, weft vs peer" % peer, "%.2f" % v, "(info)", None, pr("c-weft", peer))
    for t in ("netavark", "cni", "proxy"):
        if "weft" in cmed and t in cmed:
            v = cmed["weft"] / cmed[t]
            target("conn/s weft / %s" % t, "%.2f" % v, ">= 1", v >= 1.0)
    if "publish" in summ:
        v = summ["publish"]["ratio"]
        target("publish cost at %d / at 0" % pc["big"], "%.2f" % v, "~1 (<=1.10)", v <= 1.10)
    summ["targets"] = tg
    lines.append("")
    oc = [r for r in out["throughput"] + out["conn"] if r.get("others_cores_during") is not None]
    if oc:
        busy = [r for r in oc if r["others_cores_during"] >= 0.3]
        lines.append("CPU used by everything else during the measurements: mean %.2f, max %.2f cores; %d of %d "
                     "measurements ran with others above 0.3 cores%s" % (
                         statistics.mean(r["others_cores_during"] for r in oc),
                         max(r["others_cores_during"] for r in oc), len(busy), len(oc),
                         (" -> NOISY: " + ", ".join("%s rep %d (%.1f)" % (r.get("path") or r.get("target"), r["rep"],
                                                                           r["others_cores_during"]) for r in busy))
                         if busy else ""))
    w = m.get("weft") or {}
    if w:
        lines.append("weft binary: %s, built %s, git HEAD %s with %d uncommitted source file(s)%s" % (
            w.get("version", "?"), w.get("mtime"), w.get("git_head", "?"), w.get("uncommitted_source_files", 0),
            " (cargo build FAILED: older binary)" if w.get("build_failed") else ""))
    out["summary"] = summ
    return "\n".join(lines)


def _means(tms):
    tms = [t for t in tms if t]
    if not tms:
        return {}
    keys = sorted({k for t in tms for k in t})
    return {k: sum(t.get(k, 0) for t in tms) / len(tms) for k in keys}


def unphased(tms):
    """mean us of weft's in-process total that no weft-timings phase covers."""
    m = _means(tms)
    return m.get("total", 0) - sum(v for k, v in m.items() if k != "total") if m else float("nan")


def phase_growth(zero_tms, big_tms):
    z, b = _means(zero_tms), _means(big_tms)
    if not z or not b:
        return ""
    keys = [k for k in z if k in b]
    keys.sort(key=lambda k: -(b[k] - z[k]))
    return ", ".join("%s %.0f->%.0f" % (k, z[k], b[k]) for k in keys[:6])


# --------------------------------------------------------------------------- safety
def clean_stale(weft_bin):
    """Remove what an earlier run that died (kill -9) left: its background processes (by the
    PIDs it recorded, if they still run the same program), its weft sandboxes, its namespaces
    and its temp dir."""
    for old, d in KIT.stale_runs():
        log("cleaning up after an earlier run (pid %d): %s" % (old, d))
        KIT.kill_recorded(d, (b"iperf3", b"socat", b"ports_conn.py"))
        for tag in ("w", "p"):
            wd = "%s/weft-%s" % (d, tag)
            hns = "/run/netns/wpb-%d-%sh" % (old, tag)
            if os.path.isdir(wd + "/state") and os.path.exists(hns) and os.access(weft_bin, os.X_OK):
                base = ["nsenter", "--net=" + hns, weft_bin, "--state-dir", wd + "/state", "--run-dir",
                        wd + "/run", "--config", wd + "/weft.toml"]
                p = run(base + ["--format", "json", "ps", "-a"])
                try:
                    names = [s["name"] for s in json.loads(p.stdout)]
                except ValueError:
                    names = []
                if names:
                    run(base + ["rm", "-f"] + names)
                p = run(base + ["--format", "json", "network", "ls"])
                try:
                    for n in json.loads(p.stdout):
                        run(base + ["network", "rm", n["name"]])
                except ValueError:
                    pass
        KIT.remove_stale_namespaces(old)
        ab.remove_dir(d)
    KIT.remove_stale_namespaces()


def root_extra():
    """What this bench checks in the root namespace besides nsbench's list."""
    def ipt(out):
        return "\n".join(l for l in out(["iptables-save"]).splitlines() if not l.startswith("#"))

    def sysctl(path):
        return lambda _out: open(path).read().strip() if os.path.exists(path) else None
    return {"iptables_save": ipt,
            "ip_forward": sysctl("/proc/sys/net/ipv4/ip_forward"),
            "bridge_nf_call_iptables": sysctl("/proc/sys/net/bridge/bridge-nf-call-iptables"),
            "ip_local_port_range": sysctl("/proc/sys/net/ipv4/ip_local_port_range")}


def ensure_tools(install):
    need = []
    for binary, pkg in (("iperf3", "iperf3"), ("socat", "socat"), ("iptables", "iptables")):
        if not shutil.which(binary, path=ab.base_env()["PATH"]):
            need.append(pkg)
    if not os.access(NETAVARK, os.X_OK):
        need.append("netavark")
    if not (os.access(CNI_DIR + "/bridge", os.X_OK) and os.access(CNI_DIR + "/portmap", os.X_OK)):
        need.append("containernetworking-plugins")
    if need and install:
        nsbench.apt_install(need, log)
    missing = [b for b in ("iperf3", "socat", "nsenter", "ss", "sysctl")
               if not shutil.which(b, path=ab.base_env()["PATH"])]
    return missing


# --------------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(prog="bench/ports", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: -t 2, 2 repeats, 1 s connection runs, 5 publish samples (~1-2 min)")
    ap.add_argument("--seconds", "-t", type=int, help="iperf3 -t (default 5; quick 2)")
    ap.add_argument("--reps", "-r", type=int, help="repeats per path (default 5; quick 2)")
    ap.add_argument("--conn-seconds", type=float, help="seconds per connection-rate run (default 3; quick 1)")
    ap.add_argument("--conn-reps", type=int, help="connection-rate repeats per target (default 3; quick 1)")
    ap.add_argument("--publish-samples", type=int, help="creates timed per publish phase (default 15; quick 5)")
    ap.add_argument("--publish-big", type=int, default=1000, help="ports already published (default 1000)")
    ap.add_argument("--publish-cycles", type=int,
                    help="publish phases 0, N, 0, N, 0 ...: number of N phases (default 2; quick 1)")
    ap.add_argument("--paths", default=",".join(PATHS),
                    help="comma list of throughput paths (default all: %s)" % ",".join(PATHS))
    ap.add_argument("--conn", default=",".join(CONN_TARGETS), help="connection-rate targets (default all)")
    ap.add_argument("--conn-same-source", action="store_true",
                    help="every connection-rate repeat from the same client address (shows the collapse "
                         "when client ports are reused within conntrack's TIME_WAIT timeout)")
    ap.add_argument("--no-publish", action="store_true", help="skip the publish-cost part")
    nsbench.standard_args(ap, "ports", 3.0, "each measurement")
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("must run as root")
    q = a.quick
    secs = a.seconds or (2 if q else 5)
    reps = a.reps or (2 if q else 5)
    csecs = a.conn_seconds or (1.0 if q else 3.0)
    creps = a.conn_reps or (1 if q else 3)
    psamples = a.publish_samples or (5 if q else 15)
    pcycles = a.publish_cycles or (1 if q else 2)
    paths = [p for p in a.paths.split(",") if p]
    conns = [c for c in a.conn.split(",") if c]
    for p in paths:
        if p not in PATHS:
            raise SystemExit("unknown path %r (known: %s)" % (p, ", ".join(PATHS)))
    for c in conns:
        if c not in CONN_TARGETS:
            raise SystemExit("unknown connection target %r" % c)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    outf = a.out or os.path.join(BENCH, "results", "ports-%s.json" % stamp)

    def body():
        nonlocal paths, conns
        started = time.time()
        missing = ensure_tools(not a.no_install)
        if missing:
            raise SystemExit("missing tools: %s" % " ".join(missing))
        if not os.access(NETAVARK, os.X_OK):
            log("no netavark: dropping it")
            paths = [p for p in paths if p != "e-netavark"]
            conns = [c for c in conns if c != "netavark"]
        if not os.access(CNI_DIR + "/portmap", os.X_OK):
            log("no CNI plugins: dropping them")
            paths = [p for p in paths if p != "e-cni"]
            conns = [c for c in conns if c != "cni"]
        weft_info = ab.build_weft(a.no_build)
        weft_bin = weft_info["binary"]
        ver = lambda cmd: run(cmd).stdout.decode(errors="replace").strip().splitlines()[:1]
        out = {"meta": {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "argv": sys.argv[1:],
                        "kernel": os.uname().release, "nproc": os.cpu_count(), "seconds": secs, "reps": reps,
                        "conn_seconds": csecs, "conn_reps": creps, "paths": paths, "conn_targets": conns,
                        "weft": weft_info, "iperf3": ver(["iperf3", "--version"]),
                        "socat": run(["socat", "-V"]).stdout.decode(errors="replace").splitlines()[1:2],
                        "netavark": ver([NETAVARK, "--version"]) if os.access(NETAVARK, os.X_OK) else None,
                        "cni_plugins": run(["dpkg-query", "-W", "-f=${Version}", "containernetworking-plugins"]
                                           ).stdout.decode().strip(),
                        "iptables": ver(["iptables", "--version"])},
               "throughput": [], "conn": []}
        RES.mkdir()
        # publish cost first, while the machine holds few TCP sockets: weft reads
        # /proc/net/tcp{,6}, whose cost grows with every socket in every namespace (the
        # connection-rate test leaves tens of thousands in TIME_WAIT for 60 s)
        if not a.no_publish:
            out["publish"] = measure_publish(weft_bin, psamples, a.publish_big, pcycles, a.wait_idle)
        st = Setup(a, weft_bin)
        t0 = time.time()
        st.build(paths, conns)
        out["meta"]["setup_s"] = round(time.time() - t0, 1)
        out["meta"]["topology"] = st.info
        log("set up %s in %.1f s; weft: srv %s, rsrv %s, cli %s" % (
            ", ".join(paths), time.time() - t0, st.info.get("weft", {}).get("srv"),
            st.info.get("weft", {}).get("rsrv"), st.info.get("weft", {}).get("cli")))
        try:
            if paths:
                measure_throughput(st, paths, reps, secs, a.wait_idle, out["throughput"])
            if conns:
                measure_conn(st, conns, creps, csecs, a.wait_idle, out["conn"], a.conn_same_source)
        finally:
            RES.stop_procs()
        out["meta"]["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        out["meta"]["elapsed_s"] = round(time.time() - started, 1)
        text = summarize(out)
        os.makedirs(os.path.dirname(outf), exist_ok=True)
        with open(outf, "w") as f:
            json.dump(out, f, indent=1)
        print(text)
        print("raw results: %s" % os.path.relpath(outf, REPO))
        return 0

    return KIT.guarded(body, prepare=lambda: clean_stale(ab.weft_binary()), snapshot_extra=root_extra(),
                       cleanup=RES.cleanup,
                       what="netns list, links, nft tables, iptables-save, sysctls, mounts, temp dirs")


if __name__ == "__main__":
    sys.exit(main() or 0)
