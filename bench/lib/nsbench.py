#!/usr/bin/env python3
"""What the benches that run inside namespaces of their own share (bench/dns, bench/ports,
bench/overlay): the record of everything a run made so that every exit path removes it
(`Resources`), the clean-up after an earlier run that was killed outright, the before/after
check of the root namespace, the run lock and signal handling around a run, tool installs,
one iperf3 run, and per-process CPU readings. python3 stdlib only.

A bench makes one `Kit` with its own names (namespace prefix, temp-dir prefix, script name)
and keeps the helpers of attach_bench (run, must, pct, table, setns, build) for the rest.
"""
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import attach_bench as ab  # noqa: E402  (run, must, namespaces, mounts, build, cpu marks)

run = ab.run
must = ab.must
HZ = ab.HZ


def nsx(ns):
    """The argv prefix that runs a program in namespace `ns` (a name under /run/netns, or an
    absolute path such as a sandbox's bind-mounted handle); nsenter execs the program, so
    the PID of the process started with it is the program's."""
    path = ns if ns.startswith("/") else "/run/netns/" + ns
    return ["nsenter", "--net=" + path]


def proc_cpu(pid):
    """utime+stime+cutime+cstime of a process in seconds (0 when gone); clock-tick grain."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            v = f.read().rsplit(")", 1)[1].split()
        return sum(int(x) for x in v[11:15]) / HZ
    except (OSError, IndexError, ValueError):
        return 0.0


def cpu_ns(pid):
    """CPU time of all threads of a process in ns, from schedstat (exact, unlike the
    clock-tick grain of /proc/PID/stat); None when the process is gone. Threads that
    already exited are not counted."""
    total = 0
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return None
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def cpu_ns_by_thread(pid):
    """CPU time in ns of a process's threads, summed per thread name (comm)."""
    out = {}
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return out
    for tid in tids:
        try:
            comm = open("/proc/%d/task/%s/comm" % (pid, tid)).read().strip()
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                out[comm] = out.get(comm, 0) + int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return out


def iperf_once(argv, secs):
    """One iperf3 client run (`argv` up to and including `-c SERVER`) of `secs` seconds:
    {gbps, sent_gbps, retransmits, cpu, mss} or {error}."""
    p = run(argv + ["-t", str(secs), "-J", "--connect-timeout", "3000"], timeout=secs + 30)
    try:
        d = json.loads(p.stdout)
    except ValueError:
        d = {}
    if p.returncode != 0 or "end" not in d or "sum_received" not in d.get("end", {}):
        err = d.get("error") or (p.stdout.decode(errors="replace")[-300:] + p.stderr.decode(errors="replace")[-300:])
        return {"error": str(err).strip()}
    e = d["end"]
    return {"gbps": e["sum_received"]["bits_per_second"] / 1e9,
            "sent_gbps": e["sum_sent"]["bits_per_second"] / 1e9,
            "retransmits": e["sum_sent"].get("retransmits"),
            "cpu": e.get("cpu_utilization_percent", {}),
            "mss": d.get("start", {}).get("tcp_mss_default")}


def wait_listen(nspath, port, proc=None, timeout=10.0, proto="t"):
    """Wait until something listens on `port` (TCP; proto "u" for UDP) in namespace `nspath`."""
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        p = run(nsx(nspath) + ["ss", "-Hl%sn" % proto, "sport = :%d" % port])
        if p.stdout.strip():
            return
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.1)
    raise RuntimeError("nothing listens on port %d in %s" % (port, nspath))


def apt_install(pkgs, log):
    """apt-get install the Debian packages `pkgs` (after an update); failures are logged, the
    caller checks for the binaries it needs."""
    if not pkgs:
        return
    log("installing %s (apt-get)" % " ".join(pkgs))
    env = dict(ab.base_env(), DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update"], stdout=subprocess.DEVNULL, env=env)
    p = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends"] + list(pkgs),
                       stdout=subprocess.DEVNULL, env=env)
    if p.returncode:
        log("apt-get install failed (rc=%d)" % p.returncode)


def which(binary):
    return shutil.which(binary, path=ab.base_env()["PATH"])


