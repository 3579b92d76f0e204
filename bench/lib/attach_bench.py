#!/usr/bin/env python3
"""bench/attach: per-attach / per-detach cost of weft vs netavark vs CNI (python3 stdlib only).

For every repeat, every N and every tool (the tool order alternates between repeats):

  * a fresh network namespace `wb-host-<pid>` is created to play the host, and a temp dir
    /tmp/weft-bench-attach-<pid>-<k>/ holds all state of the tool;
  * untimed set-up: weft `network create bench --subnet 10.200.0.0/16`; for the peers, N
    empty container namespaces `wb-<pid>-<i>` (the runtime's job, not the peer's);
  * N sequential attaches, each timed wall-clock (time.perf_counter) around the tool's
    process(es); then N sequential detaches, each timed the same way;
  * untimed tear-down: `weft network rm bench`, delete the host namespace and the container
    namespaces, unmount everything under the temp dir, remove it.

Tools (all three attach to one bridge network 10.200.0.0/16, gateway .1, no port mappings):

  weft      `weft create --name sI --network bench` / `weft rm sI` (weft also creates and
            deletes the sandbox's namespace inside these commands), run with WEFT_TIMINGS=1
            so each process reports where its time went.
  netavark  `/usr/lib/podman/netavark --config DIR setup|teardown /run/netns/NS < opts.json`
            (bridge driver, static IP - with ipam driver host-local netavark leaves IPAM to
            the caller -, internal=false, dns off, no port_mappings; firewall = iptables).
  cni       CNI reference plugins: `bridge` ADD / DEL with host-local IPAM (isGateway,
            ipMasq, hairpinMode; no portmap plugin); DEL gets the ADD result as prevResult.
  kernel    the kernel floor, not a peer: bench/lib/kernel_floor.c (built with gcc at the
            start) makes the kernel objects of one attach - namespace with its bind mount, veth
            on the bridge, up, address, route - one process per attach, at weft's N. Its growth
            with N is the kernel's; the summary says how much of weft's growth it accounts for.

The benchmark process itself enters the host namespace (setns) while the tools run, so
every tool process starts inside it and no nsenter exec lands in the timed path
(`--via nsenter` puts `nsenter --net=...` in front of every command instead).
Nothing is done in the root network namespace: it is snapshot before and after the run
and the difference is printed.
"""
import argparse
import ctypes
import fcntl
import gc
import ipaddress
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)
REPO = os.path.dirname(BENCH)
PID = os.getpid()
TMP_PREFIX = "/tmp/weft-bench-attach-"
HOST_NS = "wb-host-%d" % PID
LOCK = "/run/lock/weft-bench-attach.lock"
NETAVARK = os.environ.get("NETAVARK_BIN", "/usr/lib/podman/netavark")
CNI_DIR = os.environ.get("CNI_PLUGIN_DIR", "/usr/lib/cni")
SUBNET = ipaddress.ip_network("10.200.0.0/16")
GATEWAY = SUBNET.network_address + 1
CLONE_NEWNET = 0x40000000
NS_RE = re.compile(r"^wb-(?:host-)?(\d+)(?:-.*)?$")

_libc = ctypes.CDLL(None, use_errno=True)
ROOT_NS_FD = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
ROOT_NS_INO = os.fstat(ROOT_NS_FD).st_ino


def log(msg):
    sys.stderr.write("[attach] %s\n" % msg)
    sys.stderr.flush()


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, **kw)


def must(cmd, **kw):
    p = run(cmd, **kw)
    if p.returncode != 0:
        raise RuntimeError("%s failed rc=%d\nstdout: %s\nstderr: %s" % (
            " ".join(cmd), p.returncode, p.stdout.decode(errors="replace")[-2000:],
            p.stderr.decode(errors="replace")[-2000:]))
    return p


def pct(vals, p):
    v = sorted(vals)
    if not v:
        return float("nan")
    k = (len(v) - 1) * p / 100.0
    f = int(k)
    c = min(f + 1, len(v) - 1)
    return v[f] + (v[c] - v[f]) * (k - f)


def base_env():
    e = dict(os.environ)
    path = e.get("PATH", "")
    for d in ("/usr/local/sbin", "/usr/sbin", "/sbin"):
        if d not in path.split(":"):
            path += ":" + d
    e["PATH"] = path
    e.pop("WEFT_TIMINGS", None)
    e.pop("WEFT_SYNC_ANNOUNCE", None)
    return e


# --------------------------------------------------------------------------- namespaces
def setns_path(path):
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, "setns(%s): %s" % (path, os.strerror(e)))
    finally:
        os.close(fd)


def back_to_root():
    if _libc.setns(ROOT_NS_FD, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "setns(root): %s" % os.strerror(e))


def current_ns_ino():
    return os.stat("/proc/thread-self/ns/net").st_ino


