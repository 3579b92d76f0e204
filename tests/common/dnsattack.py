# Hostile DNS clients for weft's tests (python3 standard library only):
#   from SRC SERVER PORT NAME        a UDP query sent from local address SRC; prints the rcode
#                                    of a reply within 1 s, or "none"
#   spoof SRC SPORT SERVER PORT NAME N
#                                    N UDP queries with a forged IPv4 source (raw socket,
#                                    IP_HDRINCL; needs CAP_NET_RAW); prints "sent"
#   listen ADDR PORT SECONDS         counts the datagrams received on ADDR:PORT
#   mixed SERVER PORT NETNS NAME N   N datagrams sent back to back, interleaved, from this
#                                    namespace (a stranger) and from the namespace at NETNS:
#                                    valid queries for NAME among garbage, responses, FORMERR
#                                    material and oversize ones (kind = index % 8); prints every
#                                    reply received within 3 s as JSON [from, id, rcode, values]
#   hog SERVER PORT N SECONDS        N TCP connections, each sending a 64 KiB length prefix
#                                    and then one byte a second; prints "open K", holds them
import ctypes, json, os, random, select, socket, struct, sys, time

def query(qid, name):
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\0" + struct.pack(">HH", 1, 1)

def from_(src, server, port, name):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src, 0))
    s.settimeout(1.0)
    s.sendto(query(0x4242, name), (server, int(port)))
    try:
        msg, _ = s.recvfrom(65535)
        print(struct.unpack(">HH", msg[:4])[1] & 0xF)
    except (socket.timeout, ConnectionRefusedError):
        print("none")

def checksum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF

def spoof(src, sport, server, port, name, n):
    payload = query(0x5151, name)
    udp_len = 8 + len(payload)
    udp = struct.pack(">HHHH", int(sport), int(port), udp_len, 0) + payload
    total = 20 + udp_len
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, total, 0, 0, 64, 17, 0,
                     socket.inet_aton(src), socket.inet_aton(server))
    ip = ip[:10] + struct.pack(">H", checksum(ip)) + ip[12:]
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    for _ in range(int(n)):
        s.sendto(ip + udp, (server, 0))
        time.sleep(0.01)
    print("sent")

def listen(addr, port, seconds):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, int(port)))
    print("listening", flush=True)
    end = time.time() + float(seconds)
    n = 0
    while time.time() < end:
        s.settimeout(max(0.01, end - time.time()))
        try:
            s.recvfrom(65535)
            n += 1
        except socket.timeout:
            pass
    print(n)

def hog(server, port, n, seconds):
    conns = []
    for _ in range(int(n)):
        try:
            c = socket.create_connection((server, int(port)), timeout=1)
            c.sendall(b"\xff\xff")
            conns.append(c)
        except OSError:
            pass
    print("open", len(conns), flush=True)
    end = time.time() + float(seconds)
    while time.time() < end:
        for c in conns:
            try:
                c.send(b"\0")
            except OSError:
                pass
        time.sleep(1)

def values(msg):
    """The rcode and the A/AAAA values of a reply (answers start after one question)."""
    flags, qd, an = struct.unpack(">HHH", msg[2:8])
    off = 12
    for _ in range(qd):
        while msg[off] != 0:
            if msg[off] & 0xC0:
                off += 1
                break
            off += msg[off] + 1
        off += 5
    out = []
    for _ in range(an):
        off += 2 if msg[off] & 0xC0 else 0
        rtype, _, _, rdlen = struct.unpack(">HHIH", msg[off:off + 10])
        off += 10
        fam = socket.AF_INET if rtype == 1 else socket.AF_INET6
        out.append(socket.inet_ntop(fam, msg[off:off + rdlen]))
        off += rdlen
    return flags & 0xF, out

def mixed(server, port, netns, name, n):
    port, n = int(port), int(n)
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    fd = os.open(netns, os.O_RDONLY)
    if ctypes.CDLL(None, use_errno=True).setns(fd, 0x40000000) != 0:
        raise OSError(ctypes.get_errno(), "setns")
    sandbox = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for s in (sandbox, stranger):
        # Room for every reply until they are read (SO_RCVBUFFORCE: the test runs as root).
        s.setsockopt(socket.SOL_SOCKET, 33, 1 << 23)
    rnd = random.Random(11)
    for i in range(n):
        q = query(i, name)
        kind = i % 8
        s = sandbox
        if kind == 1:
            # AAAA with EDNS0.
            q = q[:-4] + struct.pack(">HH", 28, 1)
            q = q[:10] + b"\0\1" + q[12:] + b"\0" + struct.pack(">HHIH", 41, 1232, 0, 0)
        elif kind == 2:
            q = bytes(rnd.randrange(256) for _ in range(rnd.randrange(12)))
        elif kind == 3:
            q = q[:2] + b"\x81\x00" + q[4:]
        elif kind == 4:
            q = q[:12]
        elif kind == 5:
            q = q + bytes(6000)
        elif kind == 6:
            q = q[:-4] + struct.pack(">HH", 15, 1)
        elif kind == 7:
            s = stranger
        s.sendto(q, (server, port))
    got = []
    end = time.time() + 3
    names = {sandbox: "sandbox", stranger: "stranger"}
    while time.time() < end:
        ready, _, _ = select.select(list(names), [], [], 0.2)
        for s in ready:
            try:
                msg = s.recv(65535)
            except ConnectionRefusedError:
                continue
            rcode, vals = values(msg)
            got.append([names[s], struct.unpack(">H", msg[:2])[0], rcode, vals])
    print(json.dumps(got))

cmd, args = sys.argv[1], sys.argv[2:]
{"from": from_, "spoof": spoof, "listen": listen, "hog": hog, "mixed": mixed}[cmd](*args)