class Kit:
    """One bench's names: `tag` (log prefix, lock and temp-dir name: bench/<tag>), `ns_prefix`
    (every namespace it makes is `<ns_prefix><pid>-<suffix>`) and `script` (the file name of
    its python module, to recognise a run that is still alive)."""

    def __init__(self, tag, ns_prefix, script):
        self.tag = tag
        self.ns_prefix = ns_prefix
        self.script = script.encode()
        self.pid = os.getpid()
        self.tmp_prefix = "/tmp/weft-bench-%s-" % tag
        self.lock_path = "/run/lock/weft-bench-%s.lock" % tag
        self.ns_re = re.compile(r"^%s(\d+)-[a-z0-9]+$" % re.escape(ns_prefix))

    def log(self, msg):
        sys.stderr.write("[%s] %s\n" % (self.tag, msg))
        sys.stderr.flush()

    def ns_name(self, suffix):
        return "%s%d-%s" % (self.ns_prefix, self.pid, suffix)

    def pid_is_bench(self, pid):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                return self.script in f.read()
        except OSError:
            return False

    def stale_runs(self):
        """(pid, temp dir) of earlier runs that are gone but left their temp dir."""
        out = []
        for e in sorted(os.listdir("/tmp")):
            m = re.match(r"^weft-bench-%s-(\d+)$" % re.escape(self.tag), e)
            if m and int(m.group(1)) != self.pid and not self.pid_is_bench(int(m.group(1))):
                out.append((int(m.group(1)), "/tmp/" + e))
        return out

    def kill_recorded(self, d, markers):
        """SIGKILL the process groups an earlier run recorded in d/pids whose command line
        still contains one of `markers` (so a reused PID is left alone)."""
        pdir = d + "/pids"
        for f in sorted(os.listdir(pdir)) if os.path.isdir(pdir) else []:
            try:
                pid = int(open(os.path.join(pdir, f)).read())
                cmd = open("/proc/%d/cmdline" % pid, "rb").read()
                if any(x in cmd for x in markers):
                    os.killpg(pid, signal.SIGKILL)
            except (OSError, ValueError):
                pass

    def remove_stale_namespaces(self, old_pid=None):
        """Namespaces of ours whose run is gone (of run `old_pid` only, when given)."""
        stale = []
        for n in ab.ns_list():
            m = self.ns_re.match(n)
            if not m or int(m.group(1)) == self.pid:
                continue
            if (old_pid is None and not self.pid_is_bench(int(m.group(1)))) or int(m.group(1)) == old_pid:
                stale.append(n)
        if stale:
            self.log("removing stale namespaces: %s" % " ".join(stale))
            ab.del_namespaces(stale)

    def root_snapshot(self, extra=None):
        """What a run must leave as it found it in the root namespace: namespaces, links, nft
        tables, our mounts and temp dirs, plus `extra` (name -> callable giving a list or a
        value)."""
        def out(cmd):
            if not which(cmd[0]):
                return ""
            p = run(cmd, env=ab.base_env())
            return p.stdout.decode(errors="replace") if p.returncode == 0 else ""
        snap = {
            "netns": sorted(ab.ns_list()),
            "links": sorted(l.split(":")[1].strip().split("@")[0] for l in out(["ip", "-o", "link"]).splitlines()),
            "nft_tables": sorted(out(["nft", "list", "tables"]).splitlines()),
            "our_mounts": ab.our_mounts_under(self.tmp_prefix),
            "our_tmp": sorted(e for e in os.listdir("/tmp") if e.startswith(os.path.basename(self.tmp_prefix))),
        }
        for k, f in (extra or {}).items():
            snap[k] = f(out)
        return snap

    def snapshot_diff(self, a, b, also_ours=()):
        """(changes of ours, changes by something else) between two root snapshots. A list
        entry is ours when it carries our namespace prefix or temp-dir name (or a prefix in
        `also_ours`); a scalar that changed is ours unless its key is in `others_keys`."""
        ours, other = [], []
        marks = (self.ns_prefix, os.path.basename(self.tmp_prefix).rstrip("-")) + tuple(also_ours)
        for k in a:
            if a[k] == b.get(k):
                continue
            if isinstance(a[k], list):
                plus, minus = sorted(set(b[k]) - set(a[k])), sorted(set(a[k]) - set(b[k]))
                mine = [x for x in plus + minus if any(m in x for m in marks)]
                (ours if mine or k.startswith("our_") else other).append("%s: +%s -%s" % (k, plus, minus))
            else:
                (other if k in self.others_keys else ours).append("%s changed" % k)
        return ours, other

    others_keys = ("iptables_save",)

    def guarded(self, body, prepare=None, snapshot_extra=None, cleanup=None,
                what="netns list, links, nft tables, mounts, temp dirs"):
        """Runs prepare() (the clean-up after an earlier run), then body() under the bench's
        lock with SIGTERM/SIGHUP/SIGINT turned into an exit, then, whatever happened,
        cleanup() and the check that the root namespace is as it was after prepare().
        Returns the exit code (1 when the run left something of its own behind)."""
        def _sig(signum, _frame):
            raise SystemExit("interrupted by signal %d" % signum)
        signal.signal(signal.SIGTERM, _sig)
        signal.signal(signal.SIGHUP, _sig)
        signal.signal(signal.SIGINT, _sig)  # also when started in the background (SIGINT ignored then)
        lockf = open(self.lock_path, "w")
        try:
            fcntl.flock(lockf, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise SystemExit("another bench/%s run holds %s" % (self.tag, self.lock_path))
        started = time.time()
        before = None
        rc = 0
        try:
            if prepare is not None:
                prepare()
            before = self.root_snapshot(snapshot_extra)
            rc = body() or 0
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            if cleanup is not None:
                cleanup()
            if before is not None:
                after = self.root_snapshot(snapshot_extra)
                ours, other = self.snapshot_diff(before, after)
                print("root namespace check (%s): %s" % (what, "unchanged" if not ours and not other else
                      ("LEFT BY US: " + "; ".join(ours)) if ours else "nothing of ours left"))
                if other:
                    print("  changed meanwhile by something else (not names of ours): %s" % "; ".join(other)[:600])
                if ours:
                    rc = 1
            print("elapsed %.0f s" % (time.time() - started))
            lockf.close()
            try:
                os.unlink(self.lock_path)
            except OSError:
                pass
        return rc


class Resources:
    """Everything a run made, so any exit path removes it: background processes (each the
    leader of its own process group, killed by the PID we started), objects with a
    .teardown() (weft hosts, peers; torn down newest first), namespaces and the temp dir.
    Before the namespaces go, every process still inside one of them or inside a namespace
    handle mounted under the temp dir (a weft sandbox's) is killed: all of those were
    started by this run, through weft or directly."""

    def __init__(self, kit):
        self.kit = kit
        self.dir = "%s%d" % (kit.tmp_prefix, kit.pid)
        self.procs = []        # (name, Popen)
        self.teardowns = []    # objects with .name and .teardown()
        self.namespaces = []
        self.made_dir = False

    def mkdir(self):
        os.makedirs(self.dir + "/pids", mode=0o700)
        self.made_dir = True

    def add_ns(self, *names):
        for n in names:
            if os.path.exists("/run/netns/" + n):
                ab.del_namespaces([n])
            self.namespaces.append(n)
            must(["ip", "netns", "add", n])
            must(["ip", "-n", n, "link", "set", "lo", "up"])

    def bg(self, name, ns, argv, env=None):
        """Start argv inside namespace ns in its own session; output to <dir>/<name>.log."""
        logf = open(os.path.join(self.dir, "%s.log" % name), "ab")
        p = subprocess.Popen(nsx(ns) + argv, stdout=logf, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True, env=env or ab.base_env())
        logf.close()
        self.procs.append((name, p))
        with open(os.path.join(self.dir, "pids", name + ".pid"), "w") as f:
            f.write("%d\n" % p.pid)
        return p

    def stop_proc(self, p, sig=signal.SIGTERM, grace=3.0):
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except OSError:
                pass
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            p.wait(timeout=5)

    def stop_procs(self):
        for _, p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except OSError:
                    pass
        deadline = time.monotonic() + 3
        for _, p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except OSError:
                    pass
                p.wait(timeout=5)
        self.procs = []

    def ns_inodes(self):
        """Inodes of our namespaces and of the namespace handles mounted under our dir."""
        inos = set()
        paths = ["/run/netns/" + n for n in self.namespaces] + ab.our_mounts_under(self.dir)
        for path in paths:
            try:
                inos.add(os.stat(path).st_ino)
            except OSError:
                pass
        return inos

    def kill_inside(self):
        """SIGKILL every process whose network namespace is one of ours (see the class)."""
        inos = self.ns_inodes()
        if not inos:
            return []
        inos.discard(ab.ROOT_NS_INO)
        killed = []
        for e in os.listdir("/proc"):
            if not e.isdigit() or int(e) == self.kit.pid:
                continue
            try:
                if os.stat("/proc/%s/ns/net" % e).st_ino in inos:
                    comm = open("/proc/%s/comm" % e).read().strip()
                    os.kill(int(e), signal.SIGKILL)
                    killed.append("%s(%s)" % (comm, e))
            except OSError:
                pass
        return killed

    def cleanup(self):
        try:
            ab.back_to_root()
        except OSError as e:
            self.kit.log("could not return to the root namespace: %s" % e)
        for t in reversed(self.teardowns):
            try:
                t.teardown()
            except Exception as e:  # the namespaces go anyway
                self.kit.log("teardown of %s: %s" % (getattr(t, "name", t), e))
        self.teardowns = []
        # each step on its own: a failure of one must not leave the rest behind
        for step in (self.stop_procs, self._kill_inside_logged, self._del_namespaces, self._remove_dir):
            try:
                step()
            except Exception as e:
                self.kit.log("clean-up step %s: %s" % (step.__name__, e))

    def _kill_inside_logged(self):
        killed = self.kill_inside()
        if killed:
            self.kit.log("killed what was left inside our namespaces: %s" % " ".join(killed))
            time.sleep(0.2)

    def _del_namespaces(self):
        if self.namespaces:
            ab.del_namespaces(self.namespaces)
            self.namespaces = []

    def _remove_dir(self):
        if self.made_dir:
            ab.remove_dir(self.dir)
            self.made_dir = False


def standard_args(ap, name, wait_idle, before="each measurement"):
    """The options every namespace benchmark takes: --no-build, --no-install, --wait-idle
    (default `wait_idle` seconds, waited `before` ...) and --out."""
    ap.add_argument("--no-build", action="store_true",
                    help="use the built weft (target/<build target>/release/weft, the target of "
                         ".cargo/config.toml) as it is")
    ap.add_argument("--no-install", action="store_true", help="never apt-get install missing tools")
    ap.add_argument("--wait-idle", type=float, default=wait_idle,
                    help="before %s wait up to this many seconds until other processes use < 0.3 "
                         "cores (default %g; 0 = never)" % (before, wait_idle))
    ap.add_argument("--out", help="JSON output (default bench/results/%s-<timestamp>.json)" % name)
