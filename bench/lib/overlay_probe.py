#!/usr/bin/env python3
"""The convergence prober of bench/overlay, run inside a sandbox's network namespace on the
host that must learn about new sandboxes (python3 stdlib only).

    overlay_probe.py IFNAME MY_IP MY_MAC

For each target address read from stdin (one per line), it sends an ARP request for it every
millisecond from a packet socket on IFNAME until an ARP reply comes, then an ICMP echo
request to the MAC in that reply every millisecond until an echo reply comes from the target,
and prints one line: `ok T_ARP T_ECHO` (CLOCK_MONOTONIC seconds, the clock every process on
the machine shares) or `timeout T_ARP|- T_LAST` after the timeout.

Why a packet socket and not ping: the kernel's own ARP resolution backs off (an unresolved
neighbour fails after 3 probes 1 s apart, and the next try waits for the next packet), so a
ping loop measures the neighbour state machine, not the overlay. Here nothing is cached:
the first ARP reply is the overlay's proxy on this host answering from the neighbour entry
the agent wrote (no entry: the request is dropped, it never crosses the tunnel); the first
echo reply is the new sandbox answering through the tunnel (the FDB entry here, the path
back there).
"""
import os
import select
import socket
import struct
import sys
import time

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
ETH_P_ALL = 0x0003
INTERVAL = 0.001


def mac_bytes(text):
    return bytes(int(x, 16) for x in text.split(":"))


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return (~s) & 0xFFFF


def arp_request(my_mac, my_ip, target):
    eth = b"\xff" * 6 + my_mac + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack("!HHBBH", 1, ETH_P_IP, 6, 4, 1) + my_mac + my_ip + b"\0" * 6 + target
    return eth + arp


def echo_request(my_mac, my_ip, dst_mac, target, ident, seq):
    payload = b"weft-overlay-bench"
    icmp = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + payload
    icmp = icmp[:2] + struct.pack("!H", csum(icmp)) + icmp[4:]
    total = 20 + len(icmp)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, seq & 0xFFFF, 0x4000, 64, 1, 0, my_ip, target)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return dst_mac + my_mac + struct.pack("!H", ETH_P_IP) + ip + icmp


def probe(sock, my_mac, my_ip, target_text, timeout, ident):
    target = socket.inet_aton(target_text)
    t_end = time.monotonic() + timeout
    dst_mac = None
    t_arp = None
    seq = 0
    next_send = 0.0
    while True:
        now = time.monotonic()
        if now >= t_end:
            return "timeout %s %.6f" % ("%.6f" % t_arp if t_arp else "-", now)
        if now >= next_send:
            if dst_mac is None:
                sock.send(arp_request(my_mac, my_ip, target))
            else:
                seq = (seq + 1) & 0xFFFF
                sock.send(echo_request(my_mac, my_ip, dst_mac, target, ident, seq))
            next_send = now + INTERVAL
        r, _, _ = select.select([sock], [], [], max(0.0, min(next_send, t_end) - time.monotonic()))
        while r:
            try:
                frame = sock.recv(2048)
            except BlockingIOError:
                break
            t = time.monotonic()
            if len(frame) < 42:
                continue
            etype = struct.unpack("!H", frame[12:14])[0]
            if etype == ETH_P_ARP and dst_mac is None:
                op = struct.unpack("!H", frame[20:22])[0]
                if op == 2 and frame[28:32] == target:
                    dst_mac = frame[22:28]
                    t_arp = t
                    next_send = 0.0
            elif etype == ETH_P_IP and dst_mac is not None:
                ihl = (frame[14] & 0x0F) * 4
                if frame[23] == 1 and frame[26:30] == target and len(frame) >= 14 + ihl + 8:
                    icmp = frame[14 + ihl:]
                    if icmp[0] == 0 and struct.unpack("!H", icmp[4:6])[0] == ident:
                        return "ok %.6f %.6f" % (t_arp, t)
        # loop: send the next request when due


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: overlay_probe.py IFNAME MY_IP MY_MAC")
    ifname, my_ip, my_mac = sys.argv[1], socket.inet_aton(sys.argv[2]), mac_bytes(sys.argv[3])
    timeout = float(os.environ.get("PROBE_TIMEOUT", "5"))
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((ifname, 0))
    sock.setblocking(False)
    ident = os.getpid() & 0xFFFF
    print("ready", flush=True)
    for line in sys.stdin:
        target = line.strip()
        if not target:
            continue
        # drop what queued up between probes
        while True:
            try:
                sock.recv(2048)
            except BlockingIOError:
                break
        print(probe(sock, my_mac, my_ip, target, timeout, ident), flush=True)


if __name__ == "__main__":
    main()
