#!/usr/bin/env python3
"""bench/dns: weft's DNS server (a task of the host agent) against aardvark-dns, with the
same 1,000 names, measured by dnsperf in one run (python3 stdlib; dnsperf, aardvark-dns and a
C responder built with gcc as tools).

Topology (P = this run's pid; every namespace is made by this run and deleted at its end,
also on error, Ctrl-C or SIGTERM; the root network namespace is never changed and no
traffic leaves these namespaces):

  wdb-P-up   the upstream: dns_responder on 0.0.0.0:53 (answers any A query, TTL 0)
             w0 198.18.53.1/30 <-> up0 198.18.53.2 in wdb-P-wh
             a0 198.18.54.1/30 <-> up0 198.18.54.2 in wdb-P-ah
  wdb-P-wh   weft's host: its own --state-dir/--run-dir/--config under the run's temp dir
             (resolv_conf names 198.18.53.1, the agent on, the DNS rate limit off when the
             binary knows the key); network `dnsb` 10.92.0.0/16 (gateway 10.92.0.1) with
             1,000 sandboxes s0001..s1000 (`weft run -d -- sleep inf`) and the client
             sandbox `dnsclient`; dnsperf runs in the client's network namespace against
             10.92.0.1:53, which weft redirects to its agent.
  wdb-P-ah   aardvark's host: bridge wdbbr0 10.91.0.1/16, aardvark-dns 1.4 with a config
             directory as netavark writes it (file `dnsb`: gateway and upstream on the first
             line, then one line per container: id, IPv4, IPv6, names), the same 1,000
             names at 10.91.0.3.. plus the client; aardvark binds 10.91.0.1:53.
             The ceiling: a second dns_responder on 10.91.0.1:5300.
  wdb-P-ac   aardvark's client: eth0 10.91.0.2/16 on wdbbr0 (container `dnsclient` in
             aardvark's config, so aardvark knows it as a member of the network).

Targets: weft-local / aard-local (a query file of the 1,000 names, type A), weft-fwd /
aard-fwd (100,000 distinct names under fwd.test, answered by the upstream; TTL 0 so no
cache can keep them), ceiling (the responder on aardvark's gateway, same query file as
forwarding). Each repeat runs every target twice: saturated (dnsperf -q 100 outstanding,
-c 4 sockets, -l SECONDS) for queries per second and the server's CPU per answer, and
paced (-Q RATE) for latency at the same offered load for every server. Latency comes
from dnsperf -v (one line per answer with its latency).
"""
import argparse
import json
import os
import re
import random
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import attach_bench as ab  # noqa: E402  (helpers only: run, must, pct, table, build, cpu marks)
import nsbench  # noqa: E402  (resources, clean-up, root check, lock)

BENCH = os.path.dirname(HERE)
REPO = os.path.dirname(BENCH)
KIT = nsbench.Kit("dns", "wdb-", "dns_bench.py")
PID = KIT.pid
AARDVARK = os.environ.get("AARDVARK_BIN", "/usr/lib/podman/aardvark-dns")
RESPONDER_SRC = os.path.join(HERE, "dns_responder.c")
HZ = os.sysconf("SC_CLK_TCK")

NAMES = 1000
NETWORK = "dnsb"
W_SUBNET, W_GW = "10.92.0.0/16", "10.92.0.1"
A_SUBNET_LEN, A_GW, A_CLIENT = 16, "10.91.0.1", "10.91.0.2"
UP_W, UP_W_HOST = "198.18.53.1", "198.18.53.2"
UP_A, UP_A_HOST = "198.18.54.1", "198.18.54.2"
UP_ANSWER = "198.51.100.7"
CEIL_PORT = 5300
FWD_NAMES = 100000

TARGETS = {
    # id: (server, query file, what)
    "weft-local": ("weft", "local", "1,000 sandbox names, answered by weft's agent"),
    "aard-local": ("aardvark", "local", "the same 1,000 names, answered by aardvark-dns"),
    "weft-fwd": ("weft", "fwd", "names forwarded by weft to the upstream responder"),
    "aard-fwd": ("aardvark", "fwd", "names forwarded by aardvark-dns to the upstream responder"),
    "ceiling": ("ceiling", "fwd", "the trivial responder itself on aardvark's gateway"),
    "ceiling-w": ("weft", "fwd", "the trivial responder on weft's gateway (port 5300, no redirect)"),
}
TARGET_LOCAL_QPS, TARGET_LOCAL_CPU, TARGET_LOCAL_P99, TARGET_FWD_QPS, TARGET_RSS_MIB = 1.0, 0.5, 1.5, 1.0, 20.0


log = KIT.log
run = ab.run
must = ab.must
pct = ab.pct
table = ab.table
nsx = nsbench.nsx
ns_name = KIT.ns_name


# --------------------------------------------------------------------------- resources
class Resources(nsbench.Resources):
    """What nsbench.Resources keeps, plus aardvark-dns (by the PID in its pid file, checked
    against its command line), the weft host (sandboxes and network removed with weft
    itself, its agent stopped) and the dnsperf running now."""

    def __init__(self):
        super().__init__(KIT)
        self.weft = None
        self.aardvark_pid = None
        self.client = None     # the dnsperf running now

    def stop_procs(self):
        c, self.client = self.client, None
        if c is not None and c.returncode is None:
            try:
                c.kill()
                c.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired, ChildProcessError):
                pass
        super().stop_procs()

    def stop_aardvark(self):
        pid = self.aardvark_pid
        self.aardvark_pid = None
        if pid and is_aardvark(pid, self.dir):
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                return
            for _ in range(50):
                if not os.path.exists("/proc/%d" % pid):
                    return
                time.sleep(0.05)
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def cleanup(self):
        try:
            ab.back_to_root()
        except OSError as e:
            log("could not return to the root namespace: %s" % e)
        self.stop_procs()
        self.stop_aardvark()
        if self.weft is not None:
            try:
                self.weft.teardown()
            except Exception as e:  # the namespaces go anyway
                log("weft teardown: %s" % e)
            self.weft = None
        super().cleanup()


RES = Resources()


