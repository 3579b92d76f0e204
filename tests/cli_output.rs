//! What the commands print, as a Docker user's reflexes expect it: `--format json` on every
//! command with its documented shape, `--format table` refused where the output is no table,
//! `-q` and `--filter` on `ps` and `network ls`, Docker's PORTS/CREATED/STATUS columns, the
//! `network inspect` text, a reader closing the pipe, `network prune`'s question, Docker's
//! network option names, and `--help`. Each test runs in namespaces it makes itself.

mod common;

use std::io::Write as _;
use std::process::{Output, Stdio};
use std::time::Duration;

use common::{Host, WithInternet};
use serde_json::json;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// `weft ARGS` with `input` on stdin.
fn with_stdin(h: &Host, args: &[&str], input: &str) -> Output {
    let mut child = h
        .weft_cmd(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A closed stdin right away is EOF; otherwise the answer, then EOF.
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(input.as_bytes());
    }
    child.wait_with_output().unwrap()
}

fn names(v: &serde_json::Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

/// Waits until a sandbox's command has exited.
fn wait_exited(h: &Host, name: &str) {
    for _ in 0..200 {
        if h.json(&["inspect", name])[0]["status"] == "exited" {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{name} never exited");
}

#[test]
fn every_command_prints_its_documented_json() {
    let h = Host::new("oj");
    h.weft_ok(&["network", "create", "one", "--subnet", "10.181.0.0/24"]);
    h.weft_ok(&["network", "create", "two", "--subnet", "10.182.0.0/24"]);
    h.sleeper("a", &["--network", "one"]);

    let c = h.json(&["network", "connect", "two", "a", "--alias", "web"]);
    let host_if = c["host_interface"].as_str().unwrap().to_string();
    assert_eq!(
        c,
        json!({
            "sandbox": "a",
            "network": "two",
            "interface": "eth1",
            "host_interface": host_if,
            "ipv4": "10.182.0.2/24",
            "ipv6": null,
            "mac": "02:42:0a:b6:00:02",
            "aliases": ["web"],
        })
    );
    // The element of `inspect`'s networks is the same document without `sandbox`.
    let mut same = c.clone();
    same.as_object_mut().unwrap().remove("sandbox");
    assert_eq!(h.json(&["inspect", "a"])[0]["networks"][1], same);
    // As `docker inspect`: a name that is no sandbox's but a network's shows the network.
    let both = h.json(&["inspect", "a", "one"]);
    assert_eq!(both[0]["name"], "a");
    assert_eq!(both[1], h.json(&["network", "inspect", "one"])[0]);
    let err = h.weft_err(1, &["inspect", "nosuch"]);
    assert!(
        err.starts_with("error: no such sandbox \"nosuch\""),
        "{err}"
    );

    assert_eq!(
        h.json(&["network", "disconnect", "-f", "two", "a"]),
        json!({"network": "two", "sandbox": "a"})
    );
    assert_eq!(
        h.json(&["stop", "-t", "1", "a"]),
        json!({"stopped": ["a"], "errors": []})
    );
    assert_eq!(
        h.json(&["start", "a"]),
        json!({"started": ["a"], "errors": []})
    );
    assert_eq!(
        h.json(&["restart", "-t", "0", "a"]),
        json!({"restarted": ["a"], "errors": []})
    );
    assert_eq!(h.json(&["inspect", "a"])[0]["status"], "running");
    h.weft_ok(&["stop", "-t", "0", "a"]);
    assert_eq!(
        h.json(&["rm", "a"]),
        json!({"removed": ["a"], "errors": []})
    );
    assert_eq!(
        h.json(&["network", "rm", "two"]),
        json!({"removed": ["two"], "errors": []})
    );
    assert_eq!(
        h.json(&["network", "prune", "-f"]),
        json!({"removed": ["one"], "errors": []})
    );
    assert_eq!(
        h.json(&["ipam", "avoid", "add", "10.99.1.0/24"]),
        json!({"cidr": "10.99.1.0/24", "source": "weft ipam avoid"})
    );
    assert_eq!(
        h.json(&["ipam", "avoid", "ls"]),
        json!([{"cidr": "10.99.1.0/24", "source": "weft ipam avoid"}])
    );
    assert_eq!(
        h.json(&["ipam", "avoid", "rm", "10.99.1.0/24"]),
        json!({"cidr": "10.99.1.0/24", "source": "weft ipam avoid"})
    );

    // One sandbox (`create`, `run -d`) and one network (`network create`), with the
    // documented fields.
    let v = h.json(&["network", "create", "three", "--subnet", "10.183.0.0/24"]);
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort();
    assert_eq!(
        k,
        [
            "allocation",
            "aux_addresses",
            "bridge",
            "created",
            "driver",
            "endpoints",
            "id",
            "internal",
            "ipv6",
            "labels",
            "mtu",
            "name",
            "options",
            "status",
            "subnets"
        ],
        "{v}"
    );
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    let sandbox_keys = [
        "command",
        "created",
        "exit_code",
        "finished",
        "hostname",
        "id",
        "labels",
        "mode",
        "name",
        "netns",
        "networks",
        "pid",
        "ports",
        "restart_count",
        "restart_policy",
        "started",
        "status",
    ];
    let v = h.json(&["create", "--name", "j1", "--network", "three"]);
    assert_eq!(keys(&v), sandbox_keys, "{v}");
    assert_eq!(
        (v["name"].as_str(), v["status"].as_str()),
        (Some("j1"), Some("created"))
    );
    let v = h.json(&[
        "run",
        "-d",
        "--name",
        "j2",
        "--network",
        "three",
        "sleep",
        "600",
    ]);
    assert_eq!(keys(&v), sandbox_keys, "{v}");
    assert_eq!(
        (v["name"].as_str(), v["status"].as_str()),
        (Some("j2"), Some("running"))
    );
    h.weft_ok(&["rm", "-f", "j1", "j2"]);
    h.weft_ok(&["network", "rm", "three"]);
    assert_eq!(h.json(&["daemon", "stop"]), json!({"stopped": false}));

    // Partial failures: every name is tried, the JSON names the failures, exit code 1.
    h.weft_ok(&["create", "--name", "b"]);
    let out = h.weft(&["--format", "json", "rm", "nosuch", "b"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["removed"], json!(["b"]));
    assert_eq!(v["errors"].as_array().unwrap().len(), 1);
    assert!(
        v["errors"][0].as_str().unwrap().contains("\"nosuch\""),
        "{v}"
    );
    // start and restart go on through every name too, as Docker's do.
    h.weft_ok(&["create", "--name", "c", "--", "sleep", "600"]);
    h.weft_ok(&["create", "--name", "idle"]);
    for (cmd, done) in [("start", "started"), ("restart", "restarted")] {
        let out = h.weft(&["--format", "json", cmd, "nosuch", "c", "idle"]);
        assert_eq!(out.status.code(), Some(1), "{cmd}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v[done], json!(["c"]), "{v}");
        // The names done first, as in `stop`'s document.
        assert!(
            stdout(&out).starts_with(&format!("{{\n  \"{done}\"")),
            "{v}"
        );
        let errors = v["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 2, "{v}");
        assert!(errors[0].as_str().unwrap().contains("\"nosuch\""), "{v}");
        assert!(errors[1].as_str().unwrap().contains("no command"), "{v}");
        assert_eq!(h.json(&["inspect", "c"])[0]["status"], "running");
        let out = h.weft(&[cmd, "c", "nosuch"]);
        assert_eq!(out.status.code(), Some(1), "{cmd}");
        assert_eq!(stdout(&out), "c\n", "{cmd}");
        assert!(stderr(&out).contains("no such sandbox \"nosuch\""), "{cmd}");
    }
    h.weft_ok(&["rm", "-f", "c"]);
    let out = h.weft(&["--format", "json", "stop", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["stopped"], json!([]));
    h.weft_ok(&["network", "create", "x"]);
    let out = h.weft(&["network", "rm", "nosuch", "x"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "x\n");
    assert!(
        stderr(&out).contains("no such network \"nosuch\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_format_a_command_cannot_print_is_a_usage_error_before_anything_is_done() {
    let h = Host::new("of");
    h.weft_ok(&["network", "create", "keep"]);
    let err = h.weft_err(2, &["--format", "table", "network", "rm", "keep"]);
    assert_eq!(
        err,
        "error: `weft network rm` prints text or JSON, not a table: --format table is not supported; use --format json, or leave --format out\n"
    );
    // Nothing was removed.
    assert_eq!(names(&h.json(&["network", "ls"])), vec!["keep"]);
    let err = h.weft_err(2, &["inspect", "--format", "table", "x"]);
    assert_eq!(
        err,
        "error: `weft inspect` prints JSON only: --format table is not supported; use --format json, or leave --format out\n"
    );
    let err = h.weft_err(2, &["--format", "json", "demo"]);
    assert_eq!(
        err,
        "error: `weft demo` prints text only: --format json is not supported; leave --format out\n"
    );
    let err = h.weft_err(2, &["--format", "yaml", "ps"]);
    assert!(
        err.contains("invalid value 'yaml' for '--format <FORMAT>'"),
        "{err}"
    );
    // Tables where they fit.
    assert_eq!(
        h.weft_ok(&["--format", "table", "ipam", "avoid", "ls"]),
        "CIDR   SOURCE\n"
    );
    assert!(h
        .weft_ok(&["network", "ls", "--format", "table"])
        .starts_with("NETWORK ID"));
}

#[test]
fn ps_quiet_and_filters_as_docker() {
    let h = Host::new("opf");
    h.weft_ok(&["network", "create", "front", "--subnet", "10.183.0.0/24"]);
    h.weft_ok(&["network", "create", "back", "--subnet", "10.184.0.0/24"]);
    h.sleeper(
        "web-1",
        &[
            "--network",
            "front",
            "--label",
            "url=a=b",
            "--label",
            "tier=web",
        ],
    );
    h.sleeper("web-2", &["--network", "back", "--label", "tier=web"]);
    h.weft_ok(&[
        "create",
        "--name",
        "db",
        "--network",
        "back",
        "--label",
        "tier=db",
    ]);
    h.weft_ok(&[
        "run",
        "-d",
        "--name",
        "gone",
        "--network",
        "back",
        "--",
        "sh",
        "-c",
        "exit 7",
    ]);
    wait_exited(&h, "gone");

    let id = |n: &str| h.json(&["inspect", n])[0]["id"].as_str().unwrap()[..12].to_string();
    let ps = |args: &[&str]| {
        let mut full = vec!["ps"];
        full.extend_from_slice(args);
        names(&h.json(&full))
    };
    // -q: short ids, one per line, in the listing's order (by name).
    assert_eq!(
        h.weft_ok(&["ps", "-q"]),
        format!("{}\n{}\n", id("web-1"), id("web-2"))
    );
    let full = h.weft_ok(&["ps", "-q", "--no-trunc", "-f", "name=web-1"]);
    assert_eq!(full.trim().len(), 64);
    // name= is a part of the name; the same key twice is either, other keys both.
    assert_eq!(ps(&["-a", "-f", "name=web"]), vec!["web-1", "web-2"]);
    assert_eq!(
        ps(&["-a", "--filter", "name=eb-2", "--filter", "name=db"]),
        vec!["db", "web-2"]
    );
    assert_eq!(
        ps(&["-a", "-f", "network=back", "-f", "label=tier=web"]),
        vec!["web-2"]
    );
    assert_eq!(
        ps(&["-a", "-f", "label=tier"]),
        vec!["db", "web-1", "web-2"]
    );
    // A label's value may hold `=`.
    assert_eq!(ps(&["-f", "label=url=a=b"]), vec!["web-1"]);
    assert!(ps(&["-f", "label=url=a"]).is_empty());
    // A status filter lists sandboxes that are not running, without -a (as Docker).
    assert_eq!(ps(&["-f", "status=exited"]), vec!["gone"]);
    assert_eq!(ps(&["-f", "status=created"]), vec!["db"]);
    assert_eq!(
        ps(&["-f", "status=created", "-f", "status=exited"]),
        vec!["db", "gone"]
    );
    assert_eq!(ps(&[]), vec!["web-1", "web-2"]);
    // Docker's exited=CODE: exited sandboxes by exit code, without -a too.
    assert_eq!(ps(&["-f", "exited=7"]), vec!["gone"]);
    assert!(ps(&["-f", "exited=0"]).is_empty());
    assert_eq!(
        h.weft_ok(&["ps", "-q", "-f", "exited=7"]),
        format!("{}\n", id("gone"))
    );
    let err = h.weft_err(2, &["ps", "-f", "exited=seven"]);
    assert!(
        err.contains("invalid filter 'exited=seven': expected an exit code"),
        "{err}"
    );
    let web1 = id("web-1");
    assert_eq!(ps(&["-a", "-f", &format!("id={}", &web1[..6])]).len(), 1);
    // Unicode matches nothing here (names are ASCII), and is no error.
    assert!(ps(&["-a", "-f", "name=wéb"]).is_empty());
    assert_eq!(
        h.weft_ok(&["ps", "-a", "-f", "name=wéb"]),
        "SANDBOX ID   COMMAND   CREATED   STATUS   PORTS   NETWORKS   NAMES\n"
    );

    // Bad filters are usage errors naming what is wrong and what is valid.
    let err = h.weft_err(2, &["ps", "-f", "colour=red"]);
    assert!(
        err.contains(
            "invalid filter 'colour': valid filters are exited, id, label, name, network, status"
        ),
        "{err}"
    );
    let err = h.weft_err(2, &["ps", "--filter", "name"]);
    assert!(
        err.contains("bad format of filter \"name\" (expected name=value)"),
        "{err}"
    );
    let err = h.weft_err(2, &["ps", "-f", "name="]);
    assert!(
        err.contains("invalid filter 'name=': the value is empty"),
        "{err}"
    );
    let err = h.weft_err(2, &["ps", "-f", "label==x"]);
    assert!(err.contains("the value is empty"), "{err}");
    let err = h.weft_err(2, &["ps", "-f", "status=up"]);
    assert!(
        err.contains("invalid filter 'status=up': valid statuses are created, creating, dead, exited, paused, removing, restarting, running"),
        "{err}"
    );
}

#[test]
fn network_ls_quiet_and_filters() {
    let h = Host::new("onf");
    h.weft_ok(&[
        "network",
        "create",
        "alpha",
        "--subnet",
        "10.185.0.0/24",
        "--label",
        "team=blue",
    ]);
    h.weft_ok(&[
        "network",
        "create",
        "beta",
        "--subnet",
        "10.186.0.0/24",
        "--label",
        "team=red",
    ]);
    let ls = |args: &[&str]| {
        let mut full = vec!["network", "ls"];
        full.extend_from_slice(args);
        names(&h.json(&full))
    };
    let id = |n: &str| {
        h.json(&["network", "inspect", n])[0]["id"]
            .as_str()
            .unwrap()[..12]
            .to_string()
    };
    assert_eq!(
        h.weft_ok(&["network", "ls", "-q"]),
        format!("{}\n{}\n", id("alpha"), id("beta"))
    );
    assert_eq!(
        h.weft_ok(&["network", "ls", "--quiet", "-f", "label=team=red"]),
        format!("{}\n", id("beta"))
    );
    assert_eq!(ls(&["-f", "name=ph"]), vec!["alpha"]);
    assert_eq!(
        ls(&["-f", "name=alpha", "-f", "name=beta"]),
        vec!["alpha", "beta"]
    );
    assert_eq!(
        ls(&["-f", "driver=bridge", "-f", "label=team=blue"]),
        vec!["alpha"]
    );
    assert!(ls(&["-f", "driver=macvlan"]).is_empty());
    assert!(ls(&["-f", "label=team=blue=x"]).is_empty());
    let err = h.weft_err(2, &["network", "ls", "-f", "status=running"]);
    assert!(
        err.contains("invalid filter 'status': valid filters are driver, id, label, name"),
        "{err}"
    );
}

#[test]
fn ps_shows_ports_created_and_status_as_docker() {
    let h = Host::new("opc");
    h.weft_ok(&["network", "create", "n", "--subnet", "10.187.0.0/24"]);
    h.sleeper(
        "up",
        &[
            "--network",
            "n",
            "-p",
            "8080:80",
            "-p",
            "127.0.0.1:9000-9001:9000-9001/udp",
        ],
    );
    h.weft_ok(&["create", "--name", "new", "--network", "n"]);
    h.weft_ok(&[
        "run",
        "-d",
        "--name",
        "done",
        "--network",
        "n",
        "--",
        "sh",
        "-c",
        "exit 7",
    ]);
    wait_exited(&h, "done");
    let text = h.weft_ok(&["ps", "-a"]);
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap()
        .split("   ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(
        header,
        vec![
            "SANDBOX ID",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NETWORKS",
            "NAMES"
        ]
    );
    // A row's cell under a header column (the table is aligned, the text ASCII).
    let cols = [
        "SANDBOX ID",
        "COMMAND",
        "CREATED",
        "STATUS",
        "PORTS",
        "NETWORKS",
        "NAMES",
    ];
    let cell = |table: &str, row: &str, col: &str| -> String {
        let header_line = table.lines().next().unwrap();
        let i = cols.iter().position(|c| *c == col).unwrap();
        let from = header_line.find(col).unwrap();
        let to = cols
            .get(i + 1)
            .map(|n| header_line.find(n).unwrap())
            .unwrap_or(row.len());
        row.get(from..to.min(row.len()))
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let row = |text: &str, name: &str| {
        text.lines()
            .find(|l| l.ends_with(&format!(" {name}")))
            .unwrap_or_else(|| panic!("no row for {name}: {text}"))
            .to_string()
    };
    let secs = |s: &str| {
        s == "Less than a second"
            || s == "1 second"
            || s.strip_suffix(" seconds")
                .is_some_and(|n| n.parse::<u32>().is_ok())
    };
    let up = row(&text, "up");
    assert_eq!(
        cell(&text, &up, "PORTS"),
        "0.0.0.0:8080->80/tcp, 127.0.0.1:9000-9001->9000-9001/udp"
    );
    assert_eq!(cell(&text, &up, "COMMAND"), "\"sleep 600\"");
    assert_eq!(cell(&text, &up, "NETWORKS"), "n:10.187.0.2");
    assert_eq!(cell(&text, &up, "SANDBOX ID").len(), 12);
    let created = cell(&text, &up, "CREATED");
    assert!(secs(created.strip_suffix(" ago").unwrap()), "{up}");
    let status = cell(&text, &up, "STATUS");
    assert!(secs(status.strip_prefix("Up ").unwrap()), "{up}");
    let new = row(&text, "new");
    assert_eq!(cell(&text, &new, "STATUS"), "Created");
    let done = row(&text, "done");
    let status = cell(&text, &done, "STATUS");
    let ago = status
        .strip_prefix("Exited (7) ")
        .and_then(|s| s.strip_suffix(" ago"))
        .unwrap_or_else(|| panic!("{done}"));
    assert!(secs(ago), "{done}");
    // Not running: no PORTS, as Docker.
    h.weft_ok(&[
        "create",
        "--name",
        "idle",
        "--network",
        "n",
        "-p",
        "8082:80",
    ]);
    let text = h.weft_ok(&["ps", "-a", "-f", "name=idle"]);
    assert_eq!(cell(&text, &row(&text, "idle"), "PORTS"), "");
    assert!(!text.contains("8082"), "{text}");
    // The JSON has the times behind the columns.
    let v = h.json(&["inspect", "done"])[0].clone();
    let (created, started, finished) = (
        v["created"].as_u64().unwrap(),
        v["started"].as_u64().unwrap(),
        v["finished"].as_u64().unwrap(),
    );
    assert!(created <= started && started <= finished, "{v}");
    assert_eq!(h.json(&["inspect", "new"])[0]["started"], json!(null));
}

/// The cells of the line of `text` whose first cell is `first`.
fn cells<'a>(text: &'a str, first: &str) -> Vec<&'a str> {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|c| c.first() == Some(&first))
        .unwrap_or_else(|| panic!("no line starting with {first:?} in:\n{text}"))
}

#[test]
fn network_inspect_text_shows_everything_and_the_skipped_candidates() {
    let h = Host::new("oni");
    h.config("default_address_pools = [{ base = \"10.188.0.0/16\", size = 24 }]\n");
    h.weft_ok(&["ipam", "avoid", "add", "10.188.0.0/24"]);
    h.weft_ok(&[
        "network",
        "create",
        "auto",
        "--label",
        "team=blue",
        "--opt",
        "icc=false",
    ]);
    let text = h.weft_ok(&["network", "inspect", "auto"]);
    for want in [
        "  Driver:      bridge\n",
        "  MTU:         1500\n",
        "  Internal:    false\n",
        "  IPv6:        false\n",
        "  Options:     icc=false\n",
        "  Labels:      team=blue\n",
        "  Aux:         -\n",
        "  Chosen automatically from pool 10.188.0.0/16; skipped 1:\n",
        "  Sandboxes:   -\n",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert_eq!(
        cells(&text, "Created:")[1].len(),
        "2026-12-03T00:35:12Z".len()
    );
    assert!(text.contains(" ago)\n"), "{text}");
    assert_eq!(
        cells(&text, "10.188.1.0/24"),
        vec!["10.188.1.0/24", "10.188.1.1", "-"]
    );
    // The skipped candidates: a short table, subnet and reason.
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["SUBNET", "REASON"]),
        "{text}"
    );
    let skipped = cells(&text, "10.188.0.0/24");
    assert!(skipped.len() > 1, "{text}");
    assert!(skipped[1..].join(" ").contains("weft ipam avoid"), "{text}");

    h.weft_ok(&[
        "network",
        "create",
        "six",
        "--subnet",
        "10.189.0.0/24",
        "--ipv6",
        "--subnet",
        "fd00:189::/64",
        "--aux-address",
        "router=10.189.0.254",
        "--ip-range",
        "10.189.0.128/25",
    ]);
    h.sleeper("s", &["--network", "six"]);
    let text = h.weft_ok(&["network", "inspect", "six"]);
    for want in [
        "  IPv6:        true\n",
        "  Aux:         router=10.189.0.254\n",
        "  Sandboxes:\n",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert_eq!(
        cells(&text, "10.189.0.0/24"),
        vec!["10.189.0.0/24", "10.189.0.1", "10.189.0.128/25"]
    );
    assert_eq!(
        cells(&text, "fd00:189::/64"),
        vec!["fd00:189::/64", "fd00:189::1", "-"]
    );
    assert_eq!(
        cells(&text, "NAME"),
        vec!["NAME", "INTERFACE", "IPV4", "IPV6", "MAC"]
    );
    let s = cells(&text, "s");
    assert_eq!(s[1], "eth0");
    assert!(
        s[2].starts_with("10.189.0.1") && s[2].ends_with("/24"),
        "{text}"
    );
    assert!(s[3].starts_with("fd00:189::"), "{text}");
    assert!(!text.contains("Chosen automatically"), "{text}");
}

/// `weft ARGS` writing into a pipe nobody reads any more.
fn into_closed_pipe(h: &Host, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut cmd = h.weft_cmd(args);
    cmd.stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    // The parent's copy of the write end went into `cmd`; drop it so only weft holds one.
    drop(cmd);
    child.wait_with_output().unwrap()
}

#[test]
fn a_reader_that_goes_away_ends_every_listing_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let h = Host::new("opp");
    h.weft_ok(&["network", "create", "n", "--subnet", "10.190.0.0/24"]);
    h.weft_ok(&["ipam", "avoid", "add", "10.99.0.0/16"]);
    h.sleeper("s", &["--network", "n", "-p", "8081:80"]);
    for args in [
        vec!["ps"],
        vec!["ps", "-a", "--format", "json"],
        vec!["ps", "-q"],
        vec!["network", "ls"],
        vec!["network", "ls", "--format", "json"],
        vec!["network", "inspect", "n"],
        vec!["network", "inspect", "n", "--format", "json"],
        vec!["inspect", "s"],
        vec!["port", "s"],
        vec!["ipam", "avoid", "ls"],
        vec!["gc"],
        vec!["--help"],
        vec!["network", "ls", "--help"],
    ] {
        let out = into_closed_pipe(&h, &args);
        let err = stderr(&out);
        assert!(
            out.status.signal() == Some(libc::SIGPIPE) || out.status.success(),
            "weft {args:?}: {:?}, stderr {err}",
            out.status
        );
        assert!(!err.contains("panicked"), "weft {args:?}: {err}");
        assert_eq!(err, "", "weft {args:?} must end quietly");
    }
    // And the shell's way: `| head -c1`.
    let out = h.sh(&format!(
        "{} --state-dir {} --run-dir {} --config {} network ls --format json | head -c1",
        common::weft_bin(),
        h.state_dir().display(),
        h.run_dir().display(),
        h.dir.join("weft.toml").display()
    ));
    assert_eq!(out, "[");
}

#[test]
fn network_prune_asks_first_and_keeps_what_is_used_and_the_default_network() {
    let h = Host::new("opr");
    h.weft_ok(&["network", "create", "idle", "--subnet", "10.191.0.0/24"]);
    h.weft_ok(&["network", "create", "used", "--subnet", "10.192.0.0/24"]);
    h.weft_ok(&["create", "--name", "s", "--network", "used"]);
    // The default network, made by a sandbox that then goes.
    h.weft_ok(&["create", "--name", "tmp"]);
    h.weft_ok(&["rm", "tmp"]);
    let all = || names(&h.json(&["network", "ls"]));
    assert_eq!(all(), vec!["idle", "used", "weft"]);
    let prompt = "WARNING! This will remove all custom networks not used by at least one sandbox.\nAre you sure you want to continue? [y/N] ";

    let out = with_stdin(&h, &["network", "prune"], "n\n");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), "");
    assert_eq!(stderr(&out), prompt);
    assert_eq!(all(), vec!["idle", "used", "weft"]);

    // End of input (stdin not a terminal and nothing on it) is no.
    let out = with_stdin(&h, &["network", "prune"], "");
    assert_eq!((out.status.code(), stdout(&out)), (Some(0), String::new()));
    assert_eq!(all(), vec!["idle", "used", "weft"]);
    // Anything but y is no.
    let out = with_stdin(&h, &["network", "prune"], "yes\n");
    assert_eq!(stdout(&out), "");
    assert_eq!(all(), vec!["idle", "used", "weft"]);

    let out = with_stdin(&h, &["network", "prune"], "y\n");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), "idle\n");
    assert_eq!(all(), vec!["used", "weft"]);

    h.weft_ok(&["rm", "s"]);
    assert_eq!(h.weft_ok(&["network", "prune", "-f"]), "used\n");
    assert_eq!(h.weft_ok(&["network", "prune", "--force"]), "");
    assert_eq!(all(), vec!["weft"]);
    assert!(h.ns.ip(&["link", "show", "weft0"]).contains("weft0"));
}

#[test]
fn docker_bridge_name_and_mtu_options_reach_the_kernel() {
    let h = Host::new("oo1");
    h.weft_ok(&[
        "network",
        "create",
        "d",
        "--subnet",
        "10.193.0.0/24",
        "--opt",
        "com.docker.network.bridge.name=dockerish0",
        "--opt",
        "com.docker.network.driver.mtu=1300",
    ]);
    let link = h.ns.ip(&["-d", "link", "show", "dockerish0"]);
    assert!(link.contains("mtu 1300"), "{link}");
    assert!(link.contains("bridge"), "{link}");
    let v = h.json(&["network", "inspect", "d"])[0].clone();
    assert_eq!(v["bridge"], "dockerish0");
    assert_eq!(v["mtu"], 1300);
    // The sandbox end gets the MTU too.
    h.sleeper("s", &["--network", "d"]);
    let mtu = h.weft_ok(&["exec", "s", "--", "cat", "/sys/class/net/eth0/mtu"]);
    assert_eq!(mtu.trim(), "1300");

    // One setting, two values: refused, and nothing is made.
    let err = h.weft_err(
        1,
        &[
            "network",
            "create",
            "c",
            "--mtu",
            "1400",
            "--opt",
            "com.docker.network.driver.mtu=1300",
        ],
    );
    assert_eq!(
        err,
        "error: conflicting values for the MTU: --mtu 1400 and --opt com.docker.network.driver.mtu=1300; give it once\n"
    );
    let err = h.weft_err(
        1,
        &[
            "network",
            "create",
            "c",
            "--bridge-name",
            "a0",
            "-o",
            "com.docker.network.bridge.name=b0",
        ],
    );
    assert!(
        err.contains("conflicting values for the bridge name"),
        "{err}"
    );
    let err = h.weft_err(
        1,
        &[
            "network",
            "create",
            "c",
            "-o",
            "com.docker.network.driver.mtu=9",
        ],
    );
    assert_eq!(
        err,
        "error: invalid --mtu 9: must be between 68 and 65535\n"
    );
    let err = h.weft_err(
        1,
        &[
            "network",
            "create",
            "c",
            "-o",
            "com.docker.network.bridge.name=much-too-long-name",
        ],
    );
    assert!(err.contains("much-too-long-name"), "{err}");
    let err = h.weft_err(
        1,
        &[
            "network",
            "create",
            "c",
            "-o",
            "com.docker.network.bridge.default_bridge=true",
        ],
    );
    assert!(
        err.contains("unknown --opt \"com.docker.network.bridge.default_bridge\""),
        "{err}"
    );
    assert_eq!(names(&h.json(&["network", "ls"])), vec!["d"]);
}

#[test]
fn docker_enable_icc_false_isolates_sandboxes() {
    let h = Host::new("oo2");
    h.weft_ok(&[
        "network",
        "create",
        "q",
        "--subnet",
        "10.194.0.0/24",
        "--opt",
        "com.docker.network.bridge.enable_icc=false",
    ]);
    assert_eq!(
        h.json(&["network", "inspect", "q"])[0]["options"],
        json!({"icc": "false"})
    );
    h.sleeper("a", &["--network", "q"]);
    h.sleeper("b", &["--network", "q"]);
    assert!(h.pings("a", "10.194.0.1"), "the gateway stays reachable");
    assert!(
        !h.pings("a", &h.ip_of("b", 0)),
        "icc=false: a must not reach b"
    );
    // Conflicting spellings of the same setting are refused.
    let err = h.weft_err(
        1,
        &[
            "network",
            "create",
            "c",
            "-o",
            "icc=true",
            "-o",
            "com.docker.network.bridge.enable_icc=false",
        ],
    );
    assert!(err.contains("conflicting values for icc"), "{err}");
}

#[test]
fn docker_enable_ip_masquerade_false_leaves_no_masquerade() {
    let w = WithInternet::new("oo3");
    let h = &w.host;
    h.weft_ok(&[
        "network",
        "create",
        "plain",
        "--subnet",
        "10.195.0.0/24",
        "-o",
        "com.docker.network.bridge.enable_ip_masquerade=false",
    ]);
    h.weft_ok(&["network", "create", "natted", "--subnet", "10.196.0.0/24"]);
    let set = h.sh("nft list set inet weft masq4");
    assert!(set.contains("10.196.0.0/24"), "{set}");
    assert!(!set.contains("10.195.0.0/24"), "{set}");
    h.sleeper("a", &["--network", "plain"]);
    let mut server = w.serve("198.51.100.2:8093", 1);
    assert!(
        h.connect_from_sandbox("a", "198.51.100.2:8093").is_none(),
        "no NAT and no route back: connect must fail"
    );
    let _ = server.kill();
    let _ = server.wait();
}

#[test]
fn docker_host_binding_ipv4_is_the_default_host_address_of_published_ports() {
    let w = WithInternet::new("oo4");
    let h = &w.host;
    h.weft_ok(&[
        "network",
        "create",
        "local",
        "--subnet",
        "10.197.0.0/24",
        "-o",
        "com.docker.network.bridge.host_binding_ipv4=127.0.0.1",
    ]);
    let script = format!(
        "{} tool serve 0.0.0.0:80 --count 5 --timeout 60",
        common::weft_bin()
    );
    h.weft_ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "local",
        "-p",
        "8094:80",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    assert_eq!(
        h.json(&["port", "web"]),
        json!([{"host_ip": "127.0.0.1", "host_port": 8094, "container_port": 80, "protocol": "tcp"}])
    );
    // Reachable on that address from the host, not from outside through the host's address.
    let mut answered = false;
    for _ in 0..100 {
        let out = h.ns.tool(&["connect", "127.0.0.1:8094", "--timeout", "1"]);
        if out.status.success() {
            answered = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(answered, "127.0.0.1:8094 answers on the host");
    let out = w
        .inet
        .tool(&["connect", "198.51.100.1:8094", "--timeout", "1"]);
    assert!(
        !out.status.success(),
        "the port is not published on other addresses"
    );
    // A -p with its own address wins over the network's default.
    h.weft_ok(&[
        "create",
        "--name",
        "other",
        "--network",
        "local",
        "-p",
        "0.0.0.0:8095:80",
    ]);
    assert_eq!(h.json(&["port", "other"])[0]["host_ip"], "0.0.0.0");
    // 0.0.0.0, Docker's default, is every address: IPv6 sandboxes publish on `::` too.
    h.weft_ok(&[
        "network",
        "create",
        "all",
        "--ipv6",
        "-o",
        "com.docker.network.bridge.host_binding_ipv4=0.0.0.0",
    ]);
    h.weft_ok(&[
        "create",
        "--name",
        "both",
        "--network",
        "all",
        "-p",
        "8096:80",
    ]);
    let ips: Vec<String> = h
        .json(&["port", "both"])
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["host_ip"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ips, vec!["0.0.0.0", "::"]);
    let err = h.weft_err(
        1,
        &[
            "network",
            "create",
            "c",
            "-o",
            "com.docker.network.bridge.host_binding_ipv4=localhost",
        ],
    );
    assert!(
        err.contains("invalid --opt com.docker.network.bridge.host_binding_ipv4=localhost"),
        "{err}"
    );
}

#[test]
fn help_lists_a_commands_own_flags_first_with_examples_and_no_env_noise() {
    let h = Host::new("oh");
    for cmd in [
        vec!["ps"],
        vec!["inspect"],
        vec!["port"],
        vec!["gc"],
        vec!["daemon"],
        vec!["network", "create"],
        vec!["network", "ls"],
        vec!["network", "inspect"],
        vec!["network", "rm"],
        vec!["network", "prune"],
        vec!["network", "connect"],
        vec!["network", "disconnect"],
        vec!["ipam", "avoid"],
        vec!["ipam", "avoid", "add"],
        vec!["ipam", "avoid", "rm"],
        vec!["ipam", "avoid", "ls"],
        vec!["daemon", "status"],
        vec!["daemon", "stop"],
        vec!["daemon", "repair"],
        vec!["run"],
        vec!["create"],
        vec!["start"],
        vec!["restart"],
        vec!["exec"],
        vec!["logs"],
        vec!["stop"],
        vec!["kill"],
        vec!["wait"],
        vec!["rm"],
        vec!["demo"],
    ] {
        let mut args = cmd.clone();
        args.push("--help");
        let out = h.weft_ok(&args);
        assert!(!out.contains("[env:"), "{cmd:?}: {out}");
        assert!(out.contains("Example"), "{cmd:?} has no examples: {out}");
        let own = out
            .find("Options:")
            .unwrap_or_else(|| panic!("{cmd:?}: {out}"));
        let global = out
            .find("Global options:")
            .unwrap_or_else(|| panic!("{cmd:?}: {out}"));
        assert!(own < global, "{cmd:?}: own flags must come first: {out}");
        assert!(out.contains("--state-dir"), "{cmd:?}");
    }
    // The variables still work.
    let out =
        h.ns.cmd(common::weft_bin(), &["network", "ls", "-q"])
            .env("WEFT_STATE_DIR", h.state_dir())
            .env("WEFT_RUN_DIR", h.run_dir())
            .env("WEFT_CONFIG", h.dir.join("weft.toml"))
            .output()
            .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    h.weft_ok(&["network", "create", "envnet", "--subnet", "10.198.0.0/24"]);
    let out =
        h.ns.cmd(common::weft_bin(), &["network", "ls", "--format", "json"])
            .env("WEFT_STATE_DIR", h.state_dir())
            .env("WEFT_RUN_DIR", h.run_dir())
            .env("WEFT_CONFIG", h.dir.join("weft.toml"))
            .output()
            .unwrap();
    assert_eq!(
        names(&serde_json::from_slice(&out.stdout).unwrap()),
        vec!["envnet"]
    );
}
