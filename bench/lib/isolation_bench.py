#!/usr/bin/env python3
"""bench/isolation: what the port guard (anti-spoofing: `table bridge weft`) costs on the
sandbox -> sandbox path of one bridge (python3 stdlib only; iperf3 as the tool).

Two weft host namespaces made by this run (wib-P-on, wib-P-off), identical but for their
config: `anti_spoofing = true` (the default) and `anti_spoofing = false`. In each: network
`iso` (198.18.40.0/24 and 198.18.41.0/24), sandbox `srv` running `iperf3 -s`, sandbox `cli`;
`weft exec cli -- iperf3 -c <srv> -t T` measures one TCP stream. Repeats are interleaved (the
order of the two configurations alternates every repeat) so slow drift cancels in the paired
ratio. Every namespace, sandbox and file is removed at the end, also on error or Ctrl-C; the
root network namespace is never changed.
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import attach_bench as ab  # noqa: E402  (helpers only: run, namespaces, CPU accounting, build)

PID = os.getpid()
TMP = "/tmp/weft-bench-isolation-%d" % PID
CONFIGS = {
    "on": ("198.18.40.0/24", "anti_spoofing = true\n"),
    "off": ("198.18.41.0/24", "anti_spoofing = false\n"),
}


def log(msg):
    sys.stderr.write("[isolation] %s\n" % msg)
    sys.stderr.flush()


class Host:
    """One weft host namespace with its own state, a network and two sandboxes."""

    def __init__(self, binary, tag):
        self.bin, self.tag = binary, tag
        self.ns = "wib-%d-%s" % (PID, tag)
        self.dir = os.path.join(TMP, tag)
        self.made = False

    def w(self, *args, check=True, timeout=120):
        argv = ["nsenter", "--net=/run/netns/" + self.ns, self.bin, "--state-dir",
                self.dir + "/state", "--run-dir", self.dir + "/run", "--config",
                self.dir + "/weft.toml"] + list(args)
        p = ab.run(argv, env=ab.base_env(), timeout=timeout)
        if check and p.returncode != 0:
            raise RuntimeError("weft %s (%s) failed: %s" % (" ".join(args), self.tag,
                               p.stderr.decode(errors="replace")[-1500:]))
        return p

    def start(self):
        subnet, config = CONFIGS[self.tag]
        os.makedirs(self.dir)
        with open(self.dir + "/weft.toml", "w") as f:
            f.write(config)
        ab.must(["ip", "netns", "add", self.ns])
        self.made = True
        ab.must(["ip", "-n", self.ns, "link", "set", "lo", "up"])
        self.w("network", "create", "iso", "--subnet", subnet)
        self.w("run", "-d", "--name", "srv", "--network", "iso", "--", "iperf3", "-s")
        self.w("run", "-d", "--name", "cli", "--network", "iso", "--", "sleep", "86400")
        info = json.loads(self.w("--format", "json", "inspect", "srv").stdout)[0]
        self.srv_ip = info["networks"][0]["ipv4"].split("/")[0]
        self.srv_pid = info.get("pid")
        # Wait for the server to listen.
        for _ in range(100):
            p = ab.run(["nsenter", "--net=" + info["netns"], "ss", "-Hltn", "sport = :5201"])
            if p.stdout.strip():
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("iperf3 -s does not listen in %s" % self.tag)

    def guard_rules(self):
        p = ab.run(["ip", "netns", "exec", self.ns, "nft", "list", "table", "bridge", "weft"])
        text = p.stdout.decode()
        return sum(1 for l in text.splitlines() if l.strip().endswith(("drop", "return"))
                   or " goto " in l), ("@src4" in text)

    def iperf(self, secs):
        p = self.w("exec", "cli", "--", "iperf3", "-c", self.srv_ip, "-t", str(secs), "-J",
                   check=False, timeout=secs + 30)
        try:
            d = json.loads(p.stdout)
            e = d["end"]
            return {"gbps": e["sum_received"]["bits_per_second"] / 1e9,
                    "retransmits": e["sum_sent"].get("retransmits"),
                    "cpu": e.get("cpu_utilization_percent", {})}
        except (ValueError, KeyError):
            return {"error": (p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace"))[-400:]}

    def teardown(self):
        if not self.made:
            return
        if os.path.exists("/run/netns/" + self.ns):
            self.w("daemon", "stop", check=False)
            for name in ("cli", "srv"):
                self.w("rm", "-f", name, check=False)
            if self.w("network", "rm", "iso", check=False).returncode != 0:
                self.w("gc", check=False)
            ab.del_namespaces([self.ns])
        self.made = False


def proc_cpu(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            v = f.read().rsplit(")", 1)[1].split()
        return sum(int(x) for x in v[11:15]) / ab.HZ
    except (OSError, IndexError, ValueError, TypeError):
        return 0.0


def main():
    a = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("--reps", type=int, default=7, help="repeats per configuration (default 7)")
    a.add_argument("--secs", type=int, default=5, help="iperf3 -t (default 5)")
    a.add_argument("--quick", action="store_true", help="3 repeats of 2 s")
    a.add_argument("--no-build", action="store_true", help="use the built weft (target/<build target>/release/weft, the target of .cargo/config.toml) as it is")
    a.add_argument("--no-install", action="store_true", help="do not apt-get install iperf3")
    a.add_argument("--wait-idle", type=float, default=3.0,
                   help="seconds to wait for < 0.3 busy cores before each measurement")
    a.add_argument("--out", help="raw results (JSON); default bench/results/isolation-<time>.json")
    args = a.parse_args()
    if args.quick:
        args.reps, args.secs = 3, 2
    if os.geteuid() != 0:
        raise SystemExit("bench/isolation: must run as root (it creates network namespaces)")
    if not shutil.which("iperf3", path=ab.base_env()["PATH"]) and not args.no_install:
        log("installing iperf3 (apt-get)")
        env = dict(ab.base_env(), DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update"], stdout=subprocess.DEVNULL, env=env)
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "iperf3"],
                       stdout=subprocess.DEVNULL, env=env)
    for tool in ("iperf3", "nft", "ss", "nsenter"):
        if not shutil.which(tool, path=ab.base_env()["PATH"]):
            raise SystemExit("bench/isolation: %s is missing" % tool)
    build = ab.build_weft(args.no_build)
    hosts = {t: Host(build["binary"], t) for t in CONFIGS}

    def _sig(signum, _frame):
        raise KeyboardInterrupt("signal %d" % signum)
    signal.signal(signal.SIGTERM, _sig)
    results = []
    try:
        os.makedirs(TMP)
        for h in hosts.values():
            h.start()
        guards = {t: h.guard_rules() for t, h in hosts.items()}
        log("port guard: on = %d rules (address lookups: %s), off = %d rules (address lookups: %s)"
            % (guards["on"][0], guards["on"][1], guards["off"][0], guards["off"][1]))
        if not guards["on"][1] or guards["off"][1]:
            raise RuntimeError("the two hosts do not differ by their port guard: %s" % guards)
        for t, h in hosts.items():  # untimed warm-up
            r = h.iperf(1)
            if "error" in r:
                raise RuntimeError("warm-up of %s failed: %s" % (t, r["error"]))
        order = list(CONFIGS)
        for rep in range(1, args.reps + 1):
            for t in (order if rep % 2 else order[::-1]):
                h = hosts[t]
                others_before = None
                if args.wait_idle > 0:
                    others_before, _ = ab.wait_idle(args.wait_idle)
                m0 = ab.cpu_mark()
                c0 = proc_cpu(h.srv_pid)
                r = h.iperf(args.secs)
                m1 = ab.cpu_mark()
                mine = (m1[2] - m0[2]) + (proc_cpu(h.srv_pid) - c0)
                wall = m1[0] - m0[0]
                others = max(0.0, ((m1[1] - m0[1]) - mine) / wall) if wall > 0 else 0.0
                r.update(config=t, rep=rep, others_cores_during=round(others, 2),
                         others_cores_before=others_before)
                results.append(r)
                if "error" in r:
                    log("rep %d %-3s iperf3 FAILED: %s" % (rep, t, r["error"]))
                else:
                    log("rep %d %-3s %6.2f Gbit/s  retr %-4s%s" % (
                        rep, t, r["gbps"], r["retransmits"],
                        "" if others < 0.3 else "  (NOISY: others used %.1f cores)" % others))
    finally:
        ab.back_to_root()
        for h in hosts.values():
            try:
                h.teardown()
            except Exception as e:  # the namespace goes anyway
                log("teardown of %s: %s" % (h.tag, e))
        ab.remove_dir(TMP)

    ok = [r for r in results if "error" not in r]
    by = {t: [r["gbps"] for r in ok if r["config"] == t] for t in CONFIGS}
    if not by["on"] or not by["off"]:
        raise SystemExit("no successful measurement of both configurations")
    paired = []
    for rep in range(1, args.reps + 1):
        on = [r["gbps"] for r in ok if r["config"] == "on" and r["rep"] == rep]
        off = [r["gbps"] for r in ok if r["config"] == "off" and r["rep"] == rep]
        if on and off:
            paired.append(on[0] / off[0])
    rows = [[t, "%.2f" % statistics.median(v), "%.2f..%.2f" % (min(v), max(v)), len(v)]
            for t, v in by.items()]
    print(ab.table(rows, ["anti_spoofing", "median Gbit/s", "min..max", "runs"]))
    ratio = statistics.median(by["on"]) / statistics.median(by["off"])
    pr = statistics.median(paired) if paired else float("nan")
    cost = (1 - pr) * 100
    print("\nsandbox -> sandbox on one bridge, anti_spoofing on / off: %.3f (medians), %.3f (paired, "
          "median of %d repeats)" % (ratio, pr, len(paired)))
    print("cost of the port guard: %.1f%% (target < 3%%: %s)" % (cost, "ok" if cost < 3 else "MISS"))
    noisy = [r for r in ok if r.get("others_cores_during", 0) >= 0.3]
    if noisy:
        print("NOISY: %d of %d measurements ran while other processes used >= 0.3 cores"
              % (len(noisy), len(ok)))
    out = args.out or os.path.join(os.path.dirname(HERE), "results",
                                   "isolation-%s.json" % time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"build": build, "args": vars(args), "guards": guards, "results": results,
                   "ratio_medians": ratio, "ratio_paired": pr}, f, indent=1)
    print("raw results: %s" % out)


if __name__ == "__main__":
    main()