def is_aardvark(pid, config_dir):
    try:
        cmd = open("/proc/%d/cmdline" % pid, "rb").read().split(b"\0")
    except OSError:
        return False
    return bool(cmd) and cmd[0].endswith(b"aardvark-dns") and any(
        a.startswith(config_dir.encode()) for a in cmd)


# --------------------------------------------------------------------------- /proc
def cpu_ticks(pid):
    """utime + stime of the whole process (all its threads), in clock ticks."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def thread_ticks(pid, comm):
    """utime + stime of the process's threads named comm, in clock ticks."""
    t = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            if open("/proc/%d/task/%s/comm" % (pid, tid)).read().strip() != comm:
                continue
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            t += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return t


def rss_mib(pid, key="VmRSS"):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def memory(pid):
    """Resident memory in MiB: all (VmRSS), anonymous (heap, stacks) and file-backed (the
    binary's pages)."""
    try:
        fds = len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        fds = None
    return {"rss": rss_mib(pid), "anon": rss_mib(pid, "RssAnon"), "file": rss_mib(pid, "RssFile"),
            "fds": fds, "threads": len(os.listdir("/proc/%d/task" % pid))}


def ksoftirqd_pids():
    out = []
    for e in os.listdir("/proc"):
        if e.isdigit():
            try:
                if open("/proc/%s/comm" % e).read().startswith("ksoftirqd/"):
                    out.append(int(e))
            except OSError:
                pass
    return out


KSOFTIRQD = ksoftirqd_pids()


def ksoftirqd_s():
    t = 0
    for p in KSOFTIRQD:
        try:
            t += cpu_ticks(p)
        except OSError:
            pass
    return t / HZ


def machine_busy():
    """(CPU s the machine spent in processes: user, nice, system, steal; CPU s in interrupts:
    irq, softirq). Interrupt time is kept apart: with IRQ time accounting the kernel charges
    the packets' softirq work to no process, so it would count as "others" otherwise."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[0] + v[1] + v[2] + v[7]) / HZ, (v[5] + v[6]) / HZ


# --------------------------------------------------------------------------- DNS probe
def query(ns, server, port, name, timeout=1.0):
    """One A query from inside namespace ns (a python child there); returns (rcode, [A])."""
    code = r"""
import socket, struct, sys
name, server, port, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
q = struct.pack('>HHHHHH', 0x4242, 0x0100, 1, 0, 0, 0)
for l in name.rstrip('.').split('.'):
    q += bytes([len(l)]) + l.encode()
