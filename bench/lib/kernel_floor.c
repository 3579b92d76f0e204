// bench/attach's "kernel" tool: the kernel work of one attach and nothing else, one process per
// attach like weft and the peers. It is how bench/attach tells weft's own growth with N from the
// kernel's (see bench/README.md, "The kernel floor").
//
//   kernel_floor attach RUNDIR BRIDGE I ADDR/PREFIX GATEWAY
//     a network namespace bind-mounted on RUNDIR/ns/I (as weft, `ip netns` and the runtimes
//     keep one), a veth pair made on BRIDGE with its peer `eth0` inside (one queue each way,
//     MTU 1500, the peer's MAC given), IPv6 off on the host end, both ends and the sandbox's
//     loopback up, no IPv6 in the sandbox, ADDR on eth0 and a default route via GATEWAY: the kernel objects weft's
//     attach makes, in the same order, without weft's store, files and firewall.
//   kernel_floor detach RUNDIR I
//     the namespace unmounted and its file removed; the kernel deletes the veth pair with it.
//
// Prints `kernel-timings netns=US veth=US up=US sandbox=US total=US` on stderr. Plain
// rtnetlink, no library: it has to build with nothing but gcc and the C library.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what) {
  fprintf(stderr, "kernel_floor: %s: %s\n", what, strerror(errno));
  exit(1);
}

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

struct msg {
  struct nlmsghdr n;
  char body[2048];
};

static void *tail(struct msg *m) { return (char *)&m->n + NLMSG_ALIGN(m->n.nlmsg_len); }

static struct rtattr *attr(struct msg *m, int type, const void *data, size_t len) {
  struct rtattr *a = tail(m);
  if (NLMSG_ALIGN(m->n.nlmsg_len) + RTA_SPACE(len) > sizeof(*m)) {
    fprintf(stderr, "kernel_floor: message too long\n");
    exit(1);
  }
  a->rta_type = (unsigned short)type;
  a->rta_len = (unsigned short)RTA_LENGTH(len);
  if (len) memcpy(RTA_DATA(a), data, len);
  m->n.nlmsg_len = NLMSG_ALIGN(m->n.nlmsg_len) + RTA_ALIGN(a->rta_len);
  return a;
}

static struct rtattr *nest(struct msg *m, int type) { return attr(m, type | NLA_F_NESTED, NULL, 0); }
static void close_nest(struct msg *m, struct rtattr *a) {
  a->rta_len = (unsigned short)((char *)&m->n + m->n.nlmsg_len - (char *)a);
}

// Starts request `type` with its family header of `hdrlen` bytes (zeroed), which it returns.
static void *begin(struct msg *m, int type, int flags, size_t hdrlen) {
  memset(m, 0, sizeof(*m));
  m->n.nlmsg_len = NLMSG_LENGTH(hdrlen);
  m->n.nlmsg_type = (unsigned short)type;
  m->n.nlmsg_flags = (unsigned short)flags;
  return NLMSG_DATA(&m->n);
}

static void begin_link(struct msg *m, int type, int flags, int index, unsigned up) {
  struct ifinfomsg *i = begin(m, type, flags, sizeof(*i));
  i->ifi_family = AF_UNSPEC;
  i->ifi_index = index;
  i->ifi_flags = up;
  i->ifi_change = up;
}

static struct in_addr ipv4(const char *s) {
  struct in_addr in;
  if (inet_pton(AF_INET, s, &in) != 1) {
    errno = EINVAL;
    die(s);
  }
  return in;
}

static int open_rtnl(void) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) die("netlink socket");
  struct sockaddr_nl a = {.nl_family = AF_NETLINK};
  if (bind(fd, (struct sockaddr *)&a, sizeof(a))) die("netlink bind");
  return fd;
}

// Sends one request and waits for its acknowledgement.
static void talk(int fd, struct msg *m, const char *what) {
  static unsigned seq;
  m->n.nlmsg_seq = ++seq;
  m->n.nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
  if (send(fd, &m->n, m->n.nlmsg_len, 0) < 0) die(what);
  char buf[8192];
  for (;;) {
    ssize_t r = recv(fd, buf, sizeof(buf), 0);
    if (r < 0) die(what);
    int left = (int)r;
    for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_type != NLMSG_ERROR || h->nlmsg_seq != seq) continue;
      int e = ((struct nlmsgerr *)NLMSG_DATA(h))->error;
      if (e) {
        errno = -e;
        die(what);
      }
      return;
    }
  }
}

static void link_up(int fd, const char *name) {
  struct msg m;
  begin_link(&m, RTM_NEWLINK, 0, 0, IFF_UP);
  attr(&m, IFLA_IFNAME, name, strlen(name) + 1);
  talk(fd, &m, name);
}

