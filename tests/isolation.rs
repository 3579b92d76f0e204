//! Sandboxes attacking each other and the host, from raw sockets: router advertisements,
//! redirects, spoofed sources (IPv4, IPv6, MAC), gratuitous ARP and unsolicited neighbour
//! advertisements claiming a peer, VLAN tags and stray ethertypes, routing through the
//! bridge's MAC past icc=false, and internal networks reaching published ports. Each test
//! checks what the victims saw (a packet socket) and what the kernel holds (routes,
//! addresses, neighbour tables), and that the sandboxes' own traffic still flows.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use common::frames::{self, mac};
use common::{weft_bin, Host, WithInternet};

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// The EUI-64 link-local address of a MAC.
fn link_local(m: [u8; 6]) -> Ipv6Addr {
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        m[0] ^ 2,
        m[1],
        m[2],
        0xff,
        0xfe,
        m[3],
        m[4],
        m[5],
    ])
}

/// A UDP datagram frame carrying `marker`.
fn udp4_frame(dst: [u8; 6], src: [u8; 6], from: Ipv4Addr, to: Ipv4Addr, marker: &[u8]) -> Vec<u8> {
    frames::eth(
        dst,
        src,
        0x0800,
        &frames::udp4(from, to, 4000, 4001, marker),
    )
}

fn udp6_frame(dst: [u8; 6], src: [u8; 6], from: Ipv6Addr, to: Ipv6Addr, marker: &[u8]) -> Vec<u8> {
    frames::eth(
        dst,
        src,
        0x86dd,
        &frames::udp6(from, to, 4000, 4001, marker),
    )
}

