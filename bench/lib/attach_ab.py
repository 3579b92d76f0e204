#!/usr/bin/python3
"""bench/attach-ab: weft binaries (or configurations) compared on the same machine at the same
time. Each variant gets a host namespace of its own; attach #i of every variant runs before
attach #i+1 of any (the order alternating), so load from other processes falls on all
variants alike. Prints, per variant, the median of every WEFT_TIMINGS phase, of the wall
time and of the process's CPU time (rusage) in buckets of attaches, and last-10/first-10.
See bench/README.md. Root only; the root network namespace is never touched (weft runs
setns()ed into the variant's namespace)."""
import argparse
import ctypes
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

CLONE_NEWNET = 0x40000000
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SUBNET = "10.200.0.0/16"
_libc = ctypes.CDLL(None, use_errno=True)


def setns(path_or_fd):
    fd = path_or_fd if isinstance(path_or_fd, int) else os.open(path_or_fd, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, "setns: %s" % os.strerror(e))
    finally:
        if not isinstance(path_or_fd, int):
            os.close(fd)


def default_binary():
    """The tree's release build: target/<build target>/release/weft (see attach_bench)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import attach_bench
    return attach_bench.weft_binary()


class Variant:
    def __init__(self, k, name, binary, agent, hold):
        self.k, self.name, self.bin, self.agent, self.hold = k, name, binary, agent, hold
        self.ns = "wab-%d-%d" % (os.getpid(), k)
        self.dir = None
        self.holder = None
        self.rows, self.drows = [], []

    def argv(self, *args):
        d = self.dir
        return [self.bin, "--state-dir", d + "/state", "--run-dir", d + "/run",
                "--config", d + "/weft.toml"] + list(args)

    def setup(self, root):
        self.dir = tempfile.mkdtemp(prefix="weft-bench-ab-%d-%d-" % (os.getpid(), self.k))
        os.chmod(self.dir, 0o755)
        subprocess.run(["ip", "netns", "add", self.ns], check=True)
        setns("/run/netns/" + self.ns)
        try:
            os.makedirs(self.dir + "/run", mode=0o700)
            # A tmpfs, as /run is on a systemd host (see bench/README.md, bench/attach).
            subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0700,size=64m",
                            "weft-bench-ab", self.dir + "/run"], check=True)
            with open(self.dir + "/weft.toml", "w") as f:
                f.write("agent = %s\n" % ("true" if self.agent else "false"))
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
            subprocess.run(self.argv("network", "create", "bench", "--subnet", SUBNET),
                           check=True, stdout=subprocess.DEVNULL)
            if self.hold:
                # Keeps the store open as the agent would, without the agent.
                code = ("import sqlite3, time; c = sqlite3.connect(%r); "
                        "c.execute('select count(*) from sqlite_master').fetchall(); "
                        "time.sleep(1e6)" % (self.dir + "/state/state.db"))
                self.holder = subprocess.Popen([sys.executable, "-c", code])
        finally:
            setns(root)

    def timed(self, root, env, *args):
        setns("/run/netns/" + self.ns)
        try:
            t0 = time.perf_counter()
            p = subprocess.Popen(self.argv(*args), env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE)
            err = p.stderr.read()
            _, status, ru = os.wait4(p.pid, 0)
            wall = (time.perf_counter() - t0) * 1e6
        finally:
            setns(root)
        if status != 0:
            raise RuntimeError("%s: weft %s failed: %s" % (self.name, " ".join(args),
                                                          err.decode(errors="replace")))
        row = {"wall": wall, "cpu": (ru.ru_utime + ru.ru_stime) * 1e6}
        for line in err.decode(errors="replace").splitlines():
            if line.startswith("weft-timings"):
                for kv in line.split()[1:]:
                    key, _, val = kv.partition("=")
                    row[key] = int(val)
        return row

    def teardown(self, root):
        if self.holder:
            self.holder.kill()
            self.holder.wait()
        if self.dir is None:
            return
        try:
            setns("/run/netns/" + self.ns)
            for args in (["daemon", "stop"], ["gc"], ["network", "rm", "bench"]):
                subprocess.run(self.argv(*args), capture_output=True)
        except OSError:
            pass
        finally:
            setns(root)
        subprocess.run(["umount", "-R", "-l", self.dir + "/run"], stderr=subprocess.DEVNULL)
        subprocess.run(["ip", "netns", "del", self.ns], stderr=subprocess.DEVNULL)
        subprocess.run(["rm", "-rf", self.dir])


def med(rows, key):
    vals = [r.get(key, 0) for r in rows]
    return statistics.median(vals) if vals else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", action="append", default=[], metavar="NAME=PATH",
                    help="a weft binary to compare (repeat; default: this tree's release build)")
    ap.add_argument("--n", type=int, default=1000, help="attaches per variant (default 1000)")
    ap.add_argument("--agent", choices=("on", "off", "both", "held"), default="on",
                    help="on: the agent runs (as in bench/attach); off: no agent; held: no agent, "
                         "but another process keeps the store open; both: on and held for every binary")
    ap.add_argument("--no-detach", action="store_true", help="leave the sandboxes to gc, untimed")
    ap.add_argument("--buckets", type=int, default=10, help="columns of the table (default 10)")
    ap.add_argument("--keys", default="wall,cpu,total,store-open,state-intent,netns,netlink-veth,"
                    "netlink-up,state-commit", help="what to print, comma-separated")
    ap.add_argument("--out", help="raw rows as JSON")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/attach-ab: must run as root (it creates network namespaces)")
    bins = [b.split("=", 1) if "=" in b else (os.path.basename(b), b) for b in a.bin] or \
        [("HEAD", default_binary())]
    modes = {"on": [(True, False)], "off": [(False, False)], "held": [(False, True)],
             "both": [(True, False), (False, True)]}[a.agent]
    variants = []
    for name, path in bins:
        for agent, hold in modes:
            label = name if len(modes) == 1 else "%s/%s" % (name, "agent" if agent else "held")
            variants.append(Variant(len(variants), label, os.path.abspath(path), agent, hold))
    root = os.open("/proc/self/ns/net", os.O_RDONLY)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    env = dict(os.environ, WEFT_TIMINGS="1")
    try:
        for v in variants:
            v.setup(root)
        for i in range(1, a.n + 1):
            for v in (variants if i % 2 else variants[::-1]):
                v.rows.append(v.timed(root, env, "create", "--name", "s%d" % i, "--network", "bench"))
        if not a.no_detach:
            for i in range(1, a.n + 1):
                for v in (variants if i % 2 else variants[::-1]):
                    v.drows.append(v.timed(root, env, "rm", "s%d" % i))
    finally:
        for v in variants:
            v.teardown(root)
    keys = a.keys.split(",")
    size = max(1, a.n // a.buckets)
    print("median per bucket of %d attaches (us); l10/f10 = median of the last 10 over the first 10" % size)
    for v in variants:
        print("%s (%s)" % (v.name, v.bin))
        for key, rows in [(k, v.rows) for k in keys] + [("rm-" + k, v.drows) for k in ("wall", "total")]:
            if not rows:
                continue
            k = key[3:] if key.startswith("rm-") else key
            cols = [med(rows[j:j + size], k) for j in range(0, len(rows), size)]
            ratio = med(rows[-10:], k) / max(1, med(rows[:10], k))
            print("  %-14s %s   l10/f10=%.2f" % (key, " ".join("%6.0f" % c for c in cols), ratio))
    if a.out:
        with open(a.out, "w") as f:
            json.dump([{"name": v.name, "bin": v.bin, "attach": v.rows, "detach": v.drows}
                       for v in variants], f)


if __name__ == "__main__":
    main()
