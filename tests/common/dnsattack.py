# Hostile DNS clients for weft's tests (python3 standard library only):
#   from SRC SERVER PORT NAME        a UDP query sent from local address SRC; prints the rcode
#                                    of a reply within 1 s, or "none"
#   spoof SRC SPORT SERVER PORT NAME N
#                                    N UDP queries with a forged IPv4 source (raw socket,
#                                    IP_HDRINCL; needs CAP_NET_RAW); prints "sent"
#   listen ADDR PORT SECONDS         counts the datagrams received on ADDR:PORT
#   hog SERVER PORT N SECONDS        N TCP connections, each sending a 64 KiB length prefix
#                                    and then one byte a second; prints "open K", holds them
import socket, struct, sys, time

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

cmd, args = sys.argv[1], sys.argv[2:]
{"from": from_, "spoof": spoof, "listen": listen, "hog": hog}[cmd](*args)