def our_mounts_under(prefix):
    """Mount points at or below `prefix` (deepest first), from our mountinfo."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp == prefix or mp.startswith(prefix.rstrip("/") + "/") or (
                    prefix.endswith("-") and mp.startswith(prefix)):
                out.append(mp)
    return sorted(set(out), key=len, reverse=True)


def remove_dir(d):
    """Unmount everything below d (sandbox namespace handles, weft's bind-mounted netns dir)
    and remove it."""
    for _ in range(3):
        mps = our_mounts_under(d)
        if not mps:
            break
        for mp in mps:
            run(["umount", "-l", mp])
    shutil.rmtree(d, ignore_errors=True)


def ns_list():
    p = run(["ip", "netns", "list"])
    return [l.split()[0] for l in p.stdout.decode().splitlines() if l.strip()]


def del_namespaces(names):
    names = [n for n in names if n]
    for i in range(0, len(names), 500):
        chunk = names[i:i + 500]
        p = run(["ip", "-force", "-batch", "-"], input="".join("netns del %s\n" % n for n in chunk).encode())
        if p.returncode != 0:  # -force goes on after errors; report what is still there
            left = set(ns_list()) & set(chunk)
            for n in left:
                run(["ip", "netns", "del", n])


def add_namespaces(names):
    for i in range(0, len(names), 500):
        chunk = names[i:i + 500]
        must(["ip", "-batch", "-"], input="".join("netns add %s\n" % n for n in chunk).encode())


def pid_is_bench(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return b"attach_bench.py" in f.read()
    except OSError:
        return False


def clean_stale():
    """Idempotence: remove what an earlier run that died (kill -9, power loss) left behind."""
    stale = []
    for n in ns_list():
        m = NS_RE.match(n)
        if m and int(m.group(1)) != PID and not pid_is_bench(int(m.group(1))):
            stale.append(n)
    if stale:
        log("removing %d stale namespaces of an earlier run: %s%s" % (
            len(stale), " ".join(stale[:5]), " ..." if len(stale) > 5 else ""))
        del_namespaces(stale)
    for e in sorted(os.listdir("/tmp")):
        d = "/tmp/" + e
        m = re.match(r"^weft-bench-attach-(\d+)-", e)
        if m and int(m.group(1)) != PID and not pid_is_bench(int(m.group(1))):
            log("removing stale temp dir %s" % d)
            remove_dir(d)


class Resources:
    """Everything this run created, so that any exit path can remove it."""

    def __init__(self):
        self.namespaces = []   # names under /run/netns
        self.dirs = []

    def cleanup(self):
        try:
            back_to_root()
        except OSError as e:
            log("could not return to the root namespace: %s" % e)
        if self.namespaces:
            del_namespaces(self.namespaces)
            self.namespaces = []
        for d in self.dirs:
            remove_dir(d)
        self.dirs = []


RES = Resources()


class Host:
    """A fresh network namespace playing the host, plus a temp dir, for one run."""
    counter = 0

    def __init__(self, via):
        Host.counter += 1
        self.via = via
        self.name = HOST_NS
        self.dir = "%s%d-%d" % (TMP_PREFIX, PID, Host.counter)
        self.extra_ns = []

    def __enter__(self):
        if self.name in ns_list():
            del_namespaces([self.name])
        RES.namespaces.append(self.name)
        must(["ip", "netns", "add", self.name])
        RES.dirs.append(self.dir)
        os.makedirs(self.dir, mode=0o700)
        self.prefix = []
        if self.via == "setns":
            setns_path("/run/netns/" + self.name)
            if current_ns_ino() != os.stat("/run/netns/" + self.name).st_ino:
                raise RuntimeError("setns did not move us into %s" % self.name)
        else:
            self.prefix = ["nsenter", "--net=/run/netns/" + self.name]
        return self

    def cmd(self, argv):
        return self.prefix + argv

    def in_host(self, argv):
        """A command that must run in the host namespace whatever --via is."""
        if self.via == "setns":
            return argv
        return ["nsenter", "--net=/run/netns/" + self.name] + argv

    def add_container_ns(self, names):
        RES.namespaces.extend(names)
        self.extra_ns.extend(names)
        add_namespaces(names)

    def __exit__(self, *exc):
        back_to_root()
        if current_ns_ino() != ROOT_NS_INO:
            raise RuntimeError("not back in the root network namespace")
        del_namespaces([self.name] + self.extra_ns)
        drop = set([self.name] + self.extra_ns)
        RES.namespaces = [n for n in RES.namespaces if n not in drop]
        remove_dir(self.dir)
        RES.dirs = [d for d in RES.dirs if d != self.dir]
        return False


def timed(argv, env=None, data=None, what=None):
    t0 = time.perf_counter()
    p = subprocess.run(argv, input=data, capture_output=True, env=env)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError("%s failed rc=%d: %s %s" % (what or " ".join(argv), p.returncode,
                           p.stdout.decode(errors="replace")[-1500:], p.stderr.decode(errors="replace")[-1500:]))
    return dt, p


def parse_timings(stderr, prefix="weft-timings "):
    for line in stderr.decode(errors="replace").splitlines():
        if line.startswith(prefix):
            d = {}
            for kv in line.split()[1:]:
                k, _, v = kv.partition("=")
                try:
                    d[k] = int(v)
                except ValueError:
                    pass
            return d
    return None


# --------------------------------------------------------------------------- tools
class Weft:
    name = "weft"

    def __init__(self, binary):
        self.bin = binary
        self.env = base_env()
        self.env["WEFT_TIMINGS"] = "1"

    def base(self, host):
        d = host.dir
        return [self.bin, "--state-dir", d + "/state", "--run-dir", d + "/run", "--config", d + "/weft.toml"]

    def setup(self, host, n):
        self.h = host
        self.argv = self.base(host)
        # weft's run directory is /run/weft, a tmpfs on every systemd host: so here too (the
        # temp dir is on disk; per-sandbox files there would cost disk metadata work - an
        # ext4 mounted with `discard` even issues a discard per removed directory).
        run_dir = host.dir + "/run"
        os.makedirs(run_dir, mode=0o700)
        must(["mount", "-t", "tmpfs", "-o", "mode=0700,size=64m", "weft-bench-run", run_dir])
        must(host.cmd(self.argv + ["network", "create", "bench", "--subnet", str(SUBNET)]), env=self.env)

    def attach(self, i):
        dt, p = timed(self.h.cmd(self.argv + ["create", "--name", "s%d" % i, "--network", "bench"]),
                      env=self.env, what="weft create s%d" % i)
        return dt, parse_timings(p.stderr)

    def detach(self, i):
        dt, p = timed(self.h.cmd(self.argv + ["rm", "s%d" % i]), env=self.env, what="weft rm s%d" % i)
        return dt, parse_timings(p.stderr)

    def teardown(self, host, ok):
        # The host agent the first command started: stopped before its namespace goes.
        run(host.cmd(self.argv + ["daemon", "stop"]), env=self.env)
        p = run(host.cmd(self.argv + (["network", "rm", "bench"] if ok else ["gc"])), env=self.env)
        if ok and p.returncode != 0:
            log("weft network rm bench failed: %s" % p.stderr.decode(errors="replace").strip())


class Netavark:
    name = "netavark"

    def __init__(self, env=None):
        self.env = env or base_env()

    @staticmethod
    def ip(i):
        return str(GATEWAY + i)  # .2, .3, ... (host-local style order)

    def options(self, i):
        return {
            "container_id": "%064x" % (0xA0000 + i),
            "container_name": "wb-%d" % i,
            "port_mappings": [],
            "networks": {"wbnet": {"static_ips": [self.ip(i)], "interface_name": "eth0"}},
            "network_info": {"wbnet": {
                "name": "wbnet", "id": "%064x" % 0xBEEF, "driver": "bridge",
                "network_interface": "wbnv0",
                "subnets": [{"subnet": str(SUBNET), "gateway": str(GATEWAY)}],
                "ipv6_enabled": False, "internal": False, "dns_enabled": False,
                "ipam_options": {"driver": "host-local"}}},
        }

    def setup(self, host, n):
        self.h = host
        self.cfg = host.dir + "/netavark"
        os.makedirs(self.cfg)
        self.ns = ["wb-%d-%d" % (PID, i) for i in range(1, n + 1)]
        host.add_container_ns(self.ns)
        self.opts = [json.dumps(self.options(i)).encode() for i in range(1, n + 1)]

    def _call(self, verb, i):
        dt, _ = timed(self.h.cmd([NETAVARK, "--config", self.cfg, verb, "/run/netns/" + self.ns[i - 1]]),
                      env=self.env, data=self.opts[i - 1], what="netavark %s #%d" % (verb, i))
        return dt, None

    def attach(self, i):
        return self._call("setup", i)

    def detach(self, i):
        return self._call("teardown", i)

    def teardown(self, host, ok):
        pass


class Cni:
    name = "cni"

    def __init__(self, env=None):
        self.base_env = env or base_env()

    def setup(self, host, n):
        self.h = host
        self.conf = {
            "cniVersion": "1.0.0", "name": "wbcni", "type": "bridge", "bridge": "wbcni0",
            "isGateway": True, "ipMasq": True, "hairpinMode": True,
            "ipam": {"type": "host-local",
                     "ranges": [[{"subnet": str(SUBNET), "gateway": str(GATEWAY)}]],
                     "routes": [{"dst": "0.0.0.0/0"}],
                     "dataDir": host.dir + "/cni-ipam"}}
        self.add_data = json.dumps(self.conf).encode()
        self.ns = ["wb-%d-%d" % (PID, i) for i in range(1, n + 1)]
        host.add_container_ns(self.ns)
        self.results = {}

    def _env(self, cmd, i):
        e = dict(self.base_env)
        e.update(CNI_COMMAND=cmd, CNI_CONTAINERID="wbc%08d" % i, CNI_NETNS="/run/netns/" + self.ns[i - 1],
                 CNI_IFNAME="eth0", CNI_PATH=CNI_DIR)
        return e

    def attach(self, i):
        env = self._env("ADD", i)
        dt, p = timed(self.h.cmd([CNI_DIR + "/bridge"]), env=env, data=self.add_data, what="cni bridge ADD #%d" % i)
        self.results[i] = json.loads(p.stdout)
        return dt, None

    def detach(self, i):
        c = dict(self.conf)
        c["prevResult"] = self.results.pop(i)
        data = json.dumps(c).encode()
        env = self._env("DEL", i)
        dt, _ = timed(self.h.cmd([CNI_DIR + "/bridge"]), env=env, data=data, what="cni bridge DEL #%d" % i)
        return dt, None

    def teardown(self, host, ok):
        pass


class Kernel:
    """The kernel floor: bench/lib/kernel_floor.c, the kernel objects of one attach made by a
    small C process (namespace, veth on the bridge, up, address, route), nothing of weft's own.
    Its growth with N is the kernel's; weft's growth beyond it is weft's (bench/README.md)."""
    name = "kernel"
    BRIDGE = "wbk0"

    def __init__(self, binary):
        self.bin = binary
        self.env = base_env()

    def setup(self, host, n):
        self.h = host
        # On a tmpfs, as weft's run directory (see Weft.setup).
        self.dir = host.dir + "/run"
        os.makedirs(self.dir, mode=0o700)
        must(["mount", "-t", "tmpfs", "-o", "mode=0700,size=64m", "weft-bench-run", self.dir])
        # The bridge as weft makes it: its own MAC, no multicast snooping, the gateway's address.
        for argv in (["ip", "link", "add", self.BRIDGE, "address", "02:42:0a:c8:00:01", "mtu", "1500",
                      "type", "bridge", "mcast_snooping", "0"],
                     ["ip", "addr", "add", "%s/%d" % (GATEWAY, SUBNET.prefixlen), "dev", self.BRIDGE],
                     ["ip", "link", "set", self.BRIDGE, "up"]):
            must(host.in_host(argv))

    def attach(self, i):
        addr = "%s/%d" % (GATEWAY + i, SUBNET.prefixlen)
        dt, p = timed(self.h.cmd([self.bin, "attach", self.dir, self.BRIDGE, str(i), addr, str(GATEWAY)]),
                      env=self.env, what="kernel_floor attach %d" % i)
        return dt, parse_timings(p.stderr, "kernel-timings ")

    def detach(self, i):
        dt, p = timed(self.h.cmd([self.bin, "detach", self.dir, str(i)]), env=self.env,
                      what="kernel_floor detach %d" % i)
        return dt, parse_timings(p.stderr, "kernel-timings ")

    def teardown(self, host, ok):
        pass


def build_kernel_floor(dest_dir):
    """Compiles bench/lib/kernel_floor.c (gcc, which every machine weft builds on has: the bundled
    SQLite needs it). None, with a note, if that fails."""
    cc = shutil.which("gcc", path=base_env()["PATH"]) or shutil.which("cc", path=base_env()["PATH"])
    if not cc:
        log("no C compiler: running without the kernel floor")
        return None
    out = os.path.join(dest_dir, "kernel_floor")
    p = run([cc, "-O2", "-Wall", "-o", out, os.path.join(HERE, "kernel_floor.c")])
    if p.returncode != 0:
        log("kernel_floor.c did not build (%s): running without the kernel floor" %
            p.stderr.decode(errors="replace").strip()[-500:])
        return None
    return out


def veth_count(host):
    p = run(host.in_host(["ip", "-o", "link", "show", "type", "veth"]))
    return len([l for l in p.stdout.decode().splitlines() if l.strip()])


HZ = os.sysconf("SC_CLK_TCK")


def cpu_mark():
    """(wall s, busy CPU s of the whole machine, CPU s of this process + its waited-for children)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    busy = (sum(v[:8]) - v[3] - v[4]) / HZ  # all but idle and iowait
    t = os.times()
    return time.monotonic(), busy, t.user + t.system + t.children_user + t.children_system


def others_cores(m0, m1):
    """CPU used by everything that is not the benchmark and its tools, in cores (approximate:
    kernel workers finishing our namespace teardown count as "others" too)."""
    wall = m1[0] - m0[0]
    if wall <= 0:
        return 0.0
    return max(0.0, ((m1[1] - m0[1]) - (m1[2] - m0[2])) / wall)


def wait_idle(limit_s, threshold=0.3):
    """Wait (at most limit_s) until the rest of the machine uses < threshold cores over 1 s."""
    t_end = time.monotonic() + limit_s
    waited = 0.0
    while True:
        m0 = cpu_mark()
        time.sleep(0.5)
        o = others_cores(m0, cpu_mark())
        waited += 0.5
        if o < threshold or time.monotonic() >= t_end:
            return o, waited


def one_run(tool, n, rep, via, settle):
    rec = {"tool": tool.name, "n": n, "rep": rep, "loadavg_before": open("/proc/loadavg").read().split()[:3]}
    m0 = cpu_mark()
    with Host(via) as host:
        ok = False
        try:
            tool.setup(host, n)
            att, det, tat, tdt = [], [], [], []
            gc.collect()
            gc.disable()
            t0 = time.perf_counter()
            for i in range(1, n + 1):
                dt, tm = tool.attach(i)
                att.append(dt)
                tat.append(tm)
            rec["attach_total_s"] = time.perf_counter() - t0
            gc.enable()
            rec["veths_after_attach"] = veth_count(host)
            if rec["veths_after_attach"] != n:
                raise RuntimeError("%s N=%d: %d veths in the host namespace after attaching, expected %d" % (
                    tool.name, n, rec["veths_after_attach"], n))
            gc.collect()
            gc.disable()
            t0 = time.perf_counter()
            for i in range(1, n + 1):
                dt, tm = tool.detach(i)
                det.append(dt)
                tdt.append(tm)
            rec["detach_total_s"] = time.perf_counter() - t0
            gc.enable()
            rec.update(attach_s=att, detach_s=det)
            rec["others_cores"] = others_cores(m0, cpu_mark())
            if tool.name in ("weft", "kernel"):
                rec.update(attach_timings=tat, detach_timings=tdt)
            ok = True
        finally:
            gc.enable()
            try:
                tool.teardown(host, ok)
            except Exception as e:  # the namespace goes anyway
                log("teardown of %s: %s" % (tool.name, e))
    # Deleting a namespace holding N veths / N sandbox namespaces is finished by the kernel
    # asynchronously; let it settle so the next run does not pay for it.
    time.sleep(settle[0] + settle[1] * n)
    return rec


# --------------------------------------------------------------------------- extras
def floor(weft_bin, tools, via, count):
    """Process start-up floor: wall time of processes that do (almost) nothing."""
    cases = [("/bin/true", ["/bin/true"], None),
             ("weft --version", [weft_bin, "--version"], None)]
    if "netavark" in tools:
        cases.append(("netavark --version", [NETAVARK, "--version"], None))
    if "cni" in tools:
        e = base_env()
        e["CNI_COMMAND"] = "VERSION"
        cases.append(("cni bridge VERSION", [CNI_DIR + "/bridge"], e))
    out = {}
    with Host(via) as host:
        for label, argv, env in cases:
            vals = []
            for k in range(count + 3):
                dt, _ = timed(host.cmd(argv), env=env, data=b"{}" if env else None)
                if k >= 3:  # warm-up: page cache
                    vals.append(dt)
            out[label] = vals
    return out


WRAP = """#!/bin/sh
echo "$0" >> %(log)s
exec %(real)s "$@"
"""


def count_execs(tools, via, n=3):
    """How many iptables / ip6tables / nft processes each peer runs per attach and detach
    (wrappers first in PATH; a separate untimed pass)."""
    res = {}
    for name in tools:
        if name in ("weft", "kernel"):
            continue
        with Host(via) as host:
            wrapdir = host.dir + "/wrap"
            logf = host.dir + "/exec.log"
            os.makedirs(wrapdir)
            for t in ("iptables", "ip6tables", "nft"):
                real = shutil.which(t, path=base_env()["PATH"])
                if not real:
                    continue
                with open(os.path.join(wrapdir, t), "w") as f:
                    f.write(WRAP % {"log": logf, "real": real})
                os.chmod(os.path.join(wrapdir, t), 0o755)
            env = base_env()
            env["PATH"] = wrapdir + ":" + env["PATH"]
            tool = Netavark(env) if name == "netavark" else Cni(env)
            tool.setup(host, n)
            counts = {"attach": [], "detach": []}
            for op in ("attach", "detach"):
                for i in range(1, n + 1):
                    open(logf, "w").close()
                    getattr(tool, op)(i)
                    with open(logf) as f:
                        counts[op].append(len(f.read().splitlines()))
            res[name] = counts
    return res


def root_snapshot():
    def out(cmd):
        p = run(cmd)
        return p.stdout.decode(errors="replace") if p.returncode == 0 else ""
    ipt = ""
    if shutil.which("iptables-save", path=base_env()["PATH"]):
        ipt = "\n".join(l for l in out(["iptables-save"]).splitlines() if not l.startswith("#"))
    return {
        "netns": sorted(ns_list()),
        "links": sorted(l.split(":")[1].strip().split("@")[0] for l in out(["ip", "-o", "link"]).splitlines()),
        "nft_tables": sorted(out(["nft", "list", "tables"]).splitlines()),
        "iptables_save": ipt,
        "ip_forward": open("/proc/sys/net/ipv4/ip_forward").read().strip(),
        "our_mounts": our_mounts_under(TMP_PREFIX),
        "our_tmp": sorted(e for e in os.listdir("/tmp") if e.startswith("weft-bench-attach-")),
    }


def snapshot_diff(a, b):
    diff = []
    for k in a:
        if a[k] != b[k]:
            if isinstance(a[k], list):
                diff.append("%s: +%s -%s" % (k, sorted(set(b[k]) - set(a[k])), sorted(set(a[k]) - set(b[k]))))
            else:
                diff.append("%s changed" % k)
    return diff


def ensure_peers(tools, install):
    need = []
    if "netavark" in tools and not os.access(NETAVARK, os.X_OK):
        need.append("netavark")
    if "cni" in tools and not (os.access(CNI_DIR + "/bridge", os.X_OK) and os.access(CNI_DIR + "/host-local", os.X_OK)):
        need.append("containernetworking-plugins")
    if any(t in tools for t in ("netavark", "cni")) and not shutil.which("iptables", path=base_env()["PATH"]):
        need.append("iptables")
    if not need:
        return tools
    if not install:
        log("missing %s and --no-install given: dropping the peers that need them" % " ".join(need))
    else:
        log("installing %s (apt-get)" % " ".join(need))
        env = dict(base_env(), DEBIAN_FRONTEND="noninteractive")
        p1 = subprocess.run(["apt-get", "update"], stdout=subprocess.DEVNULL, env=env)
        p2 = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "netavark",
                             "containernetworking-plugins", "iptables"], stdout=subprocess.DEVNULL, env=env)
        if p1.returncode or p2.returncode:
            log("apt-get failed (update rc=%d, install rc=%d)" % (p1.returncode, p2.returncode))
    keep = [t for t in tools if t in ("weft", "kernel")
            or (t == "netavark" and os.access(NETAVARK, os.X_OK))
            or (t == "cni" and os.access(CNI_DIR + "/bridge", os.X_OK))]
    if any(t in keep for t in ("netavark", "cni")) and not shutil.which("iptables", path=base_env()["PATH"]):
        keep = [t for t in keep if t in ("weft", "kernel")]
    if keep != tools:
        log("running without: %s" % " ".join(t for t in tools if t not in keep))
    return keep


def build_target():
    """The target tuple cargo builds for: CARGO_BUILD_TARGET, else `[build] target` of
    .cargo/config.toml (musl, see there); `host-tuple` or none is the machine's own."""
    t = os.environ.get("CARGO_BUILD_TARGET", "")
    if not t:
        try:
            with open(os.path.join(REPO, ".cargo", "config.toml")) as f:
                m = re.search(r'^target\s*=\s*"([^"]+)"', f.read(), re.M)
            t = m.group(1) if m else ""
        except OSError:
            t = ""
    if not t or t == "host-tuple":
        try:
            out = run(["rustc", "-vV"]).stdout.decode(errors="replace")
        except OSError:
            out = ""
        host = [l.split(":", 1)[1].strip() for l in out.splitlines() if l.startswith("host:")]
        t = host[0] if host else ""
    return t


def weft_binary():
    """Where `cargo build --release` puts weft: target/<tuple>/release/weft, as
    .cargo/config.toml names the build target explicitly (so that weft is linked
    statically); target/release/weft of an older tree when there is none."""
    t = build_target()
    if t:
        binary = os.path.join(REPO, "target", t, "release", "weft")
        if os.access(binary, os.X_OK) or os.path.exists(os.path.join(REPO, ".cargo", "config.toml")):
            return binary
    return os.path.join(REPO, "target", "release", "weft")


def build_weft(skip):
    binary = weft_binary()
    info = {"binary": binary, "built": False}
    if not skip:
        log("cargo build --release (no-op when up to date)")
        t0 = time.time()
        p = run(["cargo", "build", "--release", "--bin", "weft"], cwd=REPO)
        info["build_s"] = round(time.time() - t0, 1)
        if p.returncode != 0:
            tail = p.stderr.decode(errors="replace").strip().splitlines()[-15:]
            if os.access(binary, os.X_OK):
                log("cargo build --release FAILED; benchmarking the existing (older) binary. Tail:\n  "
                    + "\n  ".join(tail))
                info["build_failed"] = True
            else:
                raise SystemExit("cargo build --release failed and there is no binary:\n" + "\n".join(tail))
        else:
            info["built"] = True
    if not os.access(binary, os.X_OK):
        raise SystemExit("no weft binary at %s (drop --no-build)" % binary)
    info["mtime"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(os.stat(binary).st_mtime))
    info["version"] = run([binary, "--version"]).stdout.decode().strip()
    g = run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO)
    info["git_head"] = g.stdout.decode().strip()
    g = run(["git", "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"], cwd=REPO)
    info["uncommitted_source_files"] = len(g.stdout.decode().splitlines())
    return info


