//! Attacker and listener helpers: raw frames sent from inside a sandbox, frames counted by a
//! packet socket in another sandbox, neighbour tables read back.

#![allow(dead_code)]

use std::io::BufRead;
use std::process::{Child, Stdio};

use super::frames::hex;
use super::{weft_bin, Host};

/// A `weft tool sniff` running in a sandbox.
pub struct Sniffer {
    child: Child,
    output: std::thread::JoinHandle<String>,
    markers: Vec<String>,
}

impl Sniffer {
    /// Waits for the sniffer to finish and returns how many received frames contained each
    /// marker.
    pub fn counts(mut self) -> Vec<usize> {
        let _ = self.child.wait();
        let text = self.output.join().unwrap_or_default();
        self.markers
            .iter()
            .map(|m| {
                text.lines()
                    .find_map(|l| l.strip_prefix(&format!("{m}=")))
                    .unwrap_or_else(|| panic!("no count for {m} in {text:?}"))
                    .trim()
                    .parse()
                    .unwrap()
            })
            .collect()
    }
}

impl Host {
    /// Starts counting, for `secs` seconds, the frames `iface` of `sandbox` receives that
    /// contain each marker; returns once the socket listens.
    pub fn sniff(&self, sandbox: &str, iface: &str, markers: &[&[u8]], secs: u32) -> Sniffer {
        let markers: Vec<String> = markers.iter().map(|m| hex(m)).collect();
        let secs = secs.to_string();
        let mut args = vec![
            "exec",
            sandbox,
            "--",
            weft_bin(),
            "tool",
            "sniff",
            iface,
            "--timeout",
            &secs,
        ];
        for m in &markers {
            args.push("--marker");
            args.push(m);
        }
        let mut child = self
            .weft_cmd(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let out = child.stdout.take().unwrap();
        let mut reader = std::io::BufReader::new(out);
        reader.read_line(&mut line).unwrap();
        assert!(
            line.starts_with("listening"),
            "sniffer did not start: {line:?}"
        );
        // The rest of its output is read while the test goes on.
        let output = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut reader, &mut s);
            s
        });
        Sniffer {
            child,
            output,
            markers,
        }
    }

    /// Sends raw frames out of `iface` of `sandbox` (three times each: frames may meet a
    /// bridge port that is still learning).
    pub fn send_frames(&self, sandbox: &str, iface: &str, frames: &[Vec<u8>]) {
        let hexes: Vec<String> = frames.iter().map(|f| hex(f)).collect();
        let mut args = vec![
            "exec",
            sandbox,
            "--",
            weft_bin(),
            "tool",
            "frame",
            iface,
            "--count",
            "3",
        ];
        args.extend(hexes.iter().map(String::as_str));
        self.weft_ok(&args);
    }

    /// The MAC of a sandbox's interface on its `n`-th network.
    pub fn mac_of(&self, sandbox: &str, n: usize) -> String {
        self.json(&["inspect", sandbox])[0]["networks"][n]["mac"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The IPv6 address (without prefix) of a sandbox on its `n`-th network.
    pub fn ip6_of(&self, sandbox: &str, n: usize) -> String {
        let v = self.json(&["inspect", sandbox]);
        let cidr = v[0]["networks"][n]["ipv6"]
            .as_str()
            .unwrap_or_else(|| panic!("{sandbox} has no IPv6 on network {n}: {v}"))
            .to_string();
        cidr.split('/').next().unwrap().to_string()
    }

    /// `ip ARGS` inside a sandbox.
    pub fn ip_in(&self, sandbox: &str, args: &[&str]) -> String {
        let mut full = vec!["exec", sandbox, "--", "ip"];
        full.extend_from_slice(args);
        self.weft_ok(&full)
    }
}
