#!/usr/bin/env python3
"""bench/dns - local-name answers of weft's DNS server (a task of `weft daemon`) against
aardvark-dns 1.4 (Podman's), in one run, on the same bridge, with the same 1,000 names.

In a namespace playing the host: one weft network (10.212.0.0/16) with 250 sandboxes
(`weft create`, names sI with the aliases sI-a, sI-b, sI-c: 1,000 names) and a client sandbox. aardvark-dns gets a configuration for the
same network (its gateway, the same names and addresses, the client) and listens on the same
gateway at another port. dnsperf runs inside the client sandbox, for LIMIT seconds per run,
against each server in turn (repeats interleaved), asking the 1,000 names (A) in a loop.

Per run: queries per second and average latency (dnsperf), the server's CPU time per answer
(utime+stime from /proc over the run: weft's DNS thread, and the whole agent; aardvark's whole
process) and its resident memory. weft's per-source rate limit is turned off
(`dns_rate_limit = 0`): dnsperf is one source.

Target: weft's CPU per answer at most half of aardvark's, at no lower rate.
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import attach_bench as ab  # noqa: E402  (build_weft, run, must, base_env)

PID = os.getpid()
NS = "wdb-%d" % PID
DIR = "/tmp/weft-bench-dns-%d" % PID
AARDVARK = "/usr/lib/podman/aardvark-dns"
AARDVARK_PORT = 5533
SANDBOXES = 250
ALIASES = ("a", "b", "c")
TICK = os.sysconf("SC_CLK_TCK")


def log(msg):
    sys.stderr.write("[dns] %s\n" % msg)
    sys.stderr.flush()


def nsx(argv):
    return ["nsenter", "--net=/run/netns/" + NS] + argv


class Bench:
    def __init__(self, weft_bin):
        self.bin = weft_bin
        self.env = ab.base_env()
        self.aardvark = None
        self.profile = None

    def weft_argv(self, *args):
        return nsx([self.bin, "--state-dir", DIR + "/state", "--run-dir", DIR + "/run",
                    "--config", DIR + "/weft.toml"] + list(args))

    def weft(self, *args):
        p = ab.run(self.weft_argv(*args), env=self.env)
        if p.returncode != 0:
            raise RuntimeError("weft %s: %s" % (" ".join(args), p.stderr.decode(errors="replace")))
        return p

    def json(self, *args):
        return json.loads(self.weft("--format", "json", *args).stdout)

    def setup(self):
        os.makedirs(DIR, mode=0o700)
        with open(DIR + "/weft.toml", "w") as f:
            f.write('agent = true\ndns_rate_limit = 0\nresolv_conf = "%s/resolv.conf"\n'
                    'resolved_conf = "%s/resolved.conf"\n' % (DIR, DIR))
        ab.must(["ip", "netns", "add", NS])
        ab.must(nsx(["ip", "link", "set", "lo", "up"]))
        self.weft("network", "create", "n", "--subnet", "10.212.0.0/16")
        self.weft("create", "--name", "client", "--network", "n")
        log("creating %d sandboxes" % SANDBOXES)
        for i in range(SANDBOXES):
            aliases = []
            for a in ALIASES:
                aliases += ["--network-alias", "s%d-%s" % (i, a)]
            self.weft("create", "--name", "s%d" % i, "--network", "n", *aliases)
        sbs = {s["name"]: s for s in self.json("inspect", *["s%d" % i for i in range(SANDBOXES)] + ["client"])}
        self.gw = self.json("network", "inspect", "n")[0]["subnets"][0]["gateway"]
        os.makedirs(DIR + "/aardvark")
        with open(DIR + "/aardvark/n", "w") as f:
            f.write(self.gw + "\n")
            for name, s in sbs.items():
                ip = s["networks"][0]["ipv4"].split("/")[0]
                names = [name] + ([name + "-" + a for a in ALIASES] if name != "client" else [])
                f.write("%s %s  %s\n" % (s["id"], ip, ",".join(names)))
        with open(DIR + "/queries", "w") as f:
            for i in range(SANDBOXES):
                for n in ["s%d" % i] + ["s%d-%s" % (i, a) for a in ALIASES]:
                    f.write("%s A\n" % n)
        deadline = time.time() + 10
        while not os.path.exists(DIR + "/run/dns.port"):
            if time.time() > deadline:
                raise RuntimeError("the agent recorded no DNS port")
            time.sleep(0.05)
        self.weft_port = int(open(DIR + "/run/dns.port").read())
        st = self.json("daemon", "status")["status"]
        self.agent_pid = st["pid"]
        self.dns_tid = None
        for tid in os.listdir("/proc/%d/task" % self.agent_pid):
            if open("/proc/%d/task/%s/comm" % (self.agent_pid, tid)).read().strip() == "weft-dns":
                self.dns_tid = int(tid)
        log("weft: port %d, %s records; agent pid %d, DNS thread %s" % (
            self.weft_port, st["dns"]["records"], self.agent_pid, self.dns_tid))
        # `run` forks the server and returns once it listens; the server writes its pid.
        ab.must(nsx([AARDVARK, "--config", DIR + "/aardvark", "-p", str(AARDVARK_PORT), "run"]))
        self.aardvark = int(open(DIR + "/aardvark/aardvark.pid").read().strip())

    def cpu(self, pid, tid=None):
        path = "/proc/%d/task/%d/stat" % (pid, tid) if tid else "/proc/%d/stat" % pid
        fields = open(path).read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK

    def rss_kib(self, pid):
        for line in open("/proc/%d/status" % pid):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def dnsperf(self, port, limit):
        p = ab.run(self.weft_argv("exec", "client", "--", "dnsperf", "-s", self.gw, "-p", str(port),
                                  "-d", DIR + "/queries", "-l", str(limit), "-c", "4", "-q", "200"),
                   env=self.env)
        out = p.stdout.decode(errors="replace")
        if "Queries completed" not in out or p.returncode != 0:
            log("dnsperf failed: %s %s" % (out[-1500:], p.stderr.decode(errors="replace")[-1500:]))
        def grab(pattern):
            m = re.search(pattern, out)
            return float(m.group(1)) if m else float("nan")
        return {
            "completed": grab(r"Queries completed:\s+(\d+)"),
            "lost": grab(r"Queries lost:\s+(\d+)"),
            "qps": grab(r"Queries per second:\s+([\d.]+)"),
            "avg_ms": grab(r"Average Latency \(s\):\s+([\d.]+)") * 1000,
            "noerror": grab(r"NOERROR (\d+)"),
        }

    def one(self, tool, limit, perf=False):
        if tool == "weft":
            pid, port = self.agent_pid, self.weft_port
        else:
            pid, port = self.aardvark, AARDVARK_PORT
        before = self.cpu(pid)
        before_t = self.cpu(pid, self.dns_tid) if tool == "weft" and self.dns_tid else None
        prof = None
        if perf and tool == "weft" and self.dns_tid:
            prof = subprocess.Popen(["perf", "record", "-q", "-F", "4999", "-t", str(self.dns_tid),
                                     "-o", DIR + "/perf.data"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        r = self.dnsperf(port, limit)
        if prof:
            prof.send_signal(signal.SIGINT)
            prof.wait()
            rep = ab.run(["perf", "report", "-i", DIR + "/perf.data", "--stdio", "--sort", "sym",
                          "--percent-limit", "0.2"])
            self.profile = rep.stdout.decode(errors="replace")
        r["cpu_s"] = self.cpu(pid) - before
        if before_t is not None:
            r["thread_cpu_s"] = self.cpu(pid, self.dns_tid) - before_t
        r["rss_kib"] = self.rss_kib(pid)
        n = r["completed"] or float("nan")
        r["us_per_answer"] = r["cpu_s"] * 1e6 / n
        if "thread_cpu_s" in r:
            r["thread_us_per_answer"] = r["thread_cpu_s"] * 1e6 / n
        r["tool"] = tool
        return r

    def teardown(self):
        if os.environ.get("BENCH_KEEP"):
            log("kept %s and %s" % (NS, DIR))
            return
        if self.aardvark:
            try:
                os.kill(self.aardvark, signal.SIGTERM)
            except ProcessLookupError:
                pass
        if os.path.isdir(DIR + "/state"):
            ab.run(self.weft_argv("rm", "-f", "client", *["s%d" % i for i in range(SANDBOXES)]), env=self.env)
            ab.run(self.weft_argv("network", "rm", "n"), env=self.env)
            ab.run(self.weft_argv("daemon", "stop"), env=self.env)
        ab.run(["umount", "-l", DIR + "/run/netns"])
        ab.run(["ip", "netns", "del", NS])
        ab.run(["rm", "-rf", DIR])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=10, help="seconds per dnsperf run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--perf", action="store_true",
                    help="profile weft's DNS thread in its first run (perf record, flat), saved with the results")
    a = ap.parse_args()
    info = ab.build_weft(a.no_build)
    b = Bench(info["binary"])
    runs = []
    try:
        b.setup()
        for k in range(a.repeats):
            for tool in ("weft", "aardvark"):
                r = b.one(tool, a.limit, perf=a.perf and k == 0)
                log("%d %-8s %8.0f qps  avg %.3f ms  %5.1f µs CPU/answer%s  rss %d KiB  lost %d" % (
                    k, tool, r["qps"], r["avg_ms"], r["us_per_answer"],
                    (" (DNS thread %.1f)" % r["thread_us_per_answer"]) if "thread_us_per_answer" in r else "",
                    r["rss_kib"], r["lost"]))
                runs.append(r)
    finally:
        b.teardown()
    def med(tool, key):
        return ab.pct([r[key] for r in runs if r["tool"] == tool and key in r], 50)
    print("| | weft | aardvark-dns 1.4 | aardvark/weft |")
    print("|---|---|---|---|")
    for key, label in (("qps", "local names, queries/s"), ("avg_ms", "average latency, ms"),
                       ("us_per_answer", "CPU per answer, µs (whole process)"),
                       ("rss_kib", "resident memory, KiB")):
        w, v = med("weft", key), med("aardvark", key)
        print("| %s | %.3g | %.3g | %.2f |" % (label, w, v, v / w if w else float("nan")))
    print("weft DNS thread alone: %.1f µs CPU per answer (median of %d runs)" % (
        med("weft", "thread_us_per_answer"), a.repeats))
    os.makedirs(os.path.join(ab.REPO, "bench", "results"), exist_ok=True)
    out = os.path.join(ab.REPO, "bench", "results", "dns-%d.json" % int(time.time()))
    with open(out, "w") as f:
        json.dump({"runs": runs, "binary": info, "profile": b.profile}, f, indent=1)
    log("raw runs: " + out)


if __name__ == "__main__":
    main()
