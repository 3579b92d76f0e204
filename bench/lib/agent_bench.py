#!/usr/bin/env python3
"""bench/agent - how fast the host agent (`weft daemon`) repairs drift weft did not cause.

In a namespace playing the host: one network with two sandboxes, the agent started on demand.
Then, repeatedly, something weft did not do breaks what weft made, and the benchmark polls the
kernel every 2 ms until it is whole again, without running any weft command:

  bridge   `ip link del BRIDGE`                     repaired: the bridge has its 2 ports again
  veth     `ip link del HOST_VETH`                  repaired: the veth is back on the bridge
  ruleset  `nft flush ruleset` (a firewall reload)  repaired: `inet weft` has its bridge again
  sysctl   route_localnet of the bridge set to 0    repaired: it is 1 again

Target: every repair within 1 s. There is no peer to compare with: Docker and Podman leave
these broken until a restart or a manual `netavark firewall-reload`. Also printed: the agent's
CPU use while idle (its 300 ms sysctl check) and its resident memory.

Everything happens in namespaces this script creates and deletes; the machine's own namespace
is never touched.
"""

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import attach_bench as ab  # noqa: E402  (build_weft, pct, run, must, base_env)

PID = os.getpid()
NS = "wab-%d" % PID
DIR = "/tmp/weft-bench-agent-%d" % PID
TARGET_MS = 1000.0


def log(msg):
    sys.stderr.write("[agent] %s\n" % msg)
    sys.stderr.flush()


def nsx(argv):
    return ["nsenter", "--net=/run/netns/" + NS] + argv


class Bench:
    def __init__(self, weft_bin):
        self.bin = weft_bin
        self.env = ab.base_env()

    def weft(self, *args, check=True):
        argv = nsx([self.bin, "--state-dir", DIR + "/state", "--run-dir", DIR + "/run",
                    "--config", DIR + "/weft.toml"] + list(args))
        p = ab.run(argv, env=self.env)
        if check and p.returncode != 0:
            raise RuntimeError("weft %s: %s" % (" ".join(args), p.stderr.decode(errors="replace")))
        return p

    def json(self, *args):
        return json.loads(self.weft("--format", "json", *args).stdout)

    def sh(self, script, check=True):
        p = ab.run(nsx(["sh", "-c", script]))
        if check and p.returncode != 0:
            raise RuntimeError("%s: %s" % (script, p.stderr.decode(errors="replace")))
        return p.stdout.decode()

    def setup(self):
        os.makedirs(DIR, mode=0o700)
        with open(DIR + "/weft.toml", "w") as f:
            f.write('agent = true\nresolv_conf = "%s/resolv.conf"\n' % DIR)
        ab.must(["ip", "netns", "add", NS])
        self.sh("ip link set lo up")
        self.weft("network", "create", "n", "--subnet", "10.210.0.0/24")
        self.weft("create", "--name", "a", "--network", "n")
        self.weft("create", "--name", "b", "--network", "n")
        self.bridge = self.json("network", "inspect", "n")[0]["bridge"]
        self.veth = self.json("inspect", "a")[0]["networks"][0]["host_interface"]
        deadline = time.time() + 10
        while not self.json("daemon", "status")["running"]:
            if time.time() > deadline:
                raise RuntimeError("the agent did not start")
            time.sleep(0.05)
        self.agent_pid = self.json("daemon", "status")["status"]["pid"]

    def ports(self):
        p = ab.run(nsx(["ip", "-o", "link", "show", "master", self.bridge]))
        return p.stdout.decode() if p.returncode == 0 else ""

    def cases(self):
        key = "/proc/sys/net/ipv4/conf/%s/route_localnet" % self.bridge
        return [
            ("bridge", "ip link del %s" % self.bridge,
             lambda: len(self.ports().splitlines()) == 2),
            ("veth", "ip link del %s" % self.veth,
             lambda: self.veth in self.ports()),
            ("ruleset", "nft flush ruleset",
             lambda: self.bridge in self.sh("nft list set inet weft bridges 2>/dev/null", check=False)),
            ("sysctl", "echo 0 > %s" % key,
             lambda: self.sh("cat %s" % key).strip() == "1"),
        ]

    def measure(self, repeats):
        out = {}
        for name, breaker, whole in self.cases():
            samples = []
            for _ in range(repeats):
                self.sh(breaker)
                t0 = time.perf_counter()
                while not whole():
                    if time.perf_counter() - t0 > 10:
                        raise RuntimeError("%s: not repaired within 10 s" % name)
                    time.sleep(0.002)
                samples.append((time.perf_counter() - t0) * 1000)
                # Let the agent settle (its own follow-up events) before the next break.
                time.sleep(0.3)
            out[name] = samples
        return out

    def agent_cpu(self, seconds):
        def ticks():
            with open("/proc/%d/stat" % self.agent_pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return int(fields[11]) + int(fields[12])
        hz = os.sysconf("SC_CLK_TCK")
        t0, c0 = time.time(), ticks()
        time.sleep(seconds)
        t1, c1 = time.time(), ticks()
        rss = 0
        with open("/proc/%d/status" % self.agent_pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
        return (c1 - c0) / hz / (t1 - t0) * 100, rss / 1024

    def teardown(self):
        if os.path.exists("/run/netns/" + NS):
            self.weft("daemon", "stop", check=False)
            self.weft("rm", "-f", "a", "b", check=False)
            self.weft("network", "rm", "n", check=False)
            self.weft("gc", check=False)
            for m in ab.our_mounts_under(DIR):
                ab._libc.umount2(m.encode(), 2)
            ab.run(["ip", "netns", "del", NS])
        ab.remove_dir(DIR)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/agent: run as root")
    for tool, pkg in (("nft", "nftables"), ("ip", "iproute2")):
        if subprocess.run(["sh", "-c", "command -v " + tool], capture_output=True).returncode:
            log("installing %s" % pkg)
            ab.must(["apt-get", "install", "-y", "-qq", pkg])
    info = ab.build_weft(args.no_build)
    b = Bench(info["binary"])
    try:
        b.setup()
        res = b.measure(args.repeats)
        cpu, rss = b.agent_cpu(10)
    finally:
        b.teardown()
    print("weft agent repairs, %d each (%s, git %s); target: within %d ms" % (
        args.repeats, info["version"], info["git_head"], TARGET_MS))
    print("%-8s %9s %9s %9s  %s" % ("drift", "p50 ms", "p90 ms", "max ms", ""))
    for name, s in res.items():
        mx = max(s)
        print("%-8s %9.1f %9.1f %9.1f  %s" % (
            name, ab.pct(s, 50), ab.pct(s, 90), mx, "ok" if mx <= TARGET_MS else "MISSED"))
    print("agent while idle: %.2f%% of one CPU, %.1f MiB resident" % (cpu, rss))
    os.makedirs(os.path.join(ab.REPO, "bench", "results"), exist_ok=True)
    path = os.path.join(ab.REPO, "bench", "results", time.strftime("agent-%Y%m%d-%H%M%S.json"))
    with open(path, "w") as f:
        json.dump({"samples_ms": res, "idle_cpu_percent": cpu, "rss_mib": rss, "weft": info}, f, indent=1)
    print("raw samples: %s" % os.path.relpath(path, ab.REPO))


if __name__ == "__main__":
    main()
