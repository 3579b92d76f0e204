/* bench/lib/dns_responder.c - the trivial DNS responder of bench/dns.
 *
 * Answers every well-formed query for class IN on one UDP socket, one datagram at a time
 * (recvfrom, sendto): type A gets one A record (ANSWER_IP, TTL 0, so that no cache in front of
 * it may keep the answer), any other type an empty NOERROR answer. Anything else it can parse
 * a header of gets FORMERR; shorter datagrams are dropped. No EDNS, no TCP.
 *
 * It plays two parts in the benchmark: the upstream that weft and aardvark-dns forward
 * non-local names to, and the ceiling (dnsperf against this responder directly, on the same
 * bridge: what the client, the kernel and the path allow).
 *
 * Usage: dns_responder ADDRESS PORT [ANSWER_IP]   (runs until killed)
 * Build: gcc -O2 -o dns_responder dns_responder.c
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum { HDR = 12, MAXPKT = 4096 };

/* Length of the question's name in wire format (labels up to the root), or 0 when it runs
 * past the end of the datagram, uses compression (never in a question) or is too long. */
static size_t qname_len(const unsigned char *p, size_t n) {
    size_t off = 0;
    while (off < n) {
        unsigned l = p[off];
        if (l == 0)
            return off + 1 <= 255 ? off + 1 : 0;
        if (l & 0xc0)
            return 0;
        off += 1 + l;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s ADDRESS PORT [ANSWER_IP]\n", argv[0]);
        return 2;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET};
    long port = strtol(argv[2], NULL, 10);
    if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1 || port <= 0 || port > 65535) {
        fprintf(stderr, "bad address or port\n");
        return 2;
    }
    sa.sin_port = htons((uint16_t)port);
    struct in_addr answer;
    if (inet_pton(AF_INET, argc > 3 ? argv[3] : "198.51.100.7", &answer) != 1) {
        fprintf(stderr, "bad answer address\n");
        return 2;
    }
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    int one = 1, buf = 4 << 20;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) {
        perror("socket");
        return 1;
    }
    /* A deep receive queue, as a resolver would configure: dnsperf bursts. */
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        perror("bind");
        return 1;
    }
    printf("listening on %s:%ld\n", argv[1], port);
    fflush(stdout);

    unsigned char in[MAXPKT], out[MAXPKT + 16];
    for (;;) {
        struct sockaddr_storage from;
        socklen_t fl = sizeof from;
        ssize_t r = recvfrom(fd, in, sizeof in, 0, (struct sockaddr *)&from, &fl);
        if (r < HDR)
            continue;
        size_t n = (size_t)r;
        if (in[2] & 0x80) /* a response: never answer one */
            continue;
        unsigned qd = (unsigned)in[4] << 8 | in[5];
        size_t ql = qd == 1 ? qname_len(in + HDR, n - HDR) : 0;
        size_t len;
        memcpy(out, in, HDR);
        out[2] = (unsigned char)((in[2] & 0x79) | 0x80); /* QR, keep opcode and RD */
        out[3] = 0x80;                                    /* RA, NOERROR */
        memset(out + 6, 0, 6);                            /* AN, NS, AR counts */
        if (ql == 0 || HDR + ql + 4 > n || (in[2] & 0x78) != 0) {
            out[3] = 0x81; /* FORMERR (or NOTIMP-ish: any opcode but QUERY) */
            out[4] = out[5] = 0;
            len = HDR;
        } else {
            const unsigned char *q = in + HDR + ql;
            unsigned qtype = (unsigned)q[0] << 8 | q[1], qclass = (unsigned)q[2] << 8 | q[3];
            memcpy(out + HDR, in + HDR, ql + 4);
            len = HDR + ql + 4;
            if (qclass == 1 && qtype == 1) {
                static const unsigned char rr[] = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4};
                memcpy(out + len, rr, sizeof rr);
                memcpy(out + len + sizeof rr, &answer, 4);
                len += sizeof rr + 4;
                out[7] = 1;
            }
        }
        sendto(fd, out, len, 0, (struct sockaddr *)&from, fl);
    }
}
