#!/usr/bin/env python3
"""Short-TCP-connection rate probe for bench/ports (python3 stdlib only).

  ports_conn.py server PORT [--bind ADDR] [--backlog 4096]
      Accepts connections forever; sends one byte on each and closes it at once.
      Runs until killed (bench/ports kills it by the PID it started).

  ports_conn.py client HOST PORT [--seconds 3] [--timeout 2] [--bind ADDR] [--json]
      For SECONDS, in a loop: connect (from ADDR, if given), recv the one byte, close.
      Reports completed connections per second, failures and connect+recv latency
      percentiles (µs).

The server closes first, so TIME_WAIT sockets pile up on the server side (in the
sandbox) and the client's ephemeral ports are free again at once.
"""
import argparse
import json
import socket
import sys
import time


def pct(v, p):
    if not v:
        return float("nan")
    k = (len(v) - 1) * p / 100.0
    f = int(k)
    c = min(f + 1, len(v) - 1)
    return v[f] + (v[c] - v[f]) * (k - f)


def server(a):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((a.bind, a.port))
    s.listen(a.backlog)
    sys.stderr.write("listening on %s:%d\n" % (a.bind, a.port))
    sys.stderr.flush()
    while True:
        try:
            c, _ = s.accept()
        except InterruptedError:
            continue
        try:
            c.send(b"x")
        except OSError:
            pass
        c.close()


def client(a):
    addr = (a.host, a.port)
    ok = fail = 0
    lat = []
    errors = {}
    t_end = time.perf_counter() + a.seconds
    t0 = time.perf_counter()
    now = t0
    while now < t_end:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(a.timeout)
        try:
            if a.bind:
                s.bind((a.bind, 0))
            s.connect(addr)
            if s.recv(1) != b"x":
                raise OSError("no byte from the server")
            ok += 1
        except OSError as e:
            fail += 1
            k = type(e).__name__ + ":" + str(getattr(e, "errno", ""))
            errors[k] = errors.get(k, 0) + 1
        finally:
            s.close()
        t1 = time.perf_counter()
        lat.append(t1 - now)
        now = t1
    wall = now - t0
    lat.sort()
    res = {"host": a.host, "port": a.port, "seconds": wall, "ok": ok, "failed": fail,
           "rate": ok / wall if wall > 0 else 0.0, "errors": errors,
           "p50_us": pct(lat, 50) * 1e6, "p99_us": pct(lat, 99) * 1e6, "max_us": (lat[-1] * 1e6) if lat else None}
    if a.json:
        print(json.dumps(res))
    else:
        print("%d connections in %.2f s: %.0f/s, %d failed, p50 %.0f us, p99 %.0f us" % (
            ok, wall, res["rate"], fail, res["p50_us"], res["p99_us"]))
    return 0 if ok > 0 else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("server")
    s.add_argument("port", type=int)
    s.add_argument("--bind", default="0.0.0.0")
    s.add_argument("--backlog", type=int, default=4096)
    c = sub.add_parser("client")
    c.add_argument("host")
    c.add_argument("port", type=int)
    c.add_argument("--seconds", type=float, default=3.0)
    c.add_argument("--timeout", type=float, default=2.0)
    c.add_argument("--bind", help="source address")
    c.add_argument("--json", action="store_true")
    a = ap.parse_args()
    return server(a) if a.cmd == "server" else client(a)


if __name__ == "__main__":
    sys.exit(main() or 0)