static int attach(const char *dir, const char *bridge, int i, const char *cidr, const char *gw) {
  double t0 = now_us();
  char path[512], name[IFNAMSIZ];
  int host = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  if (host < 0) die("host namespace");
  int hfd = open_rtnl();
  unsigned br = if_nametoindex(bridge);
  if (!br) die(bridge);
  snprintf(path, sizeof(path), "%s/ns", dir);
  if (mkdir(path, 0700) && errno != EEXIST) die(path);
  snprintf(path, sizeof(path), "%s/ns/%d", dir, i);
  int f = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
  if (f < 0) die(path);
  close(f);
  if (unshare(CLONE_NEWNET)) die("unshare");
  // An IPv4 sandbox, as weft makes it: its interfaces get no IPv6.
  int d6 = open("/proc/sys/net/ipv6/conf/default/disable_ipv6", O_WRONLY | O_CLOEXEC);
  if (d6 >= 0) {
    if (write(d6, "1", 1) != 1) die("disable_ipv6");
    close(d6);
  }
  if (mount("/proc/self/ns/net", path, NULL, MS_BIND, NULL)) die("bind mount");
  int ns = open(path, O_RDONLY | O_CLOEXEC);
  if (ns < 0) die(path);
  int sfd = open_rtnl();  // a socket stays in the namespace it was made in
  if (setns(host, CLONE_NEWNET)) die("setns");
  double t1 = now_us();

  struct msg m;
  int one = 1, mtu = 1500;
  unsigned char mac[6] = {0x02, 0x42, 0x0a, 0xc8, (unsigned char)(i >> 8), (unsigned char)i};
  snprintf(name, sizeof(name), "wk%d", i);
  begin_link(&m, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, 0, 0);
  attr(&m, IFLA_IFNAME, name, strlen(name) + 1);
  attr(&m, IFLA_MTU, &mtu, sizeof(mtu));
  attr(&m, IFLA_MASTER, &br, sizeof(br));
  attr(&m, IFLA_NUM_TX_QUEUES, &one, sizeof(one));
  attr(&m, IFLA_NUM_RX_QUEUES, &one, sizeof(one));
  struct rtattr *info = nest(&m, IFLA_LINKINFO);
  attr(&m, IFLA_INFO_KIND, "veth", 4);
  struct rtattr *data = nest(&m, IFLA_INFO_DATA);
  struct rtattr *peer = nest(&m, VETH_INFO_PEER);
  struct ifinfomsg pi = {.ifi_family = AF_UNSPEC};
  memcpy(tail(&m), &pi, sizeof(pi));
  m.n.nlmsg_len += NLMSG_ALIGN(sizeof(pi));
  attr(&m, IFLA_IFNAME, "eth0", 5);
  attr(&m, IFLA_MTU, &mtu, sizeof(mtu));
  attr(&m, IFLA_ADDRESS, mac, sizeof(mac));
  attr(&m, IFLA_NET_NS_FD, &ns, sizeof(ns));
  attr(&m, IFLA_NUM_TX_QUEUES, &one, sizeof(one));
  attr(&m, IFLA_NUM_RX_QUEUES, &one, sizeof(one));
  close_nest(&m, peer);
  close_nest(&m, data);
  close_nest(&m, info);
  talk(hfd, &m, "veth");
  snprintf(path, sizeof(path), "/proc/sys/net/ipv6/conf/%s/disable_ipv6", name);
  int s = open(path, O_WRONLY | O_CLOEXEC);
  if (s >= 0) {
    if (write(s, "1", 1) != 1) die(path);
    close(s);
  }
  double t2 = now_us();
  link_up(hfd, name);
  double t3 = now_us();

  link_up(sfd, "lo");
  link_up(sfd, "eth0");
  char addr[64];
  snprintf(addr, sizeof(addr), "%s", cidr);
  char *slash = strchr(addr, '/');
  if (!slash) {
    errno = EINVAL;
    die(cidr);
  }
  *slash = 0;
  // The sandbox's interface index: asked inside it (if_nametoindex uses the caller's namespace).
  if (setns(ns, CLONE_NEWNET)) die("setns sandbox");
  unsigned eth0 = if_nametoindex("eth0");
  if (!eth0) die("eth0");
  if (setns(host, CLONE_NEWNET)) die("setns back");
  struct ifaddrmsg *a = begin(&m, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, sizeof(*a));
  a->ifa_family = AF_INET;
  a->ifa_prefixlen = (unsigned char)atoi(slash + 1);
  a->ifa_index = eth0;
  struct in_addr in = ipv4(addr);
  attr(&m, IFA_LOCAL, &in, 4);
  attr(&m, IFA_ADDRESS, &in, 4);
  talk(sfd, &m, "address");
  struct rtmsg *r = begin(&m, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, sizeof(*r));
  r->rtm_family = AF_INET;
  r->rtm_table = RT_TABLE_MAIN;
  r->rtm_protocol = RTPROT_BOOT;
  r->rtm_scope = RT_SCOPE_UNIVERSE;
  r->rtm_type = RTN_UNICAST;
  in = ipv4(gw);
  attr(&m, RTA_GATEWAY, &in, 4);
  attr(&m, RTA_OIF, &eth0, 4);
  talk(sfd, &m, "route");
  double t4 = now_us();
  fprintf(stderr, "kernel-timings netns=%.0f veth=%.0f up=%.0f sandbox=%.0f total=%.0f\n", t1 - t0,
          t2 - t1, t3 - t2, t4 - t3, t4 - t0);
  return 0;
}

static int detach(const char *dir, int i) {
  double t0 = now_us();
  char path[512];
  // The veth pair goes with the namespace (the kernel's cleanup, after the last reference):
  // what weft's `rm` does too.
  snprintf(path, sizeof(path), "%s/ns/%d", dir, i);
  if (umount2(path, MNT_DETACH)) die(path);
  if (unlink(path)) die(path);
  double t1 = now_us();
  fprintf(stderr, "kernel-timings netns=%.0f total=%.0f\n", t1 - t0, t1 - t0);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 7 && !strcmp(argv[1], "attach")) return attach(argv[2], argv[3], atoi(argv[4]), argv[5], argv[6]);
  if (argc == 4 && !strcmp(argv[1], "detach")) return detach(argv[2], atoi(argv[3]));
  fprintf(stderr,
          "usage: kernel_floor attach RUNDIR BRIDGE I ADDR/PREFIX GATEWAY | detach RUNDIR I\n");
  return 2;
}