# --------------------------------------------------------------------------- report
def ms(v):
    return v * 1000.0


def table(rows, header):
    w = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).rjust(w[i]) if i else str(c).ljust(w[i]) for i, c in enumerate(r))
    return "\n".join([line(header), "  ".join("-" * x for x in w)] + [line(r) for r in rows])


def summarize(out):
    runs = out["runs"]
    tools = [t for t in ("weft", "kernel", "netavark", "cni") if any(r["tool"] == t for r in runs)]
    lines = []
    stats = {}
    rows = []
    for t in tools:
        for n in sorted({r["n"] for r in runs if r["tool"] == t}):
            rs = [r for r in runs if r["tool"] == t and r["n"] == n]
            a = [ms(x) for r in rs for x in r["attach_s"]]
            d = [ms(x) for r in rs for x in r["detach_s"]]
            s = {"reps": len(rs), "samples": len(a),
                 "attach_p50": pct(a, 50), "attach_p99": pct(a, 99), "attach_mean": statistics.mean(a),
                 "detach_p50": pct(d, 50), "detach_p99": pct(d, 99), "detach_mean": statistics.mean(d)}
            stats[(t, n)] = s
            rows.append([t, n, len(rs), "%.2f" % s["attach_p50"], "%.2f" % s["attach_p99"], "%.2f" % s["attach_mean"],
                         "%.2f" % s["detach_p50"], "%.2f" % s["detach_p99"], "%.2f" % s["detach_mean"]])
    lines.append("Per-operation wall time, ms (pooled over repeats; one sample = one attach or detach "
                 "process run, timed from the benchmark):")
    lines.append("")
    lines.append(table(rows, ["tool", "N", "reps", "attach p50", "p99", "mean", "detach p50", "p99", "mean"]))
    summary = {"per_tool_n": {"%s/%d" % k: v for k, v in stats.items()}}
    oc = [r["others_cores"] for r in runs if "others_cores" in r]
    if oc:
        busy = [r for r in runs if r.get("others_cores", 0) >= 0.3]
        lines.append("")
        lines.append("CPU used by other processes during the runs: mean %.2f, max %.2f cores; %d of %d runs "
                     "above 0.3 cores%s" % (statistics.mean(oc), max(oc), len(busy), len(runs),
                                            " -> NOISY, numbers of those runs are inflated" if busy else ""))
        summary["others_cores"] = {"mean": statistics.mean(oc), "max": max(oc), "busy_runs": len(busy)}
    w = out["meta"].get("weft") or {}
    if w:
        lines.append("weft binary: %s, %s, git HEAD %s with %d uncommitted source file(s) in the work tree%s" % (
            w.get("version", "?"), "binary of %s" % w.get("mtime"),
            w.get("git_head", "?"), w.get("uncommitted_source_files", 0),
            " (cargo build FAILED: older binary)" if w.get("build_failed") else ""))

    # weft vs peers at the largest N every tool ran
    lines.append("")
    summary["peer_ratios"] = {}
    peers = [t for t in tools if t not in ("weft", "kernel")]
    if "weft" in tools and peers:
        common = sorted(set.intersection(*[{n for (t, n) in stats if t == x} for x in tools]))
        if common:
            cn = common[-1]
            lines.append("Peer / weft at N=%d (p50 ratio; mean ratio in brackets). Targets: attach >= 10x, detach >= 5x:" % cn)
            w = stats[("weft", cn)]
            for p in peers:
                s = stats[(p, cn)]
                ra, rd = s["attach_p50"] / w["attach_p50"], s["detach_p50"] / w["detach_p50"]
                rma, rmd = s["attach_mean"] / w["attach_mean"], s["detach_mean"] / w["detach_mean"]
                summary["peer_ratios"][p] = {"n": cn, "attach_p50_ratio": ra, "detach_p50_ratio": rd,
                                             "attach_mean_ratio": rma, "detach_mean_ratio": rmd}
                lines.append("  %-9s attach %6.2fx (%.2fx)  %-4s   detach %6.2fx (%.2fx)  %s" % (
                    p + "/weft", ra, rma, "ok" if ra >= 10 else "MISS", rd, rmd, "ok" if rd >= 5 else "MISS"))
            lines.append("  (peers run their firewall work per attach as separate processes: %s)" % execs_text(out))
            lines.append("")

    # growth with N
    lines.append("Growth with N. last-10 / first-10 = median of attaches #N-9..#N over median of #1..#10, "
                 "pooled over repeats (target for weft at N=1000: <= 1.1); Nmax/N=1 = p50 at the largest N "
                 "over p50 at N=1:")
    rows = []
    summary["growth"] = {}
    for t in tools:
        ns = sorted({r["n"] for r in runs if r["tool"] == t})
        big = ns[-1]
        rs = [r for r in runs if r["tool"] == t and r["n"] == big]
        g = {"n": big}
        if big >= 20:
            for op in ("attach", "detach"):
                first = [ms(r[op + "_s"][k]) for r in rs for k in range(10)]
                last = [ms(r[op + "_s"][k]) for r in rs for k in range(big - 10, big)]
                g[op + "_first10_median"] = statistics.median(first)
                g[op + "_last10_median"] = statistics.median(last)
                g[op + "_last_first_ratio"] = statistics.median(last) / statistics.median(first)
                g[op + "_last_first_ratio_mean"] = statistics.mean(last) / statistics.mean(first)
                g[op + "_per_rep_ratio"] = [statistics.median(r[op + "_s"][big - 10:]) /
                                            statistics.median(r[op + "_s"][:10]) for r in rs]
        if 1 in ns and big > 1:
            g["attach_nmax_over_n1"] = stats[(t, big)]["attach_p50"] / stats[(t, 1)]["attach_p50"]
            g["detach_nmax_over_n1"] = stats[(t, big)]["detach_p50"] / stats[(t, 1)]["detach_p50"]
        summary["growth"][t] = g
        f = lambda k, fmt="%.2f": (fmt % g[k]) if k in g else "n/a"
        verdict = ""
        if t == "weft" and "attach_last_first_ratio" in g:
            verdict = ("ok" if g["attach_last_first_ratio"] <= 1.1 else "MISS") + (
                "" if big == 1000 else " (N=%d, not 1000)" % big)
        rows.append([t, big,
                     "%s / %s ms" % (f("attach_last10_median"), f("attach_first10_median")),
                     f("attach_last_first_ratio"), f("attach_last_first_ratio_mean"),
                     " ".join("%.2f" % x for x in g.get("attach_per_rep_ratio", [])) or "n/a",
                     verdict,
                     f("detach_last_first_ratio"),
                     f("attach_nmax_over_n1"), f("detach_nmax_over_n1")])
    lines.append("")
    lines.append(table(rows, ["tool", "Nmax", "attach last10/first10 (medians)", "ratio", "ratio of means",
                              "per repeat", "target", "detach last/first", "attach Nmax/N1", "detach Nmax/N1"]))
    lines.append("")
    lines.extend(kernel_floor_text(out, summary))
    lines.extend(phase_table(out, summary))
    lines.extend(floor_text(out, summary))
    out["summary"] = summary
    return "\n".join(lines)