fn bridge_of(h: &Host, net: &str) -> String {
    h.json(&["network", "inspect", net])[0]["bridge"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Routes and addresses a router advertisement could have added, in `text`.
fn ra_traces(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.contains("proto ra") || l.contains("2001:db8:1:") || l.contains("ra_"))
        .map(String::from)
        .collect()
}

#[test]
fn hand_made_frames_have_valid_checksums() {
    let p = frames::ipv4(v4("10.0.0.1"), v4("10.0.0.2"), 17, b"");
    assert_eq!(frames::fold(frames::sum16(&p[..20])), 0);
}

#[test]
fn router_advertisements_from_a_sandbox_on_an_ipv4_network_change_nothing_on_the_host() {
    let h = Host::new("ra4");
    h.weft_ok(&["network", "create", "n", "--subnet", "10.131.0.0/24"]);
    h.sleeper("a", &["--network", "n"]);
    h.sleeper("b", &["--network", "n"]);
    let br = bridge_of(&h, "n");
    let amac = mac(&h.mac_of("a", 0));
    let ra = frames::router_advert(link_local(amac), amac, v6("2001:db8:1::"));
    let sniff = h.sniff("b", "eth0", &[&v6("2001:db8:1::").octets()], 2);
    h.send_frames("a", "eth0", &[ra]);
    std::thread::sleep(Duration::from_millis(500));
    let routes = h.ns.ip(&["-6", "route", "show", "table", "all"]);
    let addrs = h.ns.ip(&["-6", "addr", "show"]);
    assert_eq!(ra_traces(&routes), Vec::<String>::new(), "{routes}");
    assert_eq!(ra_traces(&addrs), Vec::<String>::new(), "{addrs}");
    assert_eq!(sniff.counts(), [0], "the RA crossed the bridge");
    // Defence in depth: the bridge itself ignores router advertisements and redirects.
    for key in ["accept_ra", "autoconf", "accept_redirects"] {
        let v = h.sh(&format!("cat /proc/sys/net/ipv6/conf/{br}/{key}"));
        assert_eq!(v.trim(), "0", "{key}");
    }
    for key in ["accept_redirects", "send_redirects"] {
        let v = h.sh(&format!("cat /proc/sys/net/ipv4/conf/{br}/{key}"));
        assert_eq!(v.trim(), "0", "{key}");
    }
}

#[test]
fn router_advertisements_between_sandboxes_of_an_ipv6_network_change_nothing() {
    let h = Host::new("ra6");
    h.weft_ok(&[
        "network",
        "create",
        "n6",
        "--ipv6",
        "--subnet",
        "10.132.0.0/24",
        "--subnet",
        "fd00:132::/64",
    ]);
    h.sleeper("a", &["--network", "n6"]);
    h.sleeper("b", &["--network", "n6"]);
    let amac = mac(&h.mac_of("a", 0));
    let ra = frames::router_advert(link_local(amac), amac, v6("2001:db8:1::"));
    // A router solicitation too: no sandbox asks for routers either.
    let rs = frames::eth(
        frames::mcast_mac(v6("ff02::2")),
        amac,
        0x86dd,
        &frames::icmp6(link_local(amac), v6("ff02::2"), 133, b"\0\0\0\0weft-rs"),
    );
    let sniff = h.sniff("b", "eth0", &[&v6("2001:db8:1::").octets(), b"weft-rs"], 2);
    h.send_frames("a", "eth0", &[ra, rs]);
    std::thread::sleep(Duration::from_millis(500));
    for (who, routes, addrs) in [
        (
            "b",
            h.ip_in("b", &["-6", "route", "show", "table", "all"]),
            h.ip_in("b", &["-6", "addr", "show"]),
        ),
        (
            "host",
            h.ns.ip(&["-6", "route", "show", "table", "all"]),
            h.ns.ip(&["-6", "addr", "show"]),
        ),
    ] {
        assert_eq!(ra_traces(&routes), Vec::<String>::new(), "{who}: {routes}");
        assert_eq!(ra_traces(&addrs), Vec::<String>::new(), "{who}: {addrs}");
    }
    assert_eq!(sniff.counts(), [0, 0]);
    // Defence in depth: sandboxes ignore router advertisements and redirects.
    for key in ["accept_ra", "accept_redirects"] {
        let v = h.weft_ok(&[
            "exec",
            "b",
            "--",
            "cat",
            &format!("/proc/sys/net/ipv6/conf/eth0/{key}"),
        ]);
        assert_eq!(v.trim(), "0", "{key}");
    }
    let v = h.weft_ok(&[
        "exec",
        "b",
        "--",
        "cat",
        "/proc/sys/net/ipv4/conf/all/accept_redirects",
    ]);
    assert_eq!(v.trim(), "0");
    // The network itself works.
    assert!(h.pings("a", &h.ip6_of("b", 0)));
}

#[test]
fn icmp_redirects_from_a_sandbox_do_not_reach_its_peers() {
    let h = Host::new("redir");
    h.weft_ok(&["network", "create", "n", "--subnet", "10.135.0.0/24"]);
    h.sleeper("a", &["--network", "n"]);
    h.sleeper("b", &["--network", "n"]);
    let (a, b) = (v4(&h.ip_of("a", 0)), v4(&h.ip_of("b", 0)));
    let (amac, bmac) = (mac(&h.mac_of("a", 0)), mac(&h.mac_of("b", 0)));
    let redirect = frames::eth(
        bmac,
        amac,
        0x0800,
        &frames::icmp_redirect(a, b, a, v4("198.51.100.99")),
    );
    let marker = frames::icmp_redirect(a, b, a, v4("198.51.100.99"))[20..28].to_vec();
    let sniff = h.sniff("b", "eth0", &[&marker], 2);
    h.send_frames("a", "eth0", &[redirect]);
    assert_eq!(sniff.counts(), [0]);
}

#[test]
fn internal_networks_do_not_reach_published_ports_of_other_networks() {
    let w = WithInternet::new("intp");
    let h = &w.host;
    h.weft_ok(&[
        "network",
        "create",
        "closed",
        "--internal",
        "--subnet",
        "10.136.0.0/24",
    ]);
    h.weft_ok(&["network", "create", "open", "--subnet", "10.137.0.0/24"]);
    let script = format!(
        "{} tool serve 0.0.0.0:80 --count 20 --timeout 60",
        weft_bin()
    );
    h.weft_ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "open",
        "-p",
        "8080:80",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    h.sleeper("i", &["--network", "closed"]);
    h.sleeper("o", &["--network", "open"]);
    // The server listens, and its port is published (from outside, and from another
    // sandbox of a network with a way out).
    let mut outside = None;
    for _ in 0..50 {
        outside = common::ok(&mut w.inet.cmd(
            weft_bin(),
            &["tool", "connect", "198.51.100.1:8080", "--timeout", "1"],
        ))
        .lines()
        .next()
        .map(String::from);
        if outside.is_some() {
            break;
        }
    }
    assert!(outside.is_some_and(|l| l.starts_with("peer=")));
    assert!(h.connect_from_sandbox("o", "198.51.100.1:8080").is_some());
    for addr in ["10.136.0.1:8080", "10.137.0.1:8080", "198.51.100.1:8080"] {
        assert_eq!(
            h.connect_from_sandbox("i", addr),
            None,
            "the internal network reached a published port through {addr}"
        );
    }
}

#[test]
fn icc_false_routing_through_the_bridge_mac_is_dropped_ipv4_and_ipv6() {
    let w = WithInternet::new("iccr");
    let h = &w.host;
    h.weft_ok(&[
        "network",
        "create",
        "q",
        "--opt",
        "icc=false",
        "--ipv6",
        "--subnet",
        "10.138.0.0/24",
        "--subnet",
        "fd00:138::/64",
    ]);
    let br = bridge_of(h, "q");
    let link = h.ns.ip(&["link", "show", &br]);
    let brmac = mac(link
        .split("link/ether ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap());
    let script = format!(
        "{} tool serve 0.0.0.0:80 --count 20 --timeout 60",
        weft_bin()
    );
    h.weft_ok(&[
        "run",
        "-d",
        "--name",
        "b",
        "--network",
        "q",
        "-p",
        "8081:80",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    h.sleeper("a", &["--network", "q"]);
    let (a4, b4) = (v4(&h.ip_of("a", 0)), v4(&h.ip_of("b", 0)));
    let (a6, b6) = (v6(&h.ip6_of("a", 0)), v6(&h.ip6_of("b", 0)));
    let (amac, bmac) = (mac(&h.mac_of("a", 0)), mac(&h.mac_of("b", 0)));
    // The host must know b (it answers its neighbour solicitations), as it would after any
    // traffic.
    assert!(h.pings("b", "10.138.0.1"));
    assert!(h.pings("b", "fd00:138::1"));
    let sniff = h.sniff(
        "b",
        "eth0",
        &[b"weft-routed4", b"weft-routed6", b"weft-bridged4"],
        3,
    );
    h.send_frames(
        "a",
        "eth0",
        &[
            // To the bridge's MAC: the host would route it back into the same bridge.
            udp4_frame(brmac, amac, a4, b4, b"weft-routed4"),
            udp6_frame(brmac, amac, a6, b6, b"weft-routed6"),
            // Straight to b: the isolated bridge port stops it.
            udp4_frame(bmac, amac, a4, b4, b"weft-bridged4"),
        ],
    );
    assert_eq!(sniff.counts(), [0, 0, 0]);
    // The gateway is still reachable, and b's published port from outside.
    assert!(h.pings("a", "10.138.0.1"));
    let got = common::ok(&mut w.inet.cmd(
        weft_bin(),
        &["tool", "connect", "198.51.100.1:8081", "--timeout", "2"],
    ));
    assert!(got.starts_with("peer="), "{got}");
}

#[test]
fn spoofed_sources_vlan_tags_and_stray_ethertypes_are_dropped_at_the_port() {
    let h = Host::new("spoof");
    h.weft_ok(&[
        "network",
        "create",
        "n",
        "--ipv6",
        "--subnet",
        "10.139.0.0/24",
        "--subnet",
        "fd00:139::/64",
    ]);
    for s in ["a", "b", "c"] {
        h.sleeper(s, &["--network", "n"]);
    }
    let (a4, b4, c4) = (
        v4(&h.ip_of("a", 0)),
        v4(&h.ip_of("b", 0)),
        v4(&h.ip_of("c", 0)),
    );
    let (a6, b6, c6) = (
        v6(&h.ip6_of("a", 0)),
        v6(&h.ip6_of("b", 0)),
        v6(&h.ip6_of("c", 0)),
    );
    let (amac, bmac, cmac) = (
        mac(&h.mac_of("a", 0)),
        mac(&h.mac_of("b", 0)),
        mac(&h.mac_of("c", 0)),
    );
    let markers: [&[u8]; 9] = [
        b"weft-own4",
        b"weft-own6",
        b"weft-ownll",
        b"weft-spoof-peer4",
        b"weft-spoof-any4",
        b"weft-spoof-mac",
        b"weft-spoof-peer6",
        b"weft-vlan",
        b"weft-ethertype",
    ];
    let sniff = h.sniff("b", "eth0", &markers, 3);
    h.send_frames(
        "a",
        "eth0",
        &[
            udp4_frame(bmac, amac, a4, b4, markers[0]),
            udp6_frame(bmac, amac, a6, b6, markers[1]),
            udp6_frame(bmac, amac, link_local(amac), link_local(bmac), markers[2]),
            udp4_frame(bmac, amac, c4, b4, markers[3]),
            udp4_frame(bmac, amac, v4("198.51.100.77"), b4, markers[4]),
            udp4_frame(bmac, cmac, a4, b4, markers[5]),
            udp6_frame(bmac, amac, c6, b6, markers[6]),
            frames::eth_vlan(
                bmac,
                amac,
                5,
                0x0800,
                &frames::udp4(a4, b4, 1, 2, markers[7]),
            ),
            frames::eth(bmac, amac, 0x88b5, markers[8]),
        ],
    );
    let counts = sniff.counts();
    assert!(
        counts[..3].iter().all(|c| *c > 0),
        "own traffic lost: {counts:?}"
    );
    assert_eq!(&counts[3..], [0; 6], "spoofed frames arrived: {counts:?}");
}

#[test]
fn gratuitous_arp_and_unsolicited_na_cannot_claim_a_peer() {
    let h = Host::new("claim");
    h.weft_ok(&[
        "network",
        "create",
        "n",
        "--ipv6",
        "--subnet",
        "10.140.0.0/24",
        "--subnet",
        "fd00:140::/64",
    ]);
    for s in ["a", "b", "c"] {
        h.sleeper(s, &["--network", "n"]);
    }
    let (c4, c6) = (h.ip_of("c", 0), h.ip6_of("c", 0));
    let (amac, cmac) = (h.mac_of("a", 0), h.mac_of("c", 0));
    let a6 = v6(&h.ip6_of("a", 0));
    let br = bridge_of(&h, "n");
    // b and the host know c.
    for target in [&c4, &c6] {
        assert!(h.pings("b", target));
        assert!(
            common::ok(&mut h.ns.cmd(weft_bin(), &["tool", "ping", target])).contains("answered")
        );
    }
    // Past the neighbour entries' lock time.
    std::thread::sleep(Duration::from_millis(1200));
    let am = mac(&amac);
    h.send_frames(
        "a",
        "eth0",
        &[
            frames::gratuitous_arp(am, am, v4(&c4)),
            frames::neighbour_advert(a6, am, v6(&c6), am),
            frames::neighbour_advert(link_local(am), am, v6(&c6), am),
        ],
    );
    std::thread::sleep(Duration::from_millis(300));
    for target in [&c4, &c6] {
        let seen = h.ip_in("b", &["neigh", "show", target]);
        assert!(
            seen.contains(&cmac) && !seen.contains(&amac),
            "b: {target}: {seen}"
        );
        let seen = h.ns.ip(&["neigh", "show", target, "dev", &br]);
        assert!(
            seen.contains(&cmac) && !seen.contains(&amac),
            "host: {target}: {seen}"
        );
    }
    // c is still reachable, and a's own announcements still work.
    assert!(h.pings("b", &c4));
    assert!(h.pings("b", &c6));
}

#[test]
fn own_traffic_flows_after_connect_and_across_disconnect() {
    let h = Host::new("guardc");
    h.weft_ok(&["network", "create", "n", "--subnet", "10.141.0.0/24"]);
    h.weft_ok(&[
        "network",
        "create",
        "m",
        "--ipv6",
        "--subnet",
        "10.142.0.0/24",
        "--subnet",
        "fd00:142::/64",
    ]);
    h.sleeper("a", &["--network", "n"]);
    h.sleeper("p", &["--network", "m"]);
    let a_n = h.ip_of("a", 0);
    h.weft_ok(&["network", "connect", "m", "a"]);
    let (a_m, p4, p6) = (h.ip_of("a", 1), h.ip_of("p", 0), h.ip6_of("p", 0));
    assert!(h.pings("a", &p4));
    assert!(h.pings("a", &p6));
    // On eth1 a may use eth1's addresses only.
    let (amac1, pmac) = (mac(&h.mac_of("a", 1)), mac(&h.mac_of("p", 0)));
    let sniff = h.sniff("p", "eth0", &[b"weft-eth1-own", b"weft-eth1-eth0addr"], 2);
    h.send_frames(
        "a",
        "eth1",
        &[
            udp4_frame(pmac, amac1, v4(&a_m), v4(&p4), b"weft-eth1-own"),
            udp4_frame(pmac, amac1, v4(&a_n), v4(&p4), b"weft-eth1-eth0addr"),
        ],
    );
    let counts = sniff.counts();
    assert!(counts[0] > 0 && counts[1] == 0, "{counts:?}");
    // Disconnecting eth0 takes its guard elements away and leaves eth1 working.
    h.weft_ok(&["network", "disconnect", "n", "a"]);
    let set = h.sh("nft list set bridge weft src4");
    assert!(!set.contains(&a_n), "{set}");
    assert!(set.contains(&a_m), "{set}");
    assert!(h.pings("a", &p4));
    h.weft_ok(&["rm", "-f", "a"]);
    let set = h.sh("nft list set bridge weft src4");
    assert!(!set.contains(&a_m), "{set}");
}

/// The IEEE 802.1D link-local group addresses a bridge does not forward by default (`:02`
/// slow protocols, `:03` 802.1X, `:0e` LLDP): it passes frames to them up through the port
/// device, where they used to reach the host's IP stack past the port guard.
const LINK_LOCAL_GROUPS: [[u8; 6]; 3] = [
    [0x01, 0x80, 0xc2, 0, 0, 0x02],
    [0x01, 0x80, 0xc2, 0, 0, 0x03],
    [0x01, 0x80, 0xc2, 0, 0, 0x0e],
];

/// An ICMP echo request carrying `marker` (the answer carries it back).
fn echo4(src: Ipv4Addr, dst: Ipv4Addr, marker: &[u8]) -> Vec<u8> {
    let mut m = vec![8, 0, 0, 0, 0x57, 0x46, 0, 1];
    m.extend_from_slice(marker);
    let c = frames::fold(frames::sum16(&m));
    m[2..4].copy_from_slice(&c.to_be_bytes());
    frames::ipv4(src, dst, 1, &m)
}

fn echo6(src: Ipv6Addr, dst: Ipv6Addr, marker: &[u8]) -> Vec<u8> {
    let mut body = vec![0x57, 0x46, 0, 1];
    body.extend_from_slice(marker);
    frames::icmp6(src, dst, 128, &body)
}

/// `weft tool serve ADDR --udp` in the host namespace: it answers every datagram to its
/// source with `peer=SOURCE`.
fn udp_server(h: &Host, addr: &str) -> std::process::Child {
    use std::io::BufRead;
    let mut child =
        h.ns.cmd(
            weft_bin(),
            &[
                "tool",
                "serve",
                addr,
                "--udp",
                "--count",
                "100",
                "--timeout",
                "60",
            ],
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("listening"), "{line:?}");
    child
}

fn bridge_mac(h: &Host, net: &str) -> [u8; 6] {
    let link = h.ns.ip(&["link", "show", &bridge_of(h, net)]);
    mac(link
        .split("link/ether ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap())
}

#[test]
fn link_local_group_frames_reach_neither_the_host_nor_other_networks() {
    let h = Host::new("llg");
    h.weft_ok(&[
        "network",
        "create",
        "closed",
        "--internal",
        "--ipv6",
        "--subnet",
        "10.161.0.0/24",
        "--subnet",
        "fd00:161::/64",
    ]);
    h.weft_ok(&[
        "network",
        "create",
        "open",
        "--ipv6",
        "--subnet",
        "10.162.0.0/24",
        "--subnet",
        "fd00:162::/64",
    ]);
    h.sleeper("i", &["--network", "closed"]);
    h.sleeper("o", &["--network", "open"]);
    let (i4, i6, imac) = (
        v4(&h.ip_of("i", 0)),
        v6(&h.ip6_of("i", 0)),
        mac(&h.mac_of("i", 0)),
    );
    let (o4, o6, omac) = (
        v4(&h.ip_of("o", 0)),
        v6(&h.ip6_of("o", 0)),
        mac(&h.mac_of("o", 0)),
    );
    let (gw4, gw6) = (v4("10.161.0.1"), v6("fd00:161::1"));
    let mut servers = [udp_server(&h, "0.0.0.0:5001"), udp_server(&h, "[::]:5002")];
    // Every frame is the same attack through one group address: from the internal sandbox,
    // to the host, with the source of a sandbox of another network, which would get the
    // answer (a UDP reply naming the source port, an echo reply carrying the marker).
    let mut attacks = Vec::new();
    let mut bounced: Vec<Vec<u8>> = Vec::new();
    for (k, group) in LINK_LOCAL_GROUPS.iter().enumerate() {
        let sport = 4100 + u16::try_from(k).unwrap();
        attacks.push(frames::eth(
            *group,
            imac,
            0x0800,
            &frames::udp4(o4, gw4, sport, 5001, b"weft-llg"),
        ));
        bounced.push(format!("peer={o4}:{sport}").into_bytes());
        attacks.push(frames::eth(
            *group,
            imac,
            0x86dd,
            &frames::udp6(o6, gw6, sport + 100, 5002, b"weft-llg"),
        ));
        bounced.push(format!("peer=[{o6}]:{}", sport + 100).into_bytes());
        let m4 = format!("weft-bounce4-{k}").into_bytes();
        attacks.push(frames::eth(*group, imac, 0x0800, &echo4(o4, gw4, &m4)));
        bounced.push(m4);
        let m6 = format!("weft-bounce6-{k}").into_bytes();
        attacks.push(frames::eth(*group, imac, 0x86dd, &echo6(o6, gw6, &m6)));
        bounced.push(m6);
    }
    let markers: Vec<&[u8]> = bounced.iter().map(Vec::as_slice).collect();
    // Controls: the same services answer a sandbox's own traffic to its gateway, and an
    // answer to o does reach o.
    let controls: [(&str, Vec<u8>); 2] = [
        ("i", format!("peer={i4}:4999").into_bytes()),
        ("o", format!("peer={o4}:4998").into_bytes()),
    ];
    let sniff_o = h.sniff("o", "eth0", &[&markers[..], &[&controls[1].1]].concat(), 3);
    let sniff_i = h.sniff("i", "eth0", &[&controls[0].1, b"weft-ctl6"], 3);
    h.send_frames("i", "eth0", &attacks);
    h.send_frames(
        "i",
        "eth0",
        &[
            frames::eth(
                bridge_mac(&h, "closed"),
                imac,
                0x0800,
                &frames::udp4(i4, gw4, 4999, 5001, b"weft-ctl"),
            ),
            frames::eth(
                bridge_mac(&h, "closed"),
                imac,
                0x86dd,
                &echo6(i6, gw6, b"weft-ctl6"),
            ),
        ],
    );
    h.send_frames(
        "o",
        "eth0",
        &[frames::eth(
            bridge_mac(&h, "open"),
            omac,
            0x0800,
            &frames::udp4(o4, v4("10.162.0.1"), 4998, 5001, b"weft-ctl"),
        )],
    );
    let (got_o, got_i) = (sniff_o.counts(), sniff_i.counts());
    for s in &mut servers {
        let _ = s.kill();
        let _ = s.wait();
    }
    assert!(got_i.iter().all(|c| *c > 0), "controls: {got_i:?}");
    assert!(*got_o.last().unwrap() > 0, "control: {got_o:?}");
    let through: Vec<String> = markers
        .iter()
        .zip(&got_o)
        .filter(|(_, c)| **c > 0)
        .map(|(m, _)| String::from_utf8_lossy(m).to_string())
        .collect();
    assert_eq!(
        through,
        Vec::<String>::new(),
        "reached the host: {through:?}"
    );
}

#[test]
fn router_advertisements_to_link_local_group_addresses_change_nothing_on_the_host() {
    let h = Host::new("llra");
    h.weft_ok(&["network", "create", "n", "--subnet", "10.163.0.0/24"]);
    h.sleeper("a", &["--network", "n"]);
    let amac = mac(&h.mac_of("a", 0));
    let ras: Vec<Vec<u8>> = LINK_LOCAL_GROUPS
        .iter()
        .map(|group| {
            let mut ra = frames::router_advert(v6("fe80::bad"), amac, v6("2001:db8:1::"));
            ra[..6].copy_from_slice(group);
            ra
        })
        .collect();
    h.send_frames("a", "eth0", &ras);
    std::thread::sleep(Duration::from_millis(500));
    let routes = h.ns.ip(&["-6", "route", "show", "table", "all"]);
    let addrs = h.ns.ip(&["-6", "addr", "show"]);
    assert_eq!(ra_traces(&routes), Vec::<String>::new(), "{routes}");
    assert!(!routes.contains("fe80::bad"), "{routes}");
    assert_eq!(ra_traces(&addrs), Vec::<String>::new(), "{addrs}");
    // Every weft port forwards those frames (to the port guard) instead of passing them up.
    let port = h.json(&["inspect", "a"])[0]["networks"][0]["host_interface"]
        .as_str()
        .unwrap()
        .to_string();
    let details = h.ns.ip(&["-d", "link", "show", &port]);
    assert!(details.contains("group_fwd_mask 0xfffd"), "{details}");
}

/// A neighbour solicitation from `src` (MAC `src_mac`) for `target`, to its solicited-node
/// group, with `options` after the message.
fn neighbour_solicit(src: Ipv6Addr, src_mac: [u8; 6], target: Ipv6Addr, options: &[u8]) -> Vec<u8> {
    let t = target.octets();
    let group = Ipv6Addr::from([
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(t[13]),
        u16::from_be_bytes([t[14], t[15]]),
    ]);
    let mut body = vec![0, 0, 0, 0];
    body.extend_from_slice(&t);
    body.extend_from_slice(options);
    frames::eth(
        frames::mcast_mac(group),
        src_mac,
        0x86dd,
        &frames::icmp6(src, group, 135, &body),
    )
}

#[test]
fn neighbour_solicitations_cannot_teach_another_mac_in_a_later_option() {
    let h = Host::new("nsopt");
    h.weft_ok(&[
        "network",
        "create",
        "n",
        "--ipv6",
        "--subnet",
        "10.164.0.0/24",
        "--subnet",
        "fd00:164::/64",
    ]);
    h.sleeper("a", &["--network", "n"]);
    h.sleeper("b", &["--network", "n"]);
    let (a6, b6) = (h.ip6_of("a", 0), h.ip6_of("b", 0));
    let amac = h.mac_of("a", 0);
    let br = bridge_of(&h, "n");
    // b and the host know a.
    assert!(h.pings("b", &a6));
    assert!(common::ok(&mut h.ns.cmd(weft_bin(), &["tool", "ping", &a6])).contains("answered"));
    std::thread::sleep(Duration::from_millis(1200));
    let evil = [0x02, 0x42, 0xde, 0xad, 0xbe, 0xef];
    // Two link-layer address options, the sandbox's own first (the kernel takes the first);
    // then a nonce option first and a link-layer address option of another MAC (the kernel
    // takes that one).
    let mut nonce_first = vec![14, 1, 1, 2, 3, 4, 5, 6, 1, 1];
    nonce_first.extend_from_slice(&evil);
    let mut own_then_evil = vec![1, 1];
    own_then_evil.extend_from_slice(&mac(&amac));
    own_then_evil.extend_from_slice(&[1, 1]);
    own_then_evil.extend_from_slice(&evil);
    let am = mac(&amac);
    let mut frames_out = Vec::new();
    for target in [v6("fd00:164::1"), v6(&b6)] {
        frames_out.push(neighbour_solicit(v6(&a6), am, target, &own_then_evil));
        frames_out.push(neighbour_solicit(v6(&a6), am, target, &nonce_first));
    }
    h.send_frames("a", "eth0", &frames_out);
    std::thread::sleep(Duration::from_millis(300));
    for (who, seen) in [
        ("b", h.ip_in("b", &["neigh", "show", &a6])),
        ("host", h.ns.ip(&["neigh", "show", &a6, "dev", &br])),
    ] {
        assert!(
            !seen.contains("02:42:de:ad:be:ef"),
            "{who} learnt another MAC for a: {seen}"
        );
    }
    // a's own neighbour discovery still works.
    assert!(h.pings("b", &a6));
    assert!(h.pings("a", &b6));
    assert!(h.pings("a", "fd00:164::1"));
}

#[test]
fn an_admins_own_wv_interface_is_not_policed_but_a_weft_port_without_elements_is() {
    let h = Host::new("admwv");
    h.weft_ok(&["network", "create", "n", "--subnet", "10.165.0.0/24"]);
    h.sleeper("s", &["--network", "n"]);
    // The admin's own bridge and veth, named like weft's ports.
    let peer = common::Netns::new("admp");
    h.ns.ip(&["link", "add", "adminbr", "type", "bridge"]);
    h.ns.ip(&["addr", "add", "192.0.2.1/24", "dev", "adminbr"]);
    h.ns.ip(&["link", "set", "adminbr", "up"]);
    h.ns.ip(&[
        "link", "add", "wvadmin", "type", "veth", "peer", "name", "eth0", "netns", &peer.name,
    ]);
    h.ns.ip(&["link", "set", "wvadmin", "master", "adminbr", "up"]);
    peer.ip(&["addr", "add", "192.0.2.2/24", "dev", "eth0"]);
    peer.ip(&["link", "set", "eth0", "up"]);
    let admin_pings = || {
        peer.tool(&["ping", "-c", "10", "192.0.2.1"])
            .status
            .success()
    };
    assert!(admin_pings(), "the admin's wvadmin lost its traffic");
    assert!(h.pings("s", "10.165.0.1"));
    // A weft port whose address elements are lost sends nothing (fail closed); the admin's
    // interface goes on.
    h.sh("nft flush set bridge weft src4");
    assert!(
        !h.pings("s", "10.165.0.1"),
        "a weft port without elements sent"
    );
    assert!(admin_pings());
    h.weft_ok(&["gc"]);
    assert!(h.pings("s", "10.165.0.1"));
    let ports = h.sh("nft list set bridge weft ports");
    assert!(!ports.contains("wvadmin"), "{ports}");
}
