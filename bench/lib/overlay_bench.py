#!/usr/bin/env python3
"""bench/overlay: weft's multi-host overlay (VXLAN, control plane on etcd) in one run:
convergence, failure detection, cross-host TCP throughput against the bare underlay and the
same overlay typed by hand (scenario S2), and the cost of one more join with 10 and 1,000
endpoints in the cluster (python3 stdlib; etcd-server, iperf3, ethtool as tools).

Topology (P = this run's pid; every namespace is made by this run and deleted at its end,
also on error, Ctrl-C or SIGTERM; the root network namespace is never changed and no
traffic leaves these namespaces):

  wob-P-ul   the underlay: bridge ul0; one veth port per namespace below (198.19.0.0/24)
  wob-P-et   etcd 3.4 (Debian etcd-server), 198.19.0.100:2379, data in the run's temp dir
  wob-P-h1..h3  weft hosts: eth0 198.19.0.1..3, own --state-dir/--run-dir/--config, one
             `weft daemon --stay --etcd http://198.19.0.100:2379 --advertise 198.19.0.N
             --node hN --lease-ttl TTL` each; overlay network `ovb` 10.77.0.0/16 (VNI 4242)
             created on h1. Sandboxes: cli (h1), srv (h2, iperf3 -s), probe (h2, runs
             overlay_probe.py), v1 v2 (h3, the host that dies).
  wob-P-m1, wob-P-m2  the overlay typed by hand as in S2: eth0 198.19.0.11/.12, bridge br0
             12.12.12.1/24, vxlan1 (id 42, dstport 4789, local eth0's address, nolearning,
             proxy) on br0, a sandbox namespace wob-P-s1/-s2 (12.12.12.2/.3, MTU 1450)
             on br0, and on each side `ip neigh add` + `bridge fdb add` of the other sandbox.

Convergence: on h1 `weft run -d --network ovb --ip 10.77.1.K -- sleep inf`, K = 1..N; the
prober in sandbox `probe` on h2 sends ARP requests for the new address every millisecond,
then (once h2's VXLAN device answers them from the neighbour entry h2's agent wrote) ICMP
echo requests every millisecond; convergence = first echo reply - the moment `weft run -d`
returned (CLOCK_MONOTONIC, shared by all processes; negative = converged before the command
returned). The address is given (--ip) so the prober can start before the command.

Failure detection: SIGKILL to h3's agent; then h1 and h2 are polled (`ip neigh` and
`bridge fdb` on the VXLAN device) until no entry for h3's sandboxes and no flood entry to
h3's VTEP is left on either; the agent is started again and its entries awaited back
(recovery) before the next repeat.

Throughput: iperf3 -t T, one TCP stream: underlay (h1 eth0 -> h2 eth0, over ul0), weft
(cli on h1 -> srv on h2), hand (s1 -> s2); every path per repeat, order rotating; first
with the veths as the kernel makes them ("untuned"), then with the bench's own underlay
veths tuned ("tuned": `ethtool -K gro on rx-udp-gro-forwarding on` on every underlay veth
end: NAPI GRO on veth, so VXLAN's UDP tunnel GRO aggregates what arrives at a host).

Join cost: with E endpoints in the cluster (E = 10 first, then 1,000, then 10 again: the
ones missing written straight into etcd by the bench as endpoints of fake hosts fake01..10
with fake VTEPs 198.19.1.x, under a lease of the bench's, which every agent turns into
neighbour, FDB and flood entries like real ones), J times: `weft run -d --network ovb --
sleep inf` on h1, timed (wall), with the CPU the agents of h1 and h2 used from the start of
the command to 0.3 s after it returned (schedstat of all their threads); each removed again
before the next, with `weft rm -f` timed the same way (the leave cost: h2's agent removes
the entries of a sandbox of another host, and their removal notifications come back to it).
"""
import argparse
import base64
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import attach_bench as ab  # noqa: E402  (run, must, pct, table, setns, build, cpu marks)
import nsbench  # noqa: E402  (resources, clean-up, root check, iperf3, CPU readings)

BENCH = os.path.dirname(HERE)
REPO = os.path.dirname(BENCH)
KIT = nsbench.Kit("overlay", "wob-", "overlay_bench.py")
RES = nsbench.Resources(KIT)
PID = KIT.pid
log = KIT.log
run = ab.run
must = ab.must
pct = ab.pct
table = ab.table
nsx = nsbench.nsx
PROBE = os.path.join(HERE, "overlay_probe.py")
PY = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable

UL_PREFIX = "198.19.0."
ETCD_IP = UL_PREFIX + "100"
ETCD_URL = "http://%s:2379" % ETCD_IP
NETWORK, SUBNET, VNI = "ovb", "10.77.0.0/16", 4242
HAND_VNI = 42
HAND = {"m1": ("11", "s1", "12.12.12.2", "02:42:c0:a8:00:02"),
        "m2": ("12", "s2", "12.12.12.3", "02:42:c0:a8:00:03"),
        # the --variant pair: the same, with extra settings on its VXLAN devices
        "m3": ("13", "s3", "12.12.12.2", "02:42:c0:a8:00:02"),
        "m4": ("14", "s4", "12.12.12.3", "02:42:c0:a8:00:03")}
PATHS = ("underlay", "weft", "hand")
PATHS_USED = list(PATHS) + ["weft-nobrnf"]   # the last: a diagnosis, not a target (see set_brnf)
TARGET_CONV_P99_MS = 300.0
TARGET_VS_HAND, TARGET_VS_UNDERLAY, TARGET_JOIN_FLAT = 0.95, 0.75, 1.1