def by_position(rs, big, phases):
    """Mean of each phase (and the wall time) over buckets of attach positions at N=`big`:
    how the cost moves with the number of sandboxes already attached. (buckets, rows)."""
    edges = sorted({e for e in (0, 10, big // 10, big // 2, big - 100, big - 10, big) if 0 <= e <= big})
    buckets = [(lo, hi) for lo, hi in zip(edges, edges[1:]) if hi > lo]
    rows = []
    for ph in phases:
        cells = []
        for lo, hi in buckets:
            v = [tm.get(ph, 0) for r in rs for tm in (r.get("attach_timings") or [])[lo:hi] if tm]
            cells.append("%.0f" % statistics.mean(v) if v else "-")
        rows.append([ph] + cells)
    rows.append(["wall as timed"] + ["%.0f" % statistics.mean(ms(x) * 1000 for r in rs for x in r["attach_s"][lo:hi])
                                     for lo, hi in buckets])
    return buckets, rows


def kernel_floor_text(out, summary):
    """How much of weft's growth with N the kernel floor accounts for, from the same run."""
    g = summary["growth"]
    w, k = g.get("weft") or {}, g.get("kernel") or {}
    if "attach_first10_median" not in w or "attach_first10_median" not in k or w["n"] != k["n"]:
        return []
    wd = w["attach_last10_median"] - w["attach_first10_median"]
    kd = k["attach_last10_median"] - k["attach_first10_median"]
    wf = w["attach_first10_median"]
    least = (wf + kd) / wf
    summary["kernel_floor"] = {"n": w["n"], "weft_growth_ms": wd, "kernel_growth_ms": kd,
                               "weft_growth_beyond_kernel_ms": wd - kd,
                               "least_weft_ratio_the_kernel_allows": least}
    lines = ["The kernel floor at N=%d (attaches #%d-%d against #1-10, medians): the kernel's own attach "
             "(bench/lib/kernel_floor.c) grows by %.2f ms, weft's by %.2f ms (%.2f ms beyond the kernel's). "
             "With weft's first ten at %.2f ms, the kernel's growth alone puts weft's last-10/first-10 at "
             "%.2f or more." % (w["n"], w["n"] - 9, w["n"], kd, wd, wd - kd, wf, least)]
    rs = [r for r in out["runs"] if r["tool"] == "kernel" and r["n"] == k["n"]]
    big = k["n"]
    if big >= 100 and rs:
        phases = []
        for r in rs:
            for tm in r.get("attach_timings") or []:
                for ph in tm or {}:
                    if ph not in phases:
                        phases.append(ph)
        buckets, rows = by_position(rs, big, phases)
        lines += ["", "Kernel floor attach by position (mean us; netns = unshare + bind mount, veth = the pair "
                  "made on the bridge + IPv6 off on its host end, up = the host end up, sandbox = eth0 and lo up, "
                  "address, route):", "",
                  table(rows, ["kernel attach phase at N=%d" % big] + ["#%d-%d" % (lo + 1, hi) for lo, hi in buckets])]
    return lines + [""]


def execs_text(out):
    ex = out.get("execs") or {}
    parts = []
    for p, c in ex.items():
        warm_a = c["attach"][1:] or c["attach"]
        parts.append("%s %s iptables/ip6tables/nft execs per attach (#1: %d), %s per detach" % (
            p, "/".join(str(x) for x in sorted(set(warm_a))), c["attach"][0],
            "/".join(str(x) for x in sorted(set(c["detach"])))))
    if not parts:
        return "netavark ~26, CNI ~28 iptables execs per attach with a port mapping (peers harness)"
    return "; ".join(parts) + "; weft none: one nftables netlink batch in-process"


def phase_table(out, summary):
    runs = [r for r in out["runs"] if r["tool"] == "weft"]
    if not runs:
        return []
    ns = sorted({r["n"] for r in runs})
    cols = [(op, n) for op in ("attach", "detach") for n in ns]
    phases = []
    for r in runs:
        for op in ("attach", "detach"):
            for tm in r.get(op + "_timings") or []:
                for k in (tm or {}):
                    if k != "total" and k not in phases:
                        phases.append(k)
    means = {}
    for op, n in cols:
        tms = [tm for r in runs if r["n"] == n for tm in (r.get(op + "_timings") or []) if tm]
        walls = [ms(x) * 1000 for r in runs if r["n"] == n for x in r[op + "_s"]]
        m = {}
        if tms:
            for ph in phases + ["total"]:
                m[ph] = sum(tm.get(ph, 0) for tm in tms) / len(tms)
            m["_covered"] = len(tms)
        m["_wall"] = statistics.mean(walls)
        means[(op, n)] = m
    summary["weft_phases_us"] = {"%s/%d" % k: v for k, v in means.items()}
    hdr = ["phase (mean us)"] + ["%s N=%d" % c for c in cols]
    rows = []
    for ph in phases:
        rows.append([ph] + ["%.0f" % means[c][ph] if ph in means[c] and means[c][ph] else "-" for c in cols])
    # `arena-kib` (the heap's size at exit, KiB) is a size, not a phase: not in the sum.
    timed = [p for p in phases if not p.endswith("-kib")]
    rows.append(["(inside total, no phase)"] + ["%.0f" % (means[c]["total"] - sum(means[c][p] for p in timed))
                                                if "total" in means[c] else "-" for c in cols])
    rows.append(["total (in-process, main)"] + ["%.0f" % means[c]["total"] if "total" in means[c] else "-" for c in cols])
    rows.append(["wall - total (exec, ld.so,"] + ["%.0f" % (means[c]["_wall"] - means[c]["total"])
                                                 if "total" in means[c] else "-" for c in cols])
    rows.append([" exit, spawn)"] + [""] * len(cols))
    rows.append(["wall as timed"] + ["%.0f" % means[c]["_wall"] for c in cols])
    res = ["Where weft's time goes (WEFT_TIMINGS=1; mean us per attach = `weft create`, per detach = "
           "`weft rm`; phases add up inside the process's `total`):", "",
           table(rows, hdr), ""]
    # how each phase moves with the number of sandboxes already attached (largest N)
    big = ns[-1]
    if big >= 100:
        rs = [r for r in runs if r["n"] == big]
        buckets, rows = by_position(rs, big, phases + ["total"])
        hdr = ["attach phase at N=%d (mean us)" % big] + ["#%d-%d" % (lo + 1, hi) for lo, hi in buckets]
        summary["weft_attach_phases_by_position"] = {"n": big, "buckets": buckets, "rows": rows}
        res += ["weft attach cost by position (how many sandboxes are already attached):", "",
                table(rows, hdr), ""]
    return res


def floor_text(out, summary):
    fl = out.get("floor")
    if not fl:
        return []
    rows = []
    summary["floor_ms"] = {}
    for label, vals in fl.items():
        v = [ms(x) for x in vals]
        summary["floor_ms"][label] = {"p50": pct(v, 50), "mean": statistics.mean(v), "min": min(v)}
        rows.append([label, len(v), "%.2f" % pct(v, 50), "%.2f" % statistics.mean(v), "%.2f" % min(v)])
    lines = ["Process start-up floor (spawned and timed exactly like the attaches), ms:", "",
             table(rows, ["process", "runs", "p50", "mean", "min"])]
    w = summary.get("per_tool_n", {})
    wk = [k for k in w if k.startswith("weft/")]
    if wk and "weft --version" in summary["floor_ms"]:
        big = max(wk, key=lambda k: int(k.split("/")[1]))
        fv = summary["floor_ms"]["weft --version"]["p50"]
        lines.append("")
        lines.append("weft --version p50 is %.0f%% of weft's attach p50 and %.0f%% of its detach p50 at %s "
                     "(exec + dynamic loading + exit + the benchmark's spawn)." % (
                         100 * fv / w[big]["attach_p50"], 100 * fv / w[big]["detach_p50"], big.replace("/", " N=")))
    lines.append("")
    return lines


# --------------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(prog="bench/attach", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="N = 1,10 for every tool (smoke run, ~1 min)")
    ap.add_argument("--full", action="store_true", help="also run the peers at N=1000 (adds ~3 min per repeat)")
    ap.add_argument("--repeats", type=int, default=3, help="repeats of every (tool, N) (default 3)")
    ap.add_argument("--tools", default="weft,kernel,netavark,cni",
                    help="comma list of weft,kernel,netavark,cni (kernel: the kernel floor, "
                         "bench/lib/kernel_floor.c, at weft's N)")
    ap.add_argument("--n", help="override the N list for every tool, e.g. 1,10,50")
    ap.add_argument("--no-build", action="store_true", help="use the built weft (target/<build target>/release/weft, the target of .cargo/config.toml) as it is")
    ap.add_argument("--no-install", action="store_true", help="never apt-get install missing peers")
    ap.add_argument("--no-execs", action="store_true", help="skip counting the peers' iptables executions")
    ap.add_argument("--via", choices=("setns", "nsenter"), default="setns",
                    help="how tool processes get into the host namespace (default: the benchmark "
                         "setns()es itself, so nothing extra is exec'd in the timed path)")
    ap.add_argument("--settle", default="0.3,0.002",
                    help="seconds to wait after each run: A + B*N (default 0.3,0.002)")
    ap.add_argument("--wait-idle", type=float, default=5.0,
                    help="before each run wait up to this many seconds until other processes use "
                         "< 0.3 cores (default 5; 0 = never wait)")
    ap.add_argument("--out", help="JSON output (default bench/results/attach-<timestamp>.json)")
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("must run as root")
    tools = [t for t in a.tools.split(",") if t]
    for t in tools:
        if t not in ("weft", "kernel", "netavark", "cni"):
            raise SystemExit("unknown tool %r" % t)
    if a.quick:
        weft_ns, peer_ns = [1, 10], [1, 10]
    else:
        weft_ns, peer_ns = [1, 10, 100, 1000], [1, 10, 100] + ([1000] if a.full else [])
    if a.n:
        weft_ns = peer_ns = [int(x) for x in a.n.split(",")]
    settle = tuple(float(x) for x in a.settle.split(","))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    outf = a.out or os.path.join(BENCH, "results", "attach-%s.json" % stamp)

    def _sig(signum, _frame):
        raise SystemExit("interrupted by signal %d" % signum)
    signal.signal(signal.SIGTERM, _sig)
    signal.signal(signal.SIGHUP, _sig)

    lockf = open(LOCK, "w")
    try:
        fcntl.flock(lockf, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise SystemExit("another bench/attach run holds %s" % LOCK)
    started = time.time()
    before = after = None
    try:
        clean_stale()
        before = root_snapshot()
        tools = ensure_peers(tools, not a.no_install)
        weft_info = build_weft(a.no_build) if "weft" in tools else {}
        weft_bin = weft_info.get("binary") or weft_binary()
        out = {"meta": {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "argv": sys.argv[1:],
                        "kernel": os.uname().release, "nproc": os.cpu_count(), "via": a.via,
                        "subnet": str(SUBNET), "weft": weft_info,
                        "netavark": run([NETAVARK, "--version"]).stdout.decode().strip() if "netavark" in tools else None,
                        "cni_plugins": run(["dpkg-query", "-W", "-f=${Version}", "containernetworking-plugins"]
                                           ).stdout.decode().strip() if "cni" in tools else None,
                        "iptables": run(["iptables", "--version"]).stdout.decode().strip()
                        if shutil.which("iptables", path=base_env()["PATH"]) else None},
               "runs": []}
        plan = []
        for rep in range(1, a.repeats + 1):
            for n in sorted(set(weft_ns) | set(peer_ns)):
                order = [t for t in tools if n in (weft_ns if t in ("weft", "kernel") else peer_ns)]
                if rep % 2 == 0:
                    order.reverse()
                plan += [(t, n, rep) for t in order]
        est = sum({"weft": 0.012, "kernel": 0.005, "netavark": 0.17, "cni": 0.25}[t] * n for t, n, _ in plan)
        log("plan: %d runs (%s), repeats %d, roughly %.0f s of attach+detach" % (
            len(plan), ", ".join("%s N=%s" % (t, ",".join(str(n) for n in (weft_ns if t == "weft" else peer_ns)))
                                 for t in tools), a.repeats, est))
        kernel_bin = None
        if "kernel" in tools:
            kdir = "%s%d-kernel-floor" % (TMP_PREFIX, PID)
            os.makedirs(kdir, mode=0o700)
            RES.dirs.append(kdir)
            kernel_bin = build_kernel_floor(kdir)
            if kernel_bin is None:
                plan = [x for x in plan if x[0] != "kernel"]
        out["floor"] = floor(weft_bin, tools, a.via, 30)
        if not a.no_execs and any(t != "weft" for t in tools):
            out["execs"] = count_execs(tools, a.via)
        objs = {"weft": lambda: Weft(weft_bin), "kernel": lambda: Kernel(kernel_bin),
                "netavark": Netavark, "cni": Cni}
        for k, (t, n, rep) in enumerate(plan, 1):
            if a.wait_idle > 0:
                o, w = wait_idle(a.wait_idle)
                if o >= 0.3:
                    log("machine still busy after waiting %.0f s (others use %.1f cores); going on" % (w, o))
            t0 = time.time()
            rec = one_run(objs[t](), n, rep, a.via, settle)
            out["runs"].append(rec)
            log("%3d/%d rep %d %-8s N=%-4d attach p50 %.2f ms, detach p50 %.2f ms (%.1f s; others used %.1f cores)" % (
                k, len(plan), rep, t, n, pct([ms(x) for x in rec["attach_s"]], 50),
                pct([ms(x) for x in rec["detach_s"]], 50), time.time() - t0, rec["others_cores"]))
        out["meta"]["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        out["meta"]["elapsed_s"] = round(time.time() - started, 1)
        text = summarize(out)
        os.makedirs(os.path.dirname(outf), exist_ok=True)
        with open(outf, "w") as f:
            json.dump(out, f, indent=1)
        print(text)
        print("Notes: weft's attach includes creating the sandbox's network namespace and its detach "
              "deleting it (the kernel finishes namespace teardown asynchronously); the peers get an "
              "empty namespace made beforehand (untimed) and leave it in place on detach. Every tool runs "
              "in a fresh host namespace per (tool, N, repeat), so each run starts cold.")
        print("raw results: %s" % os.path.relpath(outf, REPO))
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        RES.cleanup()
        if before is not None:
            after = root_snapshot()
            d = snapshot_diff(before, after)
            print("root namespace check (netns list, links, nft tables, iptables-save, ip_forward, mounts, "
                  "temp dirs): %s" % ("unchanged" if not d else "CHANGED: " + "; ".join(d)))
        print("elapsed %.0f s" % (time.time() - started))
        lockf.close()
        try:
            os.unlink(LOCK)
        except OSError:
            pass


if __name__ == "__main__":
    sys.exit(main() or 0)