q += b'\0' + struct.pack('>HH', 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(timeout)
s.sendto(q, (server, port))
try:
    r = s.recv(4096)
except socket.timeout:
    print('timeout'); sys.exit(0)
rcode = r[3] & 15
an = struct.unpack('>H', r[6:8])[0]
off = len(q)
ips = []
for _ in range(an):
    if r[off] & 0xc0 == 0xc0:
        off += 2
    else:
        while r[off]:
            off += r[off] + 1
        off += 1
    t, c, ttl, rdl = struct.unpack('>HHIH', r[off:off + 10])
    off += 10
    if t == 1 and rdl == 4:
        ips.append(socket.inet_ntoa(r[off:off + 4]))
    off += rdl
print(rcode, ' '.join(ips))
"""
    p = run(nsx(ns) + ["python3", "-c", code, name, server, str(port), str(timeout)])
    out = p.stdout.decode().strip()
    if p.returncode != 0 or not out or out == "timeout":
        return None, []
    parts = out.split()
    return int(parts[0]), parts[1:]


def wait_answer(ns, server, port, name, want, timeout=10.0):
    t_end = time.monotonic() + timeout
    got = None
    while time.monotonic() < t_end:
        got = query(ns, server, port, name)
        if got[0] == 0 and (want is None or want in got[1]):
            return got
        time.sleep(0.2)
    raise RuntimeError("%s:%d from %s: %s gave %r, expected %s" % (server, port, ns, name, got, want))


# --------------------------------------------------------------------------- the pieces
def aard_ip(i):
    """Address of sandbox i (1-based) on aardvark's network: 10.91.0.3 onwards."""
    n = i + 2
    return "10.91.%d.%d" % (n // 256, n % 256)


def veth_link(a_ns, a_if, a_ip, b_ns, b_if, b_ip, plen):
    must(["ip", "-n", a_ns, "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", b_ns])
    must(["ip", "-n", a_ns, "addr", "add", "%s/%d" % (a_ip, plen), "dev", a_if])
    must(["ip", "-n", b_ns, "addr", "add", "%s/%d" % (b_ip, plen), "dev", b_if])
    must(["ip", "-n", a_ns, "link", "set", a_if, "up"])
    must(["ip", "-n", b_ns, "link", "set", b_if, "up"])


class Upstream:
    def __init__(self, responder):
        self.ns = ns_name("up")
        self.responder = responder

    def start(self):
        RES.add_ns(self.ns)
        self.proc = RES.bg("upstream", self.ns, [self.responder, "0.0.0.0", "53", UP_ANSWER])


class Aardvark:
    """aardvark-dns for network `dnsb`, as netavark would run it (its own config directory,
    `aardvark-dns --config DIR -p 53 run`, which forks and leaves its pid in DIR)."""

    def __init__(self, responder):
        self.host = ns_name("ah")
        self.client = ns_name("ac")
        self.cfg = os.path.join(RES.dir, "aardvark")
        self.responder = responder
        self.pid = None

    def start(self, upstream_ns):
        RES.add_ns(self.host, self.client)
        h, c = self.host, self.client
        must(["ip", "-n", h, "link", "add", "wdbbr0", "type", "bridge"])
        must(["ip", "-n", h, "addr", "add", "%s/%d" % (A_GW, A_SUBNET_LEN), "dev", "wdbbr0"])
        must(["ip", "-n", h, "link", "set", "wdbbr0", "up"])
        must(["ip", "-n", h, "link", "add", "wdbc0", "type", "veth", "peer", "name", "eth0", "netns", c])
        must(["ip", "-n", h, "link", "set", "wdbc0", "master", "wdbbr0", "up"])
        must(["ip", "-n", c, "addr", "add", "%s/%d" % (A_CLIENT, A_SUBNET_LEN), "dev", "eth0"])
        must(["ip", "-n", c, "link", "set", "eth0", "up"])
        veth_link(upstream_ns, "a0", UP_A, h, "up0", UP_A_HOST, 30)
        os.makedirs(self.cfg)
        # netavark's format: the network's gateway(s) and its DNS servers on the first line,
        # then `ID IPV4 IPV6 NAME,ALIAS...` per container (podman adds the short ID as alias)
        lines = ["%s %s" % (A_GW, UP_A), "%064x %s  dnsclient,%012x" % (0xC11E, A_CLIENT, 0xC11E)]
        for i in range(1, NAMES + 1):
            cid = 0xA000 + i
            lines.append("%064x %s  s%04d,%012x" % (cid, aard_ip(i), i, cid))
        with open(os.path.join(self.cfg, NETWORK), "w") as f:
            f.write("\n".join(lines) + "\n")
        p = run(nsx(h) + [AARDVARK, "--config", self.cfg, "-p", "53", "run"], env=ab.base_env(), timeout=30)
        if p.returncode != 0:
            raise RuntimeError("aardvark-dns run failed: %s" % p.stderr.decode(errors="replace"))
        self.pid = int(open(os.path.join(self.cfg, "aardvark.pid")).read().strip())
        RES.aardvark_pid = self.pid
        with open(os.path.join(RES.dir, "pids", "aardvark.pid"), "w") as f:
            f.write("%d\n" % self.pid)
        RES.bg("ceiling", h, [self.responder, A_GW, str(CEIL_PORT), UP_ANSWER])
        wait_answer(c, A_GW, 53, "s0001", aard_ip(1))
        wait_answer(c, A_GW, 53, "probe.fwd.test", UP_ANSWER)
        wait_answer(c, A_GW, CEIL_PORT, "probe.fwd.test", UP_ANSWER)


class Weft:
    def __init__(self, binary, responder):
        self.bin = binary
        self.responder = responder
        self.ceiling_pid = None
        self.ns = ns_name("wh")
        self.dir = os.path.join(RES.dir, "weft")
        self.env = ab.base_env()
        self.sandboxes = []
        self.network = None
        self.client_netns = None
        self.agent_pid = None
        self.dns_error = None
        self.notes = []

    def base(self):
        return [self.bin, "--state-dir", self.dir + "/state", "--run-dir", self.dir + "/run",
                "--config", self.dir + "/weft.toml"]

    def w(self, *args, check=True, timeout=120):
        p = run(nsx(self.ns) + self.base() + list(args), env=self.env, timeout=timeout)
        if check and p.returncode != 0:
            raise RuntimeError("weft %s failed rc=%d: %s%s" % (" ".join(args[:6]), p.returncode,
                               p.stdout.decode(errors="replace")[-1500:], p.stderr.decode(errors="replace")[-1500:]))
        return p

    def json(self, *args):
        return json.loads(self.w("--format", "json", *args).stdout)

    def config_text(self, rate_limit_key):
        text = 'agent = true\nresolv_conf = "%s/resolv.conf"\n' % self.dir
        if rate_limit_key:
            # the benchmark floods from one sandbox: weft's per-source limit must not drop it
            text += "%s = 0\n" % rate_limit_key
        return text

    def start(self, upstream_ns, rate_limit_key):
        RES.add_ns(self.ns)
        RES.weft = self
        veth_link(upstream_ns, "w0", UP_W, self.ns, "up0", UP_W_HOST, 30)
        os.makedirs(self.dir)
        with open(self.dir + "/resolv.conf", "w") as f:
            f.write("nameserver %s\n" % UP_W)
        with open(self.dir + "/weft.toml", "w") as f:
            f.write(self.config_text(rate_limit_key))
        if rate_limit_key:
            self.notes.append("%s = 0 (per-source rate limit off)" % rate_limit_key)
        else:
            self.notes.append("no rate-limit key known to this weft: its default applies")
        self.network = NETWORK
        self.w("network", "create", NETWORK, "--subnet", W_SUBNET)
        t0 = time.monotonic()
        for i in range(1, NAMES + 1):
            name = "s%04d" % i
            self.sandboxes.append(name)
            self.w("run", "-d", "--name", name, "--network", NETWORK, "--", "sleep", "inf")
            if i % 250 == 0:
                log("weft: %d sandboxes running (%.0f s)" % (i, time.monotonic() - t0))
        self.sandboxes.append("dnsclient")
        self.w("run", "-d", "--name", "dnsclient", "--network", NETWORK, "--", "sleep", "inf")
        info = self.json("inspect", "dnsclient")[0]
        self.client_netns = info.get("netns")
        self.client_ip = info["networks"][0]["ipv4"].split("/")[0]
        self.setup_s = time.monotonic() - t0
        self.s1_ip = self.json("inspect", "s0001")[0]["networks"][0]["ipv4"].split("/")[0]
        st = self.json("daemon", "status")
        self.agent_pid = (st.get("status") or {}).get("pid") if st.get("running") else None
        self.dns_port_file = os.path.join(self.dir, "run", "dns.port")
        if self.client_netns:
            self.neighbours(info)
            # the ceiling on weft's bridge: the path without the redirect and the agent
            proc = RES.bg("ceiling-w", self.ns, [self.responder, W_GW, str(CEIL_PORT), UP_ANSWER])
            try:
                wait_answer(self.client_netns, W_GW, CEIL_PORT, "probe.fwd.test", UP_ANSWER)
            except RuntimeError as e:
                raise RuntimeError("%s (responder %s: %s)" % (e, "exited %s" % proc.poll() if proc.poll() is not None
                                                              else "running", open(os.path.join(RES.dir, "ceiling-w.log"),
                                                                                   errors="replace").read()[-300:]))
            self.ceiling_pid = proc.pid
        # is weft's DNS server there? (it lands with the agent; before that the benchmark
        # still measures aardvark, the ceiling and the weft set-up)
        try:
            if self.agent_pid is None:
                raise RuntimeError("no weft agent running")
            if not self.client_netns:
                raise RuntimeError("inspect shows no netns path for the client sandbox")
            resolv = self.sandbox_resolv()
            self.notes.append("client's resolv.conf: %s" % " | ".join(resolv.strip().splitlines()))
            wait_answer(self.client_netns, W_GW, 53, "s0001", self.s1_ip, timeout=5)
            wait_answer(self.client_netns, W_GW, 53, "probe.fwd.test", UP_ANSWER, timeout=5)
        except Exception as e:
            self.dns_error = str(e)

    def neighbours(self, info):
        """Make sure the client and the host know each other's MAC address. With ~1,000
        ports on one bridge a sandbox's ARP request for its gateway goes unanswered: the
        bridge floods the broadcast to every port before it passes it up to the host, each copy
        is one packet in the CPU's input backlog (net.core.netdev_max_backlog, 1,000 by
        default, machine-wide), and the host's reply, sent right after, finds the backlog full
        and is dropped. The run checks that first (a UDP packet to the gateway, ARP given 4 s)
        and records it; when it fails, it writes permanent neighbour entries in the client
        sandbox (gateway) and in weft's host namespace (client), which changes nothing else."""
        self.bridge = self.json("network", "inspect", NETWORK)[0]["bridge"]
        mac = info["networks"][0]["mac"]
        try:
            backlog = open("/proc/sys/net/core/netdev_max_backlog").read().strip()
        except OSError:
            backlog = "?"
        probe = RES.bg("arp-probe", self.ns, [self.responder, W_GW, str(CEIL_PORT + 1), UP_ANSWER])
        time.sleep(0.2)
        rc, _ = query(self.client_netns, W_GW, CEIL_PORT + 1, "arp.fwd.test", timeout=4.0)
        try:
            os.killpg(probe.pid, signal.SIGTERM)
            probe.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        RES.procs = [(n, p) for n, p in RES.procs if p is not probe]
        self.arp_ok = rc == 0
        if self.arp_ok:
            self.notes.append("the client's ARP for its gateway was answered (%d ports on the bridge)"
                              % (NAMES + 1))
            return
        br_mac = json.loads(must(["ip", "-n", self.ns, "-j", "link", "show", self.bridge]).stdout)[0]["address"]
        must(nsx(self.client_netns) + ["ip", "neigh", "replace", W_GW, "lladdr", br_mac, "dev", "eth0",
                                       "nud", "permanent"])
        must(["ip", "-n", self.ns, "neigh", "replace", self.client_ip, "lladdr", mac, "dev", self.bridge,
              "nud", "permanent"])
        self.notes.append("the client's ARP for its gateway went UNANSWERED with %d ports on the bridge "
                          "(netdev_max_backlog %s): static neighbour entries set (client -> gateway, "
                          "host -> client)" % (NAMES + 1, backlog))

    def sandbox_resolv(self):
        p = self.w("exec", "dnsclient", "--", "cat", "/etc/resolv.conf", check=False)
        return p.stdout.decode(errors="replace")

    def teardown(self):
        if not os.path.exists("/run/netns/" + self.ns):
            return
        try:
            names = [s["name"] for s in self.json("ps", "-a")]
        except (ValueError, RuntimeError):
            names = list(self.sandboxes)
        ok = True
        for i in range(0, len(names), 200):
            p = self.w("rm", "-f", *names[i:i + 200], check=False, timeout=600)
            if p.returncode != 0:
                ok = False
                log("weft rm -f: %s" % p.stderr.decode(errors="replace").strip()[:500])
        if self.network:
            p = self.w("network", "rm", self.network, check=False)
            if p.returncode != 0:
                ok = False
                log("weft network rm: %s" % p.stderr.decode(errors="replace").strip()[:500])
        self.w("daemon", "stop", check=False)
        if not ok:
            self.w("gc", check=False)
        self.sandboxes, self.network = [], None


def rate_limit_key(weft_bin):
    """The config key of weft's per-source DNS rate limit that this weft binary accepts, if
    any: the config file is parsed strictly (unknown keys are errors), so each candidate is
    tried on `weft ps` with a scratch state dir (no namespace is touched; ps starts nothing)."""
    d = os.path.join(RES.dir, "keyprobe")
    os.makedirs(d, exist_ok=True)
    for key in ("dns_rate_limit", "dns_rate_limit_qps", "dns_rate"):
        with open(d + "/weft.toml", "w") as f:
            f.write("%s = 0\n" % key)
        p = run([weft_bin, "--state-dir", d + "/state", "--run-dir", d + "/run", "--config", d + "/weft.toml",
                 "ps"], env=ab.base_env(), timeout=30)
        if p.returncode == 0:
            return key
    return None


# --------------------------------------------------------------------------- measurement
def write_queries(d):
    names = ["s%04d" % i for i in range(1, NAMES + 1)]
    random.Random(8).shuffle(names)
    with open(os.path.join(d, "local.q"), "w") as f:
        f.write("".join("%s A\n" % n for n in names))
    with open(os.path.join(d, "fwd.q"), "w") as f:
        f.write("".join("h%06d.fwd.test A\n" % i for i in range(FWD_NAMES)))


def parse_dnsperf(path):
    """Summary numbers and every answer's latency from `dnsperf -v` output."""
    lat = []
    codes = {}
    summ = {}
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("> "):
                parts = line.split()
                codes[parts[1]] = codes.get(parts[1], 0) + 1
                try:
                    lat.append(float(parts[-1]))
                except ValueError:
                    pass
            else:
                s = line.strip()
                m = re.match(r"Queries (sent|completed|lost):\s+(\d+)", s)
                if m:
                    summ[m.group(1)] = int(m.group(2))
                m = re.match(r"Queries per second:\s+([\d.]+)", s)
                if m:
                    summ["qps"] = float(m.group(1))
                m = re.match(r"Average packet size:\s+request (\d+), response (\d+)", s)
                if m:
                    summ["request_bytes"], summ["response_bytes"] = int(m.group(1)), int(m.group(2))
                m = re.match(r"Run time \(s\):\s+([\d.]+)", s)
                if m:
                    summ["runtime_s"] = float(m.group(1))
    return summ, codes, lat


class Target:
    def __init__(self, tid, ns, server, port, pid, extra_pids, thread=None):
        self.id = tid
        self.thread = thread           # a thread of the server reported apart (weft's DNS task)
        self.ns = ns
        self.server = server
        self.port = port
        self.pid = pid                 # the server whose CPU per answer is measured
        self.extra_pids = extra_pids   # other processes doing this target's work (the upstream)


def thread_id(pid, comm):
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            if open("/proc/%d/task/%s/comm" % (pid, tid)).read().strip() == comm:
                return int(tid)
        except OSError:
            pass
    return None


def one_run(t, qfile, secs, mode, rate, outdir, tag, perf=False):
    """One dnsperf run from the target's client namespace, with the server's (and the
    upstream's) CPU time read from /proc around it; with perf, a flat profile of the server
    (weft: its DNS thread; aardvark-dns: the whole process) over the run."""
    prof = None
    if perf:
        tid = thread_id(t.pid, t.thread) if t.thread else None
        who = ["-t", str(tid)] if tid else ["-p", str(t.pid)]
        pdata = os.path.join(outdir, "%s.perf.data" % tag)
        prof = subprocess.Popen(["perf", "record", "-q", "-F", "1999", "-o", pdata] + who,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        RES.procs.append(("perf-" + tag, prof))
    out = os.path.join(outdir, "%s-%s.txt" % (tag, mode))
    argv = ["dnsperf", "-s", t.server, "-p", str(t.port), "-d", qfile, "-l", str(secs), "-c", "4",
            "-q", "100", "-t", "2", "-v"]
    if mode == "paced":
        argv += ["-Q", str(rate)]
    busy0 = machine_busy()
    ksi0 = ksoftirqd_s()
    srv0 = cpu_ticks(t.pid)
    agent = RES.weft.agent_pid if RES.weft is not None else None
    ag0 = cpu_ticks(agent) if agent else 0
    thr0 = thread_ticks(t.pid, t.thread) if t.thread else 0
    ext0 = [cpu_ticks(p) for p in t.extra_pids]
    w0 = time.monotonic()
    with open(out, "wb") as f:
        p = subprocess.Popen(nsx(t.ns) + argv, stdout=f, stderr=subprocess.STDOUT, env=ab.base_env())
        RES.client = p
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        RES.client = None
    w1 = time.monotonic()
    srv1 = cpu_ticks(t.pid)
    ag1 = cpu_ticks(agent) if agent else 0
    thr1 = thread_ticks(t.pid, t.thread) if t.thread else 0
    ext1 = [cpu_ticks(p) for p in t.extra_pids]
    busy1 = machine_busy()
    ksi1 = ksoftirqd_s()
    profile = None
    if prof is not None:
        prof.send_signal(signal.SIGINT)
        try:
            prof.wait(timeout=30)
        except subprocess.TimeoutExpired:
            prof.kill()
            prof.wait()
        RES.procs = [(n, q) for n, q in RES.procs if q is not prof]
        rep = run(["perf", "report", "-i", pdata, "--stdio", "--no-children", "--sort", "sym",
                   "--percent-limit", "0.5"])
        profile = rep.stdout.decode(errors="replace")
    if p.returncode != 0:
        raise RuntimeError("dnsperf for %s failed (rc %d), see %s" % (t.id, p.returncode, out))
    summ, codes, lat = parse_dnsperf(out)
    os.unlink(out)
    wall = w1 - w0
    srv_s = (srv1 - srv0) / HZ
    ext_s = sum(b - a for a, b in zip(ext0, ext1)) / HZ
    client_s = ru.ru_utime + ru.ru_stime
    answers = summ.get("completed", 0)
    ksi = ksi1 - ksi0
    others = max(0.0, ((busy1[0] - busy0[0]) - srv_s - ext_s - client_s - ksi) / wall) if wall > 0 else 0.0
    # the packets' softirq work: in interrupt context (irq columns) or in ksoftirqd
    irq = ((busy1[1] - busy0[1]) + ksi) / wall if wall > 0 else 0.0
    return {
        "target": t.id, "mode": mode, "rate": rate if mode == "paced" else None,
        "qps": summ.get("qps"), "sent": summ.get("sent"), "response_bytes": summ.get("response_bytes"), "answers": answers, "lost": summ.get("lost"),
        "rcodes": codes, "p50_ms": pct(lat, 50) * 1e3 if lat else None,
        "p99_ms": pct(lat, 99) * 1e3 if lat else None, "max_ms": max(lat) * 1e3 if lat else None,
        "server_cpu_s": srv_s, "agent_cpu_s": (ag1 - ag0) / HZ if agent else None, "upstream_cpu_s": ext_s, "client_cpu_s": client_s,
        "server_us_per_answer": srv_s / answers * 1e6 if answers else None,
        "thread_us_per_answer": (thr1 - thr0) / HZ / answers * 1e6 if answers and t.thread else None,
        "upstream_us_per_answer": ext_s / answers * 1e6 if answers and t.extra_pids else None,
        "profile": profile,
        "others_cores": round(others, 3), "irq_cores": round(irq, 3), "wall_s": round(wall, 2),
    }


def measure(targets, qfiles, reps, secs, psecs, rates, wait_idle, outdir, results, perf=False):
    order = list(targets)
    for rep in range(1, reps + 1):
        k = (rep - 1) % len(order)
        for tid in order[k:] + order[:k]:
            t = targets[tid]
            kind = TARGETS[tid][1]
            for mode, s in (("saturated", secs), ("paced", psecs)):
                if wait_idle > 0:
                    ab.wait_idle(wait_idle)
                r = one_run(t, qfiles[kind], s, mode, rates[kind], outdir, "%s-%d" % (tid, rep),
                            perf=perf and rep == 1 and mode == "saturated" and tid in ("weft-local", "aard-local"))
                r["repeat"] = rep
                # resident memory after every run: which load makes a server grow
                for k, pid in (("agent_rss", RES.weft and RES.weft.agent_pid), ("aardvark_rss", RES.aardvark_pid)):
                    try:
                        r[k] = memory(pid) if pid else None
                    except OSError:
                        r[k] = None
                results.append(r)
                log("rep %d %-10s %-9s %8.0f qps  p50 %6.3f p99 %6.3f ms  %s  others %.2f cores" % (
                    rep, tid, mode, r["qps"] or 0, r["p50_ms"] or 0, r["p99_ms"] or 0,
                    ("%.1f us/answer" % r["server_us_per_answer"]) if r["server_us_per_answer"] else "-",
                    r["others_cores"]))


# --------------------------------------------------------------------------- report
def med(vals):
    v = [x for x in vals if x is not None]
    return pct(v, 50) if v else None


def fmt(v, spec="%.1f"):
    return "-" if v is None else spec % v


def summarize(out):
    res = out["runs"]
    lines = []
    stats = {}
    for tid in TARGETS:
        sat = [r for r in res if r["target"] == tid and r["mode"] == "saturated"]
        # a profiled run is slowed by perf: left out of the medians unless it is the only one
        sat = [r for r in sat if not r.get("profile")] or sat
        pac = [r for r in res if r["target"] == tid and r["mode"] == "paced"]
        if not sat:
            continue
        stats[tid] = {
            "qps": med([r["qps"] for r in sat]), "qps_all": [r["qps"] for r in sat],
            "us": med([r["server_us_per_answer"] for r in sat]),
            "us_all": [r["server_us_per_answer"] for r in sat],
            "up_us": med([r["upstream_us_per_answer"] for r in sat]),
            "thr_us": med([r.get("thread_us_per_answer") for r in sat]),
            "sat_p50": med([r["p50_ms"] for r in sat]), "sat_p99": med([r["p99_ms"] for r in sat]),
            "p50": med([r["p50_ms"] for r in pac]), "p99": med([r["p99_ms"] for r in pac]),
            "p99_all": [r["p99_ms"] for r in pac],
            "lost": sum((r["lost"] or 0) for r in sat + pac),
            "resp_b": med([r.get("response_bytes") for r in sat]),
            "rcodes": sorted(set(k for r in sat + pac for k in r["rcodes"])),
            "others": max(r["others_cores"] for r in sat + pac),
        }
    rows = []
    for tid, s in stats.items():
        rows.append([tid, fmt(s["qps"], "%.0f"),
                     "%s..%s" % (fmt(min(s["qps_all"]), "%.0f"), fmt(max(s["qps_all"]), "%.0f")),
                     fmt(s["sat_p50"], "%.2f"), fmt(s["sat_p99"], "%.2f"),
                     fmt(s["p50"], "%.3f"), fmt(s["p99"], "%.3f"),
                     fmt(s["us"]), "/".join(fmt(x) for x in s["us_all"]), fmt(s["thr_us"]), fmt(s["up_us"]),
                     str(s["lost"]), fmt(s["resp_b"], "%.0f"), "/".join(s["rcodes"]), "%.2f" % s["others"]])
    lines.append("dnsperf -c 4 -q 100, saturated -l %d s; paced -Q %d (local) / %d (forwarded, ceiling) for %d s; "
                 "%d repeat(s); medians" % (out["meta"]["seconds"], out["meta"]["rate"], out["meta"]["rate_fwd"],
                                            out["meta"]["paced_seconds"], out["meta"]["reps"]))
    lines.append(table(rows, ["target", "qps", "min..max", "sat p50", "sat p99", "p50 ms", "p99 ms",
                              "srv us/ans", "per repeat", "dns thread", "upstr us/ans", "lost", "resp B", "rcodes",
                              "others max"]))
    lines.append("  (sat = saturated run, ms; p50/p99 ms = paced run; srv us/ans = server CPU "
                 "(utime+stime) per answer in the saturated run; "
                 "dns thread = of it, weft's weft-dns thread; upstr = the upstream responder's; others = cores used "
                 "by the rest of the machine)")
    mem = out.get("memory", {})
    lines.append("resident memory with %d names, MiB, after set-up / after the runs (anonymous part): %s" % (
        out["meta"]["names"], ", ".join(
            "%s %.1f / %.1f (%.1f / %.1f)" % (k, v["idle_mib"], v.get("after_mib", float("nan")),
                                               v["idle"]["anon"], v.get("after", {}).get("anon", float("nan")))
            for k, v in mem.items())))
    seq = [(r["target"], r["mode"][:3], r.get("agent_rss")) for r in res if r.get("agent_rss")]
    if seq:
        lines.append("weft agent RSS (anonymous) MiB after each run, in order: " + ", ".join(
            "%s/%s %.0f (%.0f)" % (t, m, v["rss"], v["anon"]) for t, m, v in seq))
    for r in res:
        if r.get("profile"):
            top = [l.rstrip() for l in r["profile"].splitlines() if l.strip() and not l.startswith("#")][:10]
            lines.append("perf, %s run %d (top symbols):\n    %s" % (r["target"], r["repeat"], "\n    ".join(top)))
    checks = []

    def ratio(a, b, key):
        if a in stats and b in stats and stats[a][key] and stats[b][key]:
            return stats[a][key] / stats[b][key]
        return None

    def check(label, v, ok):
        checks.append({"check": label, "value": v, "ok": ok})
        lines.append("  %-48s %s  %s" % (label, fmt(v, "%.2f"), "-" if v is None else ("ok" if ok else "MISS")))
    lines.append("weft / aardvark-dns (targets):")
    v = ratio("weft-local", "aard-local", "qps")
    check("local qps ratio (>= %.1f)" % TARGET_LOCAL_QPS, v, v is not None and v >= TARGET_LOCAL_QPS)
    v = ratio("weft-local", "aard-local", "us")
    check("local CPU per answer ratio (<= %.1f)" % TARGET_LOCAL_CPU, v, v is not None and v <= TARGET_LOCAL_CPU)
    v = ratio("weft-local", "aard-local", "p99")
    check("local p99 ratio, paced (<= %.1f)" % TARGET_LOCAL_P99, v, v is not None and v <= TARGET_LOCAL_P99)
    v = ratio("weft-local", "aard-local", "sat_p99")
    check("local p99 ratio, saturated (<= %.1f)" % TARGET_LOCAL_P99, v, v is not None and v <= TARGET_LOCAL_P99)
    v = ratio("weft-fwd", "aard-fwd", "qps")
    check("forwarded qps ratio (>= %.1f)" % TARGET_FWD_QPS, v, v is not None and v >= TARGET_FWD_QPS)
    v = ratio("weft-fwd", "aard-fwd", "us")
    check("forwarded CPU per answer ratio (info)", v, True)
    agent = mem.get("weft agent", {}).get("after_mib")
    label = "weft agent RSS MiB (< %.0f)" % TARGET_RSS_MIB
    if out["meta"].get("weft_dns_error"):
        label = "weft agent RSS MiB, NO DNS SERVER (< %.0f)" % TARGET_RSS_MIB
    check(label, agent, agent is not None and agent < TARGET_RSS_MIB)
    v = ratio("aard-local", "ceiling", "qps")
    lines.append("  %-48s %s" % ("aardvark local qps / ceiling qps (info)", fmt(v, "%.2f")))
    v = ratio("weft-local", "ceiling-w", "qps")
    lines.append("  %-48s %s" % ("weft local qps / ceiling-w qps (info)", fmt(v, "%.2f")))
    noisy = [r for r in res if r["others_cores"] >= 0.3]
    lines.append("noise: %d of %d runs had other processes using >= 0.3 cores (max %.2f)%s" % (
        len(noisy), len(res), max([r["others_cores"] for r in res] or [0]),
        ": NOISY" if noisy else ""))
    out["summary"] = {"stats": stats, "checks": checks}
    return "\n".join(lines)


# --------------------------------------------------------------------------- hygiene
def clean_stale(weft_bin):
    """What an earlier run killed with SIGKILL left: its processes (recorded PIDs, checked
    against their command lines), its weft sandboxes, namespaces and temp dir."""
    for old, d in KIT.stale_runs():
        log("cleaning up after an earlier run (pid %d): %s" % (old, d))
        pdir = d + "/pids"
        for f in sorted(os.listdir(pdir)) if os.path.isdir(pdir) else []:
            try:
                pid = int(open(os.path.join(pdir, f)).read())
                cmd = open("/proc/%d/cmdline" % pid, "rb").read()
                if b"dns_responder" in cmd:
                    os.killpg(pid, signal.SIGKILL)
                elif is_aardvark(pid, d):
                    os.kill(pid, signal.SIGKILL)
            except (OSError, ValueError):
                pass
        wd = d + "/weft"
        hns = "/run/netns/wdb-%d-wh" % old
        if os.path.isdir(wd + "/state") and os.path.exists(hns) and os.access(weft_bin, os.X_OK):
            base = ["nsenter", "--net=" + hns, weft_bin, "--state-dir", wd + "/state", "--run-dir",
                    wd + "/run", "--config", wd + "/weft.toml"]
            p = run(base + ["--format", "json", "ps", "-a"])
            try:
                names = [s["name"] for s in json.loads(p.stdout)]
            except ValueError:
                names = []
            for i in range(0, len(names), 200):
                run(base + ["rm", "-f"] + names[i:i + 200])
            run(base + ["network", "rm", NETWORK])
            run(base + ["daemon", "stop"])
        KIT.remove_stale_namespaces(old)
        ab.remove_dir(d)
    KIT.remove_stale_namespaces()


def root_extra():
    """What this bench checks in the root namespace besides nsbench's list: UDP :53 listeners."""
    return {"udp53": lambda out: sorted(l.split()[3] for l in out(["ss", "-Hlun", "sport = :53"]).splitlines()
                                        if l.strip())}


def ensure_tools(install):
    need = []
    if not shutil.which("dnsperf", path=ab.base_env()["PATH"]):
        need.append("dnsperf")
    if not os.access(AARDVARK, os.X_OK):
        need.append("aardvark-dns")
    if not shutil.which("gcc", path=ab.base_env()["PATH"]):
        need.append("gcc")
    if need and install:
        nsbench.apt_install(need, log)
    missing = [b for b in ("dnsperf", "gcc", "nsenter", "ss", "ip")
               if not shutil.which(b, path=ab.base_env()["PATH"])]
    if not os.access(AARDVARK, os.X_OK):
        missing.append(AARDVARK)
    return missing


# --------------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(prog="bench/dns", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: 3 s runs, 1 repeat")
    ap.add_argument("--seconds", "-t", type=int, help="dnsperf -l of a saturated run (default 10; quick 3)")
    ap.add_argument("--paced-seconds", type=int, help="dnsperf -l of a paced run (default 5; quick 2)")
    ap.add_argument("--rate", type=int, default=5000,
                    help="dnsperf -Q of the paced runs of local names (default 5000)")
    ap.add_argument("--rate-fwd", type=int, default=1000,
                    help="dnsperf -Q of the paced runs of forwarded names and the ceiling (default 1000: "
                         "aardvark-dns 1.4 forwards ~1,700 queries/s here)")
    ap.add_argument("--reps", "-r", type=int, help="repeats (default 2; quick 1)")
    ap.add_argument("--targets", default=",".join(TARGETS), help="comma list (default all: %s)" % ",".join(TARGETS))
    ap.add_argument("--names", type=int, default=1000,
                    help="sandboxes / containers with a name (default 1000; fewer for a smoke test)")
    ap.add_argument("--no-weft", action="store_true", help="skip weft entirely (no 1,000 sandboxes)")
    ap.add_argument("--perf", action="store_true",
                    help="perf record (flat profile) of weft's DNS thread and of aardvark-dns in the first "
                         "saturated local-name run (those runs are slowed by it); kept in the JSON")
    ap.add_argument("--hold", type=float, default=0,
                    help="after set-up, print what runs where and wait this many seconds before measuring "
                         "(to attach perf or strace)")
    nsbench.standard_args(ap, "dns", 3.0, "each run")
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("must run as root")
    secs = a.seconds or (3 if a.quick else 10)
    psecs = a.paced_seconds or (2 if a.quick else 5)
    reps = a.reps or (1 if a.quick else 2)
    want = [t for t in a.targets.split(",") if t]
    for t in want:
        if t not in TARGETS:
            raise SystemExit("unknown target %r (known: %s)" % (t, ", ".join(TARGETS)))
    global NAMES
    if not 1 <= a.names <= 9999:
        raise SystemExit("--names must be 1..9999")
    NAMES = a.names
    if a.no_weft:
        want = [t for t in want if TARGETS[t][0] != "weft"]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    outf = a.out or os.path.join(BENCH, "results", "dns-%s.json" % stamp)

    def body():
        started = time.time()
        weft_bin = ab.weft_binary()
        missing = ensure_tools(not a.no_install)
        if missing:
            raise SystemExit("missing tools: %s" % " ".join(missing))
        weft_info = None
        if any(TARGETS[t][0] == "weft" for t in want):
            weft_info = ab.build_weft(a.no_build)
            weft_bin = weft_info["binary"]
        ver = lambda cmd: run(cmd).stdout.decode(errors="replace").strip().splitlines()[:1]
        out = {"meta": {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "argv": sys.argv[1:],
                        "kernel": os.uname().release, "nproc": os.cpu_count(), "seconds": secs,
                        "paced_seconds": psecs, "rate": a.rate, "rate_fwd": a.rate_fwd, "reps": reps, "targets": want,
                        "names": NAMES, "weft": weft_info,
                        "dnsperf": [l for l in run(["dnsperf", "-h"]).stdout.decode(errors="replace").splitlines()
                                    if l.startswith("Version")][:1] or
                                   run(["dpkg-query", "-W", "-f=${Version}", "dnsperf"]).stdout.decode(),
                        "aardvark": ver([AARDVARK, "--version"])},
               "runs": [], "memory": {}}
        RES.mkdir()
        responder = os.path.join(RES.dir, "dns_responder")
        must(["gcc", "-O2", "-o", responder, RESPONDER_SRC])
        write_queries(RES.dir)
        qfiles = {"local": os.path.join(RES.dir, "local.q"), "fwd": os.path.join(RES.dir, "fwd.q")}
        t0 = time.time()
        up = Upstream(responder)
        up.start()
        targets = {}
        if any(TARGETS[t][0] in ("aardvark", "ceiling") for t in want):
            aard = Aardvark(responder)
            aard.start(up.ns)
            ceil_pid = [p.pid for n, p in RES.procs if n == "ceiling"][0]
            m = memory(aard.pid)
            out["memory"]["aardvark-dns"] = {"idle_mib": m["rss"], "idle": m}
            targets["aard-local"] = Target("aard-local", aard.client, A_GW, 53, aard.pid, [])
            targets["aard-fwd"] = Target("aard-fwd", aard.client, A_GW, 53, aard.pid, [up.proc.pid])
            targets["ceiling"] = Target("ceiling", aard.client, A_GW, CEIL_PORT, ceil_pid, [])
        if any(TARGETS[t][0] == "weft" for t in want):
            wf = Weft(weft_bin, responder)
            key = rate_limit_key(weft_bin)
            wf.start(up.ns, key)
            out["meta"]["weft_setup_s"] = round(wf.setup_s, 1)
            out["meta"]["weft_notes"] = wf.notes
            out["meta"]["weft_config"] = wf.config_text(key)
            log("weft: %d sandboxes in %.1f s; agent pid %s; %s" % (
                len(wf.sandboxes), wf.setup_s, wf.agent_pid, "; ".join(wf.notes)))
            if wf.agent_pid:
                m = memory(wf.agent_pid)
                out["memory"]["weft agent"] = {"idle_mib": m["rss"], "idle": m}
            if wf.dns_error:
                out["meta"]["weft_dns_error"] = wf.dns_error
                log("weft's DNS server does not answer (%s): measuring the others only" % wf.dns_error)
            else:
                targets["weft-local"] = Target("weft-local", wf.client_netns, W_GW, 53, wf.agent_pid, [],
                                               thread="weft-dns")
                targets["weft-fwd"] = Target("weft-fwd", wf.client_netns, W_GW, 53, wf.agent_pid, [up.proc.pid],
                                             thread="weft-dns")
            if wf.ceiling_pid:
                targets["ceiling-w"] = Target("ceiling-w", wf.client_netns, W_GW, CEIL_PORT, wf.ceiling_pid, [])
        targets = {t: targets[t] for t in want if t in targets}
        out["meta"]["setup_s"] = round(time.time() - t0, 1)
        log("set up in %.1f s; measuring %s" % (time.time() - t0, ", ".join(targets)))
        if a.hold > 0:
            for t in targets.values():
                log("hold: %-10s dnsperf from %s against %s:%d, server pid %d" % (t.id, t.ns, t.server, t.port, t.pid))
            log("hold: query files %s; waiting %.0f s" % (" ".join(qfiles.values()), a.hold))
            time.sleep(a.hold)
        try:
            measure(targets, qfiles, reps, secs, psecs, {"local": a.rate, "fwd": a.rate_fwd}, a.wait_idle,
                    RES.dir, out["runs"], perf=a.perf)
            for k, pid in (("aardvark-dns", RES.aardvark_pid), ("weft agent", RES.weft and RES.weft.agent_pid)):
                if k in out["memory"]:
                    m = memory(pid)
                    out["memory"][k].update(after_mib=m["rss"], after=m)
        finally:
            RES.stop_procs()
        out["meta"]["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        out["meta"]["elapsed_s"] = round(time.time() - started, 1)
        text = summarize(out)
        if out["meta"].get("weft_dns_error"):
            text += "\nweft NOT measured: %s" % out["meta"]["weft_dns_error"]
        if out["meta"].get("weft_notes"):
            text += "\nweft: %s" % "; ".join(out["meta"]["weft_notes"])
        os.makedirs(os.path.dirname(outf), exist_ok=True)
        with open(outf, "w") as f:
            json.dump(out, f, indent=1)
        print(text)
        print("raw results: %s" % os.path.relpath(outf, REPO))
        return 0

    return KIT.guarded(body, prepare=lambda: clean_stale(ab.weft_binary()), snapshot_extra=root_extra(),
                       cleanup=RES.cleanup,
                       what="netns list, links, nft tables, UDP :53 listeners, mounts, temp dirs")


if __name__ == "__main__":
    sys.exit(main() or 0)