# --------------------------------------------------------------------------- etcd
class Etcd:
    """etcd in its own namespace on the underlay; the bench talks to its JSON gateway
    (/v3/...) from a socket made inside that namespace."""
    name = "etcd"

    def __init__(self):
        self.ns = KIT.ns_name("et")
        self.data = os.path.join(RES.dir, "etcd")
        self.conn = None

    def start(self, ul):
        RES.add_ns(self.ns)
        ul.plug(self.ns, ETCD_IP)
        peer = "http://127.0.0.1:2380"
        self.proc = RES.bg("etcd", self.ns, [
            "etcd", "--name", "b", "--data-dir", self.data, "--listen-client-urls", ETCD_URL,
            "--advertise-client-urls", ETCD_URL, "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer, "--initial-cluster", "b=" + peer,
            "--heartbeat-interval", "25", "--election-timeout", "250", "--logger", "zap",
            "--log-outputs", "stderr", "--quota-backend-bytes", str(256 << 20)])
        t_end = time.monotonic() + 20
        while time.monotonic() < t_end:
            try:
                self.call("/v3/kv/range", {"key": b64("/ready")})
                return
            except (OSError, RuntimeError, http.client.HTTPException):
                self.conn = None
                if self.proc.poll() is not None:
                    break
                time.sleep(0.1)
        raise RuntimeError("etcd did not start; see %s/etcd.log" % RES.dir)

    def call(self, path, body):
        if self.conn is None:
            ab.setns_path("/run/netns/" + self.ns)
            try:
                self.conn = http.client.HTTPConnection(ETCD_IP, 2379, timeout=10)
                self.conn.connect()  # the socket lives in etcd's namespace from now on
            finally:
                ab.back_to_root()
        try:
            self.conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            r = self.conn.getresponse()
            data = r.read()
        except (OSError, http.client.HTTPException):
            self.conn = None
            raise
        if r.status != 200:
            raise RuntimeError("etcd %s: HTTP %d %s" % (path, r.status, data[:300]))
        return json.loads(data or b"{}")

    def count(self, prefix):
        r = self.call("/v3/kv/range", {"key": b64(prefix), "range_end": b64(prefix_end(prefix)),
                                        "count_only": True})
        return int(r.get("count", 0))

    def grant(self, ttl):
        return self.call("/v3/lease/grant", {"TTL": ttl})["ID"]

    def revoke(self, lease):
        self.call("/v3/lease/revoke", {"ID": lease})

    def put_many(self, kvs, lease):
        """Writes (key, value bytes) pairs under `lease`, 100 to a transaction."""
        for i in range(0, len(kvs), 100):
            ops = [{"request_put": {"key": b64(k), "value": base64.b64encode(v).decode(), "lease": lease}}
                   for k, v in kvs[i:i + 100]]
            self.call("/v3/kv/txn", {"success": ops})

    def teardown(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def b64(s):
    return base64.b64encode(s.encode()).decode()


def prefix_end(p):
    return p[:-1] + chr(ord(p[-1]) + 1)


# --------------------------------------------------------------------------- underlay
class Underlay:
    name = "underlay"

    def __init__(self):
        self.ns = KIT.ns_name("ul")
        self.ports = []   # (underlay-side port, namespace, interface there)

    def start(self):
        RES.add_ns(self.ns)
        must(["ip", "-n", self.ns, "link", "add", "ul0", "type", "bridge"])
        must(["ip", "-n", self.ns, "link", "set", "ul0", "up"])

    def plug(self, other, ip):
        """Gives namespace `other` an eth0 with `ip`/24 on the underlay (MTU 1500)."""
        port = "p%d" % len(self.ports)
        must(["ip", "-n", self.ns, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", other])
        must(["ip", "-n", self.ns, "link", "set", port, "master", "ul0", "up"])
        must(["ip", "-n", other, "addr", "add", ip + "/24", "dev", "eth0"])
        must(["ip", "-n", other, "link", "set", "eth0", "up"])
        self.ports.append((port, other))

    def tune(self, on):
        """The bench's own underlay veths (both ends): NAPI GRO and UDP GRO forwarding."""
        v = "on" if on else "off"
        for port, other in self.ports:
            for ns, dev in ((self.ns, port), (other, "eth0")):
                must(nsx(ns) + ["ethtool", "-K", dev, "gro", v, "rx-udp-gro-forwarding", v])

    def teardown(self):
        pass


# --------------------------------------------------------------------------- weft hosts
class WeftHost:
    def __init__(self, binary, n):
        self.bin = binary
        self.n = n
        self.node = "h%d" % n
        self.name = "weft " + self.node
        self.ns = KIT.ns_name(self.node)
        self.ip = UL_PREFIX + str(n)
        self.dir = os.path.join(RES.dir, "weft-" + self.node)
        self.agent = None
        self.env = ab.base_env()

    def base(self):
        return [self.bin, "--state-dir", self.dir + "/state", "--run-dir", self.dir + "/run",
                "--config", self.dir + "/weft.toml"]

    def argv(self, *args):
        return nsx(self.ns) + self.base() + list(args)

    def w(self, *args, check=True, timeout=120):
        p = run(self.argv(*args), env=self.env, timeout=timeout)
        if check and p.returncode != 0:
            raise RuntimeError("%s: weft %s failed rc=%d: %s%s" % (
                self.node, " ".join(args), p.returncode, p.stdout.decode(errors="replace")[-1500:],
                p.stderr.decode(errors="replace")[-1500:]))
        return p

    def json(self, *args):
        return json.loads(self.w("--format", "json", *args).stdout)

    def start(self, ul, ttl):
        os.makedirs(self.dir)
        with open(self.dir + "/weft.toml", "w") as f:
            f.write("")
        RES.add_ns(self.ns)
        RES.teardowns.append(self)
        ul.plug(self.ns, self.ip)
        self.ttl = ttl
        # the state store made by one process first (the agent and the commands would race)
        self.w("network", "ls")
        self.start_agent()

    def start_agent(self):
        self.agent = RES.bg("agent-" + self.node, self.ns, self.base() + [
            "daemon", "--stay", "--etcd", ETCD_URL, "--advertise", self.ip, "--node", self.node,
            "--lease-ttl", str(self.ttl)])
        t_end = time.monotonic() + 15
        while time.monotonic() < t_end:
            if self.w("daemon", "status", check=False).returncode == 0:
                return
            if self.agent.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("agent of %s did not start; see %s/agent-%s.log" % (self.node, RES.dir, self.node))

    def kill_agent(self):
        """SIGKILL to the agent (the PID we started: nsenter execs weft)."""
        os.kill(self.agent.pid, signal.SIGKILL)
        t = time.monotonic()
        self.agent.wait(timeout=5)
        return t

    def run_d(self, name, *extra, cmd=("sleep", "inf")):
        return self.w(*(["run", "-d", "--name", name, "--network", NETWORK] + list(extra) + ["--"] + list(cmd)))

    def inspect(self, name):
        return self.json("inspect", name)[0]

    def has_link(self, dev):
        return run(nsx(self.ns) + ["ip", "link", "show", dev]).returncode == 0

    def entries(self, dev):
        """(neighbour lines, fdb lines) of the VXLAN device `dev`."""
        a = run(nsx(self.ns) + ["ip", "neigh", "show", "dev", dev]).stdout.decode(errors="replace")
        b = run(nsx(self.ns) + ["bridge", "fdb", "show", "dev", dev]).stdout.decode(errors="replace")
        return a.splitlines(), b.splitlines()

    def neigh_count(self, dev):
        p = run(nsx(self.ns) + ["ip", "neigh", "show", "dev", dev])
        return len(p.stdout.splitlines())

    def teardown(self):
        if not os.path.exists("/run/netns/" + self.ns):
            return
        if self.agent is None or self.agent.poll() is not None:
            # overlay removals go through the agent
            try:
                self.start_agent()
            except Exception as e:
                log("%s: agent for the teardown: %s" % (self.node, e))
        try:
            names = [s["name"] for s in self.json("ps", "-a")]
        except (ValueError, RuntimeError):
            names = []
        for i in range(0, len(names), 100):
            p = self.w(*(["rm", "-f"] + names[i:i + 100]), check=False)
            if p.returncode != 0:
                log("%s: weft rm -f: %s" % (self.node, p.stderr.decode(errors="replace").strip()[-500:]))
                self.w("gc", check=False)


def teardown_network(h1):
    """The overlay network goes once every host's sandboxes are gone (from h1), then the agents."""
    class T:
        name = "network " + NETWORK

        def teardown(self):
            if os.path.exists("/run/netns/" + h1.ns):
                p = h1.w("network", "rm", NETWORK, check=False)
                if p.returncode != 0 and b"no such" not in p.stderr.lower():
                    log("weft network rm %s: %s" % (NETWORK, p.stderr.decode(errors="replace").strip()))
    return T()


# --------------------------------------------------------------------------- hand-built S2
class HandHost:
    def __init__(self, tag, link_opts=(), vxlan_opts=()):
        self.tag = tag
        self.link_opts, self.vxlan_opts = list(link_opts), list(vxlan_opts)
        self.name = "hand " + tag
        last, sb, self.sip, self.smac = HAND[tag]
        self.ns, self.sb = KIT.ns_name(tag), KIT.ns_name(sb)
        self.ip = UL_PREFIX + last

    def start(self, ul):
        RES.add_ns(self.ns, self.sb)
        ul.plug(self.ns, self.ip)
        n, s = self.ns, self.sb
        must(["ip", "-n", n, "link", "add", "br0", "type", "bridge"])
        must(["ip", "-n", n, "addr", "add", "12.12.12.1/24", "dev", "br0"])
        must(["ip", "-n", n, "link", "set", "br0", "up"])
        # in the host namespace, so that its UDP socket is on the underlay (S2 makes it there
        # and moves it into overns; weft keeps it in the host's namespace: so does this)
        must(["ip", "-n", n, "link", "add", "vxlan1"] + self.link_opts + [
              "type", "vxlan", "id", str(HAND_VNI), "dstport", "4789", "local", self.ip, "nolearning", "proxy"]
             + self.vxlan_opts)
        must(["ip", "-n", n, "link", "set", "vxlan1", "master", "br0", "up"])
        must(["ip", "-n", n, "link", "add", "veth1", "mtu", "1450", "type", "veth", "peer", "name", "eth0",
              "netns", s, "mtu", "1450"])
        must(["ip", "-n", n, "link", "set", "veth1", "master", "br0", "up"])
        must(["ip", "-n", s, "link", "set", "eth0", "address", self.smac])
        must(["ip", "-n", s, "addr", "add", self.sip + "/24", "dev", "eth0"])
        must(["ip", "-n", s, "link", "set", "eth0", "up"])

    def point_at(self, other):
        """What S2 types by hand: the other sandbox's neighbour and FDB entries."""
        must(["ip", "-n", self.ns, "neigh", "add", other.sip, "lladdr", other.smac, "dev", "vxlan1"])
        must(["bridge", "-n", self.ns, "fdb", "add", other.smac, "dev", "vxlan1", "self", "dst", other.ip,
              "vni", str(HAND_VNI), "port", "4789"])


# --------------------------------------------------------------------------- set-up
class Setup:
    def __init__(self, a, weft_bin):
        self.a = a
        self.ul = Underlay()
        self.etcd = Etcd()
        self.hosts = [WeftHost(weft_bin, n) for n in (1, 2, 3)]
        self.hand = [HandHost("m1"), HandHost("m2")]
        self.variant = None
        if a.variant or a.variant_link:
            v = ((a.variant_link or "").split(), (a.variant or "").split())
            self.variant = [HandHost("m3", *v), HandHost("m4", *v)]
            PATHS_USED.append("variant")
        self.info = {}

    def build(self):
        ul = self.ul
        ul.start()
        RES.teardowns.append(ul)
        self.etcd.start(ul)
        RES.teardowns.append(self.etcd)
        h1, h2, h3 = self.hosts
        for h in self.hosts:
            h.start(ul, self.a.ttl)
        RES.teardowns.insert(RES.teardowns.index(h1), teardown_network(h1))
        h1.w("network", "create", "--driver", "overlay", "--subnet", SUBNET, "--vni", str(VNI), NETWORK)
        net = h1.json("network", "inspect", NETWORK)[0]
        self.net_id = net["id"]
        self.vx = "wv-" + self.net_id[:12]
        wait_for("the overlay's VXLAN device on every host", 15,
                 lambda: all(h.has_link(self.vx) for h in self.hosts))
        self.info["network"] = {"id": self.net_id, "mtu": net.get("mtu"), "vni": net.get("vni"), "vxlan": self.vx}
        # the sandboxes the measurements use
        h2.run_d("srv", cmd=("iperf3", "-s"))
        h1.run_d("cli")
        h2.run_d("probe")
        h3.run_d("v1")
        h3.run_d("v2")
        ins = {n: h.inspect(n) for h, n in ((h2, "srv"), (h1, "cli"), (h2, "probe"), (h3, "v1"), (h3, "v2"))}
        self.sb = {n: {"netns": i["netns"], "ip": i["networks"][0]["ipv4"].split("/")[0],
                       "mac": i["networks"][0].get("mac") or i["networks"][0].get("mac_address")}
                   for n, i in ins.items()}
        self.info["sandboxes"] = self.sb
        nsbench.wait_listen(self.sb["srv"]["netns"], 5201)
        # every host knows every other's sandboxes before anything is measured
        wait_for("every host's entries for the others' sandboxes", 15, lambda: self.all_entries())
        # the hand-built overlay and the underlay's own iperf3 server
        for pair in (self.hand, self.variant or []):
            for m in pair:
                m.start(ul)
            if pair:
                pair[0].point_at(pair[1])
                pair[1].point_at(pair[0])
        if self.variant:
            srv_var = RES.bg("iperf3-variant", self.variant[1].sb, ["iperf3", "-s"])
            nsbench.wait_listen("/run/netns/" + self.variant[1].sb, 5201, srv_var)
            self.info["vxlan_variant"] = vxlan_details(self.variant[1].ns, "vxlan1")
        srv_ul = RES.bg("iperf3-underlay", h2.ns, ["iperf3", "-s", "-B", h2.ip])
        srv_hand = RES.bg("iperf3-hand", self.hand[1].sb, ["iperf3", "-s"])
        nsbench.wait_listen("/run/netns/" + h2.ns, 5201, srv_ul)
        nsbench.wait_listen("/run/netns/" + self.hand[1].sb, 5201, srv_hand)
        self.paths = {
            "underlay": nsx(h1.ns) + ["iperf3", "-c", h2.ip],
            "weft": nsx(self.sb["cli"]["netns"]) + ["iperf3", "-c", self.sb["srv"]["ip"]],
            "hand": nsx(self.hand[0].sb) + ["iperf3", "-c", self.hand[1].sip],
        }
        self.paths["weft-nobrnf"] = self.paths["weft"]
        if self.variant:
            self.paths["variant"] = nsx(self.variant[0].sb) + ["iperf3", "-c", self.variant[1].sip]
        self.info["vxlan_weft"] = vxlan_details(h2.ns, self.vx)
        self.info["vxlan_hand"] = vxlan_details(self.hand[1].ns, "vxlan1")

    def set_brnf(self, value):
        """bridge-nf-call-iptables (per namespace) in weft's h1 and h2: with 1 (the default
        once br_netfilter is loaded, and what weft's isolation relies on), every bridged
        frame also crosses the inet hooks, conntrack included."""
        for h in self.hosts[:2]:
            must(nsx(h.ns) + ["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=%d" % value])

    def all_entries(self):
        h1, h2, h3 = self.hosts
        for h, others in ((h1, ("srv", "probe", "v1", "v2")), (h2, ("cli", "v1", "v2")), (h3, ("srv", "cli", "probe"))):
            neigh, _ = h.entries(self.vx)
            text = "\n".join(neigh)
            if not all(self.sb[o]["ip"] + " " in text for o in others):
                return False
        return True

    def h3_gone_from(self, h):
        neigh, fdb = h.entries(self.vx)
        v = (self.sb["v1"]["ip"] + " ", self.sb["v2"]["ip"] + " ")
        return not any(l.startswith(v) for l in neigh) and not any(" dst %s " % self.hosts[2].ip in l + " "
                                                                    for l in fdb)

    def h3_back_on(self, h):
        neigh, fdb = h.entries(self.vx)
        v = (self.sb["v1"]["ip"] + " ", self.sb["v2"]["ip"] + " ")
        return sum(1 for l in neigh if l.startswith(v)) == 2 and any(
            l.startswith("00:00:00:00:00:00 dst %s " % self.hosts[2].ip) for l in fdb)


def vxlan_details(ns, dev):
    """`ip -d link` and the offload flags of a VXLAN device (for the JSON: what differed)."""
    d = run(nsx(ns) + ["ip", "-d", "link", "show", dev]).stdout.decode(errors="replace")
    k = run(nsx(ns) + ["ethtool", "-k", dev]).stdout.decode(errors="replace")
    on = sorted(l.split(":")[0].strip() for l in k.splitlines()[1:] if l.split(":")[-1].strip().startswith("on"))
    return {"link": " ".join(d.split()), "offloads_on": on,
            "txqueuelen": (d.split("qlen ")[1].split()[0] if "qlen " in d else None)}


def wait_for(what, timeout, cond, every=0.05):
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if cond():
            return
        time.sleep(every)
    raise RuntimeError("timed out after %.0f s waiting for %s" % (timeout, what))


# --------------------------------------------------------------------------- measuring
def idle_gate(limit):
    if limit <= 0:
        return None
    o, _w = ab.wait_idle(limit)
    return round(o, 2)


def measure_throughput(st, reps, secs, wait_idle, results):
    for tuned in (False, True):
        st.ul.tune(tuned)
        label = "tuned" if tuned else "untuned"
        for p in PATHS_USED:  # untimed warm-up: neighbours, conntrack, iperf3's pages
            r = nsbench.iperf_once(st.paths[p], 1)
            if "error" in r:
                raise RuntimeError("warm-up of %s (%s) failed: %s" % (p, label, r["error"]))
        for rep in range(1, reps + 1):
            k = (rep - 1) % len(PATHS_USED)
            for p in PATHS_USED[k:] + PATHS_USED[:k]:
                others = idle_gate(wait_idle)
                if p == "weft-nobrnf":
                    st.set_brnf(0)
                try:
                    m0 = ab.cpu_mark()
                    r = nsbench.iperf_once(st.paths[p], secs)
                finally:
                    if p == "weft-nobrnf":
                        st.set_brnf(1)
                r.update(path=p, tuning=label, rep=rep, others_cores_before=others,
                         others_cores_during=round(ab.others_cores(m0, ab.cpu_mark()), 2))
                results.append(r)
                if "error" in r:
                    log("%s rep %d %-8s iperf3 FAILED: %s" % (label, rep, p, r["error"]))
                else:
                    log("%s rep %d %-8s %6.2f Gbit/s  retr %s" % (label, rep, p, r["gbps"], r["retransmits"]))
    st.ul.tune(False)


class Prober:
    def __init__(self, st):
        sb = st.sb["probe"]
        self.p = subprocess.Popen(nsx(sb["netns"]) + [PY, PROBE, "eth0", sb["ip"], sb["mac"]],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  start_new_session=True, env=dict(ab.base_env(), PROBE_TIMEOUT="5"))
        RES.procs.append(("prober", self.p))
        line = self.p.stdout.readline().decode().strip()
        if line != "ready":
            raise RuntimeError("the prober did not start: %r %s" % (line, self.p.stderr.read(500)))

    def ask(self, ip):
        self.p.stdin.write((ip + "\n").encode())
        self.p.stdin.flush()

    def answer(self):
        parts = self.p.stdout.readline().decode().split()
        if not parts:
            raise RuntimeError("the prober died: %s" % self.p.stderr.read(500))
        if parts[0] == "ok":
            return float(parts[1]), float(parts[2])
        return (float(parts[1]) if parts[1] != "-" else None), None


def measure_convergence(st, n, results):
    h1 = st.hosts[0]
    pr = Prober(st)
    made = []
    try:
        for k in range(1, n + 1):
            ip = "10.77.1.%d" % k
            name = "c%d" % k
            pr.ask(ip)
            time.sleep(0.01)  # the prober is sending before the command starts
            t0 = time.monotonic()
            p = run(h1.argv("run", "-d", "--name", name, "--network", NETWORK, "--ip", ip, "--", "sleep", "inf"),
                    env=h1.env)
            t1 = time.monotonic()
            if p.returncode != 0:
                raise RuntimeError("weft run -d %s: %s" % (name, p.stderr.decode(errors="replace")[-800:]))
            made.append(name)
            t_arp, t_echo = pr.answer()
            r = {"k": k, "ip": ip, "run_ms": (t1 - t0) * 1e3,
                 "echo_from_start_ms": (t_echo - t0) * 1e3 if t_echo else None,
                 "arp_ms": (t_arp - t1) * 1e3 if t_arp else None,
                 "echo_ms": (t_echo - t1) * 1e3 if t_echo else None}
            results.append(r)
            if r["echo_ms"] is None:
                log("convergence %d: NO ANSWER within 5 s (arp %s)" % (k, r["arp_ms"]))
        ok = [r["echo_ms"] for r in results if r["echo_ms"] is not None]
        log("convergence: %d/%d answered, p50 %.1f ms, p99 %.1f ms after `run -d` returned" % (
            len(ok), n, pct(ok, 50), pct(ok, 99)))
    finally:
        pr.p.stdin.close()
        RES.stop_proc(pr.p)
        RES.procs = [(x, q) for x, q in RES.procs if q is not pr.p]
        # untimed: the convergence sandboxes go, so that the join phases start from a known count
        for i in range(0, len(made), 100):
            h1.w(*(["rm", "-f"] + made[i:i + 100]), check=False)


def measure_failure(st, reps, results):
    h1, h2, h3 = st.hosts
    for rep in range(1, reps + 1):
        wait_for("h3's entries on h1 and h2", 30, lambda: st.h3_back_on(h1) and st.h3_back_on(h2))
        time.sleep(0.5)
        t_kill = h3.kill_agent()
        gone = {}
        polls = 0
        t_end = t_kill + 3 * st.a.ttl + 10
        while len(gone) < 2 and time.monotonic() < t_end:
            for h in (h1, h2):
                if h.node not in gone and st.h3_gone_from(h):
                    gone[h.node] = time.monotonic() - t_kill
            polls += 1
            time.sleep(0.01)
        r = {"rep": rep, "ttl_s": st.a.ttl, "gone_s": gone, "polls": polls,
             "detect_s": max(gone.values()) if len(gone) == 2 else None}
        t0 = time.monotonic()
        h3.start_agent()
        try:
            wait_for("h3's entries back on h1 and h2", 30, lambda: st.h3_back_on(h1) and st.h3_back_on(h2))
            r["recover_s"] = time.monotonic() - t0
        except RuntimeError:
            r["recover_s"] = None
        results.append(r)
        log("failure rep %d: entries gone everywhere %s s after kill -9 (TTL %d s; h1 %s, h2 %s); back %s s "
            "after the agent restarted" % (rep, fmt(r["detect_s"], "%.2f"), st.a.ttl,
                                             fmt(gone.get("h1"), "%.2f"), fmt(gone.get("h2"), "%.2f"),
                                             fmt(r["recover_s"], "%.2f")))


def fake_hosts():
    """The host records of the fake hosts fake01..fake10 (VTEPs 198.19.1.1..10: no route)."""
    return [("/weft/v1/hosts/fake%02d" % n, json.dumps(
        {"node": "fake%02d" % n, "vtep": "198.19.1.%d" % n, "vxlan_port": 4789, "started": 0}).encode())
        for n in range(1, 11)]


def fake_records(net_id, start, count):
    """`count` endpoint records of the fake hosts (round robin) numbered from `start`."""
    kvs = []
    for i in range(start, start + count):
        node = "fake%02d" % (i % 10 + 1)
        sid = "%064x" % (0xFA4E0000 + i)
        ip = "10.77.%d.%d" % (100 + i // 250, i % 250 + 1)
        mac = "02:fa:00:%02x:%02x:%02x" % ((i >> 16) & 255, (i >> 8) & 255, i & 255)
        rec = {"node": node, "network": net_id, "sandbox": sid, "name": "fake%d" % i, "ipv4": ip, "mac": mac}
        kvs.append(("/weft/v1/endpoints/%s/%s/%s" % (net_id, node, sid), json.dumps(rec).encode()))
    return kvs


def remote_counts_settled(st, e, prefix):
    """Whether h1 and h2 each have one neighbour entry per endpoint in etcd that is not
    their own (what their agents must have applied)."""
    total = e.count(prefix)
    for h in st.hosts[:2]:
        if h.neigh_count(st.vx) != total - e.count(prefix + h.node + "/"):
            return False
    return True


IDLE_S = 4.0


def measure_join(st, phases, joins, results, bulk, idle):
    h1, h2 = st.hosts[0], st.hosts[1]
    e = st.etcd
    prefix = "/weft/v1/endpoints/%s/" % st.net_id
    leases = {}
    written = 0
    settled = lambda: remote_counts_settled(st, e, prefix)
    wait_for("h1 and h2 to apply every endpoint in etcd", 60, settled, every=0.2)
    try:
        # the fake hosts live through all phases, under a lease of their own
        leases["hosts"] = e.grant(3600)
        e.put_many(fake_hosts(), leases["hosts"])
        for ph, target in enumerate(phases):
            have = e.count(prefix)
            if target > have:
                lease = e.grant(3600)
                leases[ph] = lease
                n = target - have
                t0 = time.monotonic()
                e.put_many(fake_records(st.net_id, written, n), lease)
                written += n
                wait_for("%d fake endpoints applied on h1 and h2" % n, 120, settled, every=0.2)
                bulk.append({"endpoints": n, "applied_s": time.monotonic() - t0})
                log("%d fake endpoints written and applied on h1 and h2 in %.1f s" % (n, time.monotonic() - t0))
            elif target < have:
                # back down: the leases of the phases above this count go, with their records
                for p in sorted((k for k in leases if k != "hosts"), reverse=True):
                    if e.count(prefix) <= target:
                        break
                    e.revoke(leases.pop(p))
                wait_for("revoked fake endpoints removed on h1 and h2", 120, settled, every=0.2)
            have = e.count(prefix)
            h1pid, h2pid = h1.agent.pid, h2.agent.pid
            time.sleep(0.5)
            # the agents' CPU with nothing happening (periodic repairs read every entry back)
            c1, c2 = nsbench.cpu_ns(h1pid), nsbench.cpu_ns(h2pid)
            time.sleep(IDLE_S)
            idle.append({"phase": ph, "endpoints": have, "h1_ms_per_s": (nsbench.cpu_ns(h1pid) - c1) / 1e6 / IDLE_S,
                         "h2_ms_per_s": (nsbench.cpu_ns(h2pid) - c2) / 1e6 / IDLE_S})
            for j in range(1, joins + 1):
                name = "j%d-%d" % (ph, j)
                tw = time.perf_counter()
                th1 = nsbench.cpu_ns_by_thread(h1pid)
                c1, c2 = nsbench.cpu_ns(h1pid), nsbench.cpu_ns(h2pid)
                t0 = time.perf_counter()
                p = run(h1.argv("run", "-d", "--name", name, "--network", NETWORK, "--", "sleep", "inf"), env=h1.env)
                wall = time.perf_counter() - t0
                time.sleep(0.3)
                d1, d2 = nsbench.cpu_ns(h1pid) - c1, nsbench.cpu_ns(h2pid) - c2
                window = time.perf_counter() - tw
                th1 = {k: (v - th1.get(k, 0)) / 1e6 for k, v in nsbench.cpu_ns_by_thread(h1pid).items()}
                if p.returncode != 0:
                    raise RuntimeError("join %s: %s" % (name, p.stderr.decode(errors="replace")[-800:]))
                results.append({"phase": ph, "endpoints": have, "j": j, "wall_ms": wall * 1e3,
                                "agent_h1_ms": d1 / 1e6, "agent_h2_ms": d2 / 1e6, "window_s": window,
                                "agent_h1_threads_ms": {k: round(v, 3) for k, v in th1.items() if v > 0}})
                # the leave, timed the same way: h2's agent removes the entries of a sandbox
                # of another host, and their removal notifications come back to it
                tw = time.perf_counter()
                th2 = nsbench.cpu_ns_by_thread(h2pid)
                c1, c2 = nsbench.cpu_ns(h1pid), nsbench.cpu_ns(h2pid)
                t0 = time.perf_counter()
                p = run(h1.argv("rm", "-f", name), env=h1.env)
                wall = time.perf_counter() - t0
                time.sleep(0.3)
                d1, d2 = nsbench.cpu_ns(h1pid) - c1, nsbench.cpu_ns(h2pid) - c2
                th2 = {k: (v - th2.get(k, 0)) / 1e6 for k, v in nsbench.cpu_ns_by_thread(h2pid).items()}
                results[-1].update({"leave_wall_ms": wall * 1e3, "leave_h1_ms": d1 / 1e6, "leave_h2_ms": d2 / 1e6,
                                    "leave_window_s": time.perf_counter() - tw, "leave_ok": p.returncode == 0,
                                    "leave_h2_threads_ms": {k: round(v, 3) for k, v in th2.items() if v > 0}})
            ws = [r["wall_ms"] for r in results if r["phase"] == ph]
            log("join with %d endpoints: wall p50 %.1f ms; agent CPU h1 %.2f ms, h2 %.2f ms per join (mean)" % (
                have, pct(ws, 50), statistics.mean(r["agent_h1_ms"] for r in results if r["phase"] == ph),
                statistics.mean(r["agent_h2_ms"] for r in results if r["phase"] == ph)))
    finally:
        # endpoints first, then their hosts
        for lease in [v for k, v in leases.items() if k != "hosts"] + [leases.get("hosts")]:
            if lease is None:
                continue
            try:
                e.revoke(lease)
            except Exception as ex:
                log("revoke of the fake endpoints' lease: %s" % ex)
        if leases:
            try:
                wait_for("revoked fake endpoints removed on h1 and h2", 60, settled, every=0.2)
            except Exception as ex:
                log("after the join phases: %s" % ex)


# --------------------------------------------------------------------------- report
def fmt(v, spec="%.1f"):
    return "-" if v is None or v != v else spec % v


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else float("nan")


def summarize(out):
    lines = []
    summ = {}
    conv = out.get("convergence") or []
    if conv:
        echo = [r["echo_ms"] for r in conv if r["echo_ms"] is not None]
        arp = [r["arp_ms"] for r in conv if r["arp_ms"] is not None]
        runs = [r["run_ms"] for r in conv]
        fs = [r["echo_from_start_ms"] for r in conv if r.get("echo_from_start_ms") is not None]
        summ["convergence"] = {"n": len(conv), "answered": len(echo), "p50_ms": pct(echo, 50),
                               "p99_ms": pct(echo, 99), "max_ms": max(echo) if echo else None,
                               "arp_p50_ms": pct(arp, 50), "run_p50_ms": pct(runs, 50)}
        s = summ["convergence"]
        lines.append("Convergence (`weft run -d` on h1 returned -> first echo reply from the new sandbox to "
                     "the prober on h2), %d sandboxes:" % len(conv))
        lines.append(table([
            ["first echo reply", fmt(pct(echo, 50)), fmt(pct(echo, 90)), fmt(pct(echo, 99)),
             fmt(s["max_ms"]), "%d/%d" % (len(echo), len(conv))],
            ["first echo reply, from the start of `run -d`", fmt(pct(fs, 50)), fmt(pct(fs, 90)), fmt(pct(fs, 99)),
             fmt(max(fs) if fs else None), ""],
            ["first ARP reply (h2's entry)", fmt(pct(arp, 50)), fmt(pct(arp, 90)), fmt(pct(arp, 99)),
             fmt(max(arp) if arp else None), "%d/%d" % (len(arp), len(conv))],
            ["`weft run -d` itself", fmt(pct(runs, 50)), fmt(pct(runs, 90)), fmt(pct(runs, 99)), fmt(max(runs)), ""],
        ], ["ms", "p50", "p90", "p99", "max", "answered"]))
        lines.append("  target p99 < %.0f ms: %s" % (TARGET_CONV_P99_MS, "MET" if len(echo) == len(conv) and
                                                     pct(echo, 99) < TARGET_CONV_P99_MS else "NOT MET"))
    fail = out.get("failure") or []
    if fail:
        det = [r["detect_s"] for r in fail if r["detect_s"] is not None]
        rec = [r["recover_s"] for r in fail if r["recover_s"] is not None]
        summ["failure"] = {"ttl_s": fail[0]["ttl_s"], "detect_s": det, "recover_s": rec}
        lines.append("")
        lines.append("Failure detection (kill -9 of h3's agent -> its neighbour, FDB and flood entries gone on "
                     "h1 and h2), lease TTL %d s: %s s (%d repeats; %s); entries back %s s after its agent "
                     "restarted" % (fail[0]["ttl_s"], ", ".join("%.2f" % d for d in det) or "NEVER",
                                    len(fail), "within the TTL" if det and len(det) == len(fail) and
                                    max(det) <= fail[0]["ttl_s"] + 0.5 else "NOT within the TTL",
                                    ", ".join("%.2f" % d for d in rec) or "-"))
    tp = out.get("throughput") or []
    if tp:
        lines.append("")
        lines.append("Throughput, one TCP stream (iperf3 -t %d), Gbit/s, median of %d repeats:" % (
            out["meta"]["seconds"], out["meta"]["reps"]))
        rows = []
        summ["throughput"] = {}
        for tun in ("untuned", "tuned"):
            g = {p: med([r.get("gbps") for r in tp if r["path"] == p and r["tuning"] == tun]) for p in PATHS}
            summ["throughput"][tun] = g
            rows.append([tun, fmt(g["underlay"], "%.2f"), fmt(g["hand"], "%.2f"), fmt(g["weft"], "%.2f"),
                         fmt(g["hand"] / g["underlay"], "%.2f"), fmt(g["weft"] / g["hand"], "%.2f"),
                         fmt(g["weft"] / g["underlay"], "%.2f")])
        lines.append(table(rows, ["underlay veths", "underlay", "hand-built S2", "weft", "hand/underlay",
                                  "weft/hand", "weft/underlay"]))
        nb = {t: med([r.get("gbps") for r in tp if r["path"] == "weft-nobrnf" and r["tuning"] == t])
              for t in ("untuned", "tuned")}
        if any(v == v for v in nb.values()):
            summ["throughput"]["weft_nobrnf"] = nb
            lines.append("  diag: weft with bridge-nf-call-iptables=0 on h1 and h2 (no inet hooks, no conntrack "
                         "for bridged frames): %s / %s Gbit/s untuned / tuned, %s / %s of hand-built" % (
                             fmt(nb["untuned"], "%.2f"), fmt(nb["tuned"], "%.2f"),
                             fmt(nb["untuned"] / summ["throughput"]["untuned"]["hand"], "%.2f"),
                             fmt(nb["tuned"] / summ["throughput"]["tuned"]["hand"], "%.2f")))
        if "variant" in PATHS_USED:
            lines.append("  variant (the hand-built pair with `%s` on its VXLAN devices): variant/hand %s untuned, "
                         "%s tuned" % (out["meta"].get("variant"), *(fmt(
                             med([r.get("gbps") for r in tp if r["path"] == "variant" and r["tuning"] == t]) /
                             summ["throughput"][t]["hand"], "%.2f") for t in ("untuned", "tuned"))))
        g = summ["throughput"]["tuned"]
        lines.append("  targets (tuned): weft/hand >= %.2f: %s; weft/underlay >= %.2f: %s" % (
            TARGET_VS_HAND, "MET" if g["weft"] / g["hand"] >= TARGET_VS_HAND else "NOT MET",
            TARGET_VS_UNDERLAY, "MET" if g["weft"] / g["underlay"] >= TARGET_VS_UNDERLAY else "NOT MET"))
        fails = [r for r in tp if "error" in r]
        if fails:
            lines.append("  FAILED runs: %s" % "; ".join("%s/%s rep %d: %s" % (r["path"], r["tuning"], r["rep"],
                                                                             r["error"][:80]) for r in fails))
    js = out.get("join") or []
    if js:
        lines.append("")
        lines.append("Join cost (`weft run -d --network %s` on h1; agent CPU from the start of the command to "
                     "0.3 s after it returned):" % NETWORK)
        rows = []
        phases = sorted({r["phase"] for r in js})
        per = {}
        idle = {i["phase"]: i for i in out.get("idle") or []}
        for ph in phases:
            rs = [r for r in js if r["phase"] == ph]
            w = [r["wall_ms"] for r in rs]
            per[ph] = {"endpoints": rs[0]["endpoints"], "wall_p50": pct(w, 50), "wall_p90": pct(w, 90),
                       "h1_cpu": statistics.mean(r["agent_h1_ms"] for r in rs),
                       "h2_cpu": statistics.mean(r["agent_h2_ms"] for r in rs)}
            # net of what the agents spend anyway (the periodic repair) over the same window
            i = idle.get(ph)
            if i and all("window_s" in r for r in rs):
                win = statistics.mean(r["window_s"] for r in rs)
                per[ph]["h1_net"] = per[ph]["h1_cpu"] - i["h1_ms_per_s"] * win
                per[ph]["h2_net"] = per[ph]["h2_cpu"] - i["h2_ms_per_s"] * win
            rows.append([str(rs[0]["endpoints"]), str(len(rs)), fmt(per[ph]["wall_p50"]), fmt(per[ph]["wall_p90"]),
                         fmt(per[ph]["h1_cpu"], "%.2f"), fmt(per[ph]["h2_cpu"], "%.2f"),
                         fmt(per[ph].get("h1_net"), "%.2f"), fmt(per[ph].get("h2_net"), "%.2f")])
        lines.append(table(rows, ["endpoints", "joins", "wall p50 ms", "wall p90 ms", "agent h1 CPU ms",
                                  "agent h2 CPU ms", "h1 net of idle", "h2 net of idle"]))
        small = [per[p] for p in phases if per[p]["endpoints"] < 100]
        big = [per[p] for p in phases if per[p]["endpoints"] >= 100]
        if small and big:
            base_w = statistics.mean(s["wall_p50"] for s in small)
            base_c1 = statistics.mean(s["h1_cpu"] for s in small)
            base_c2 = statistics.mean(s["h2_cpu"] for s in small)
            rw, r1, r2 = big[0]["wall_p50"] / base_w, big[0]["h1_cpu"] / base_c1, big[0]["h2_cpu"] / base_c2
            summ["join"] = {"phases": per, "ratio_wall": rw, "ratio_cpu_h1": r1, "ratio_cpu_h2": r2}
            # where h1's agent spends a join, per thread name: mean ms per join, small vs big
            def threads(ph):
                rs = [r for r in js if r["phase"] == ph and "agent_h1_threads_ms" in r]
                names = {k for r in rs for k in r["agent_h1_threads_ms"]}
                return {k: sum(r["agent_h1_threads_ms"].get(k, 0) for r in rs) / len(rs) for k in names} if rs else {}
            ph_small = [p for p in phases if per[p]["endpoints"] < 100][0]
            ph_big = [p for p in phases if per[p]["endpoints"] >= 100][0]
            ts, tb = threads(ph_small), threads(ph_big)
            if ts or tb:
                grow = sorted(set(ts) | set(tb), key=lambda k: -(tb.get(k, 0) - ts.get(k, 0)))[:4]
                lines.append("  h1's agent per join, by thread (ms at %d -> %d endpoints): %s" % (
                    per[ph_small]["endpoints"], per[ph_big]["endpoints"],
                    ", ".join("%s %.2f -> %.2f" % (k, ts.get(k, 0), tb.get(k, 0)) for k in grow)))
            if all("h1_net" in x for x in small + big[:1]):
                n1 = big[0]["h1_net"] / statistics.mean(x["h1_net"] for x in small)
                n2 = big[0]["h2_net"] / statistics.mean(x["h2_net"] for x in small)
                summ["join"].update(ratio_net_h1=n1, ratio_net_h2=n2)
                lines.append("  net of the idle agents' CPU over the same window: h1 %.2f, h2 %.2f" % (n1, n2))
            lines.append("  %d / %d endpoints: wall %.2f, agent CPU h1 %.2f, h2 %.2f (flat <= %.1f: %s)" % (
                big[0]["endpoints"], small[0]["endpoints"], rw, r1, r2, TARGET_JOIN_FLAT,
                "MET" if max(rw, r1, r2) <= TARGET_JOIN_FLAT else "NOT MET"))
        if all("leave_h2_ms" in r for r in js):
            lines.append("")
            lines.append("Leave cost (`weft rm -f` of that sandbox on h1; agent CPU from the start of the command "
                         "to 0.3 s after it returned; h2 removes a remote sandbox's entries):")
            rows = []
            lv = {}
            for ph in phases:
                rs = [r for r in js if r["phase"] == ph]
                x = {"endpoints": rs[0]["endpoints"], "wall_p50": pct([r["leave_wall_ms"] for r in rs], 50),
                     "h1_cpu": statistics.mean(r["leave_h1_ms"] for r in rs),
                     "h2_cpu": statistics.mean(r["leave_h2_ms"] for r in rs),
                     "failed": sum(1 for r in rs if not r.get("leave_ok", True))}
                i = idle.get(ph)
                if i:
                    win = statistics.mean(r["leave_window_s"] for r in rs)
                    x["h1_net"] = x["h1_cpu"] - i["h1_ms_per_s"] * win
                    x["h2_net"] = x["h2_cpu"] - i["h2_ms_per_s"] * win
                lv[ph] = x
                rows.append([str(x["endpoints"]), str(len(rs)), fmt(x["wall_p50"]), fmt(x["h1_cpu"], "%.2f"),
                             fmt(x["h2_cpu"], "%.2f"), fmt(x.get("h1_net"), "%.2f"), fmt(x.get("h2_net"), "%.2f"),
                             str(x["failed"])])
            lines.append(table(rows, ["endpoints", "leaves", "wall p50 ms", "agent h1 CPU ms", "agent h2 CPU ms",
                                      "h1 net of idle", "h2 net of idle", "rm failed"]))
            sm = [lv[p] for p in phases if lv[p]["endpoints"] < 100]
            bg = [lv[p] for p in phases if lv[p]["endpoints"] >= 100]
            if sm and bg:
                r1 = bg[0]["h1_cpu"] / statistics.mean(x["h1_cpu"] for x in sm)
                r2 = bg[0]["h2_cpu"] / statistics.mean(x["h2_cpu"] for x in sm)
                summ["leave"] = {"phases": lv, "ratio_cpu_h1": r1, "ratio_cpu_h2": r2}
                lines.append("  %d / %d endpoints: agent CPU per leave h1 %.2f, h2 %.2f" % (
                    bg[0]["endpoints"], sm[0]["endpoints"], r1, r2))

                def h2_threads(ph):
                    rs = [r for r in js if r["phase"] == ph and "leave_h2_threads_ms" in r]
                    names = {k for r in rs for k in r["leave_h2_threads_ms"]}
                    return {k: sum(r["leave_h2_threads_ms"].get(k, 0) for r in rs) / len(rs) for k in names}
                ps = [p for p in phases if lv[p]["endpoints"] < 100][0]
                pb = [p for p in phases if lv[p]["endpoints"] >= 100][0]
                ts, tb = h2_threads(ps), h2_threads(pb)
                if ts or tb:
                    grow = sorted(set(ts) | set(tb), key=lambda k: -(tb.get(k, 0) - ts.get(k, 0)))[:4]
                    lines.append("  h2's agent per leave, by thread (ms at %d -> %d endpoints): %s" % (
                        lv[ps]["endpoints"], lv[pb]["endpoints"],
                        ", ".join("%s %.2f -> %.2f" % (k, ts.get(k, 0), tb.get(k, 0)) for k in grow)))
        for i in out.get("idle") or []:
            lines.append("  idle agents with %d endpoints (%.0f s, no join): h1 %.2f, h2 %.2f ms CPU per second" % (
                i["endpoints"], IDLE_S, i["h1_ms_per_s"], i["h2_ms_per_s"]))
        for b in out.get("bulk") or []:
            lines.append("  (%d fake endpoints were written to etcd and applied by h1 and h2 in %.1f s)" % (
                b["endpoints"], b["applied_s"]))
    m = out["meta"]
    oth = [r["others_cores_during"] for r in tp if r.get("others_cores_during") is not None]
    if oth:
        lines.append("")
        lines.append("CPU used by everything else during the throughput runs: mean %.2f, max %.2f cores%s" % (
            statistics.mean(oth), max(oth), " (NOISY)" if max(oth) >= 0.3 else ""))
    w = m.get("weft") or {}
    if w:
        lines.append("weft binary: %s, built %s, git HEAD %s with %d uncommitted source file(s)%s" % (
            w.get("version", "?"), w.get("mtime"), w.get("git_head", "?"), w.get("uncommitted_source_files", 0),
            " (cargo build FAILED: older binary)" if w.get("build_failed") else ""))
    out["summary"] = summ
    return "\n".join(lines)


# --------------------------------------------------------------------------- hygiene
def clean_stale(weft_bin):
    """What an earlier run killed with SIGKILL left: its processes (recorded PIDs checked
    against their command lines, then anything in its namespaces), namespaces and temp dir.
    Its weft state goes with its temp dir: every sandbox of it lived in its namespaces."""
    for old, d in KIT.stale_runs():
        log("cleaning up after an earlier run (pid %d): %s" % (old, d))
        KIT.kill_recorded(d, (b"etcd", b"iperf3", b"weft", b"overlay_probe"))
        stale = nsbench.Resources(KIT)
        stale.dir = d
        stale.namespaces = [n for n in ab.ns_list() if n.startswith("wob-%d-" % old)]
        stale.made_dir = True
        stale.cleanup()
    KIT.remove_stale_namespaces()


def ensure_tools(install):
    need = [pkg for binary, pkg in (("iperf3", "iperf3"), ("etcd", "etcd-server"), ("ethtool", "ethtool"),
                                    ("bridge", "iproute2")) if not nsbench.which(binary)]
    if need and install:
        nsbench.apt_install(need, log)
    return [b for b in ("iperf3", "etcd", "ethtool", "bridge", "nsenter", "ss") if not nsbench.which(b)]


# --------------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(prog="bench/overlay", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 10 convergence sandboxes, iperf3 -t 2 x 1, 1 failure, 5 joins per phase (~1-2 min)")
    ap.add_argument("--sandboxes", type=int, help="convergence sandboxes (default 50; quick 10)")
    ap.add_argument("--seconds", "-t", type=int, help="iperf3 -t (default 4; quick 2)")
    ap.add_argument("--reps", "-r", type=int, help="throughput repeats per path and tuning (default 3; quick 1)")
    ap.add_argument("--failures", type=int, help="kill -9 repeats (default 3; quick 1)")
    ap.add_argument("--ttl", type=int, default=3, help="the agents' --lease-ttl in seconds (default 3)")
    ap.add_argument("--joins", type=int, help="timed joins per endpoint count (default 15; quick 5)")
    ap.add_argument("--endpoints", default=None,
                    help="endpoint counts of the join phases (default 10,1000,10; quick 10,1000)")
    ap.add_argument("--variant", help="also measure a second hand-built pair whose VXLAN devices get these extra "
                    "`ip link add ... type vxlan` arguments (e.g. \"udpcsum\"): what a setting would change")
    ap.add_argument("--variant-link", help="the same, generic link arguments before `type` (e.g. \"gso_max_size 65536\")")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: throughput,convergence,join,failure")
    ap.add_argument("--hold", type=float, default=0,
                    help="after set-up, print what runs where and wait this many seconds before measuring "
                         "(to look at the kernel state, attach perf)")
    nsbench.standard_args(ap, "overlay", 2.0, "each throughput run")
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/overlay: must run as root")
    q = a.quick
    nconv = a.sandboxes or (10 if q else 50)
    secs = a.seconds or (2 if q else 4)
    reps = a.reps or (1 if q else 3)
    fails = a.failures or (1 if q else 3)
    joins = a.joins or (5 if q else 15)
    phases = [int(x) for x in (a.endpoints or ("10,1000" if q else "10,1000,10")).split(",") if x]
    skip = set(x for x in a.skip.split(",") if x)
    if not 2 <= a.ttl <= 3600:
        raise SystemExit("--ttl must be between 2 and 3600")
    if not 1 <= nconv <= 250:
        raise SystemExit("--sandboxes must be 1..250")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    outf = a.out or os.path.join(BENCH, "results", "overlay-%s.json" % stamp)

    def body():
        missing = ensure_tools(not a.no_install)
        if missing:
            raise SystemExit("missing tools: %s" % " ".join(missing))
        weft_info = ab.build_weft(a.no_build)
        weft_bin = weft_info["binary"]
        started = time.time()
        out = {"meta": {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "argv": sys.argv[1:],
                        "kernel": os.uname().release, "nproc": os.cpu_count(), "seconds": secs, "reps": reps,
                        "ttl_s": a.ttl, "weft": weft_info,
                        "variant": " ".join(x for x in (a.variant_link, a.variant) if x) or None,
                        "iperf3": run(["iperf3", "--version"]).stdout.decode(errors="replace").splitlines()[:1],
                        "etcd": run(["etcd", "--version"]).stdout.decode(errors="replace").splitlines()[:1]},
               "throughput": [], "convergence": [], "failure": [], "join": [], "bulk": [], "idle": []}
        RES.mkdir()
        st = Setup(a, weft_bin)
        t0 = time.time()
        st.build()
        out["meta"]["setup_s"] = round(time.time() - t0, 1)
        out["meta"]["topology"] = st.info
        log("set up in %.1f s: 3 weft hosts, etcd, hand-built S2 pair; network %s (%s)" % (
            time.time() - t0, NETWORK, st.vx))
        if a.hold > 0:
            log("hold: namespaces %s; weft hosts %s (state under %s); sandboxes %s; waiting %.0f s" % (
                " ".join(RES.namespaces), " ".join(h.ns for h in st.hosts), RES.dir,
                json.dumps({k: (v["ip"], v["netns"]) for k, v in st.sb.items()}), a.hold))
            time.sleep(a.hold)
        if "throughput" not in skip:
            measure_throughput(st, reps, secs, a.wait_idle, out["throughput"])
        if "convergence" not in skip:
            measure_convergence(st, nconv, out["convergence"])
        if "join" not in skip:
            measure_join(st, phases, joins, out["join"], out["bulk"], out["idle"])
        if "failure" not in skip:
            measure_failure(st, fails, out["failure"])
        out["meta"]["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        out["meta"]["elapsed_s"] = round(time.time() - started, 1)
        text = summarize(out)
        os.makedirs(os.path.dirname(outf), exist_ok=True)
        with open(outf, "w") as f:
            json.dump(out, f, indent=1)
        print(text)
        print("raw results: %s" % os.path.relpath(outf, REPO))
        return 0

    return KIT.guarded(body, prepare=lambda: clean_stale(ab.weft_binary()), cleanup=RES.cleanup)


if __name__ == "__main__":
    sys.exit(main() or 0)
