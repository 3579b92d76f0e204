//! `weft demo` interrupted: a Ctrl-C at the terminal (SIGINT to the demo and every process it
//! started in the foreground) or a SIGTERM to the demo alone, in the middle of the demo, leaves
//! no namespace, mount, process or temporary directory behind, and the demo exits as a shell
//! reports a command killed by that signal (128 + its number).

mod common;

use std::collections::HashSet;
use std::io::{BufRead as _, BufReader, Read as _};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{weft_bin, Host};

/// Inodes of the network namespaces the demo holds handles to: its own (host, internet,
/// office router and PC) and its sandboxes'.
fn demo_namespaces(demo_dir: &Path) -> HashSet<u64> {
    let mut handles: Vec<PathBuf> = ["host.ns", "internet.ns", "router.ns", "pc.ns"]
        .iter()
        .map(|n| demo_dir.join(n))
        .collect();
    if let Ok(rd) = std::fs::read_dir(demo_dir.join("run").join("netns")) {
        handles.extend(rd.flatten().map(|e| e.path()));
    }
    let inodes: HashSet<u64> = handles
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        // An unmounted handle is an empty file on the directory's file system (device
        // differs from nsfs); only mounted ones name a namespace.
        .filter(|m| m.len() == 0 && m.dev() != std::fs::metadata(demo_dir).unwrap().dev())
        .map(|m| m.ino())
        .collect();
    inodes
}

/// Processes whose network namespace is one of `inodes`.
fn processes_in(inodes: &HashSet<u64>) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(link) = std::fs::read_link(e.path().join("ns").join("net")) else {
            continue;
        };
        let link = link.to_string_lossy().to_string();
        let inode = link
            .strip_prefix("net:[")
            .and_then(|s| s.strip_suffix(']'))
            .and_then(|s| s.parse::<u64>().ok());
        if inode.is_some_and(|i| inodes.contains(&i)) {
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            found.push(format!(
                "{name}: {}",
                String::from_utf8_lossy(&cmdline).replace('\0', " ")
            ));
        }
    }
    found
}

/// What a demo that did not clean up would leave under `tmp`, removed when the test ends
/// (also when it fails): its agent and sandboxes through weft, then its namespace handles.
struct Leftovers {
    tmp: PathBuf,
    /// The demo, killed if the test fails before it exited.
    demo: Option<std::process::Child>,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        if let Some(mut demo) = self.demo.take() {
            let _ = demo.kill();
            let _ = demo.wait();
        }
        let Ok(rd) = std::fs::read_dir(&self.tmp) else {
            return;
        };
        for d in rd.flatten().map(|e| e.path()) {
            let weft = |args: &[&str]| {
                let _ = std::process::Command::new("nsenter")
                    .arg(format!("--net={}", d.join("host.ns").display()))
                    .arg(weft_bin())
                    .arg("--state-dir")
                    .arg(d.join("state"))
                    .arg("--run-dir")
                    .arg(d.join("run"))
                    .arg("--config")
                    .arg(d.join("weft.toml"))
                    .args(args)
                    .output();
            };
            weft(&["daemon", "stop"]);
            weft(&["rm", "--force", "web", "api", "db", "site"]);
            weft(&["network", "rm", "blue", "red"]);
            weft(&["gc"]);
            let mut handles: Vec<PathBuf> = ["pc.ns", "router.ns", "internet.ns", "host.ns"]
                .iter()
                .map(|n| d.join(n))
                .collect();
            handles.extend(std::iter::repeat_n(d.join("run").join("netns"), 3));
            for h in handles {
                let c = std::ffi::CString::new(h.as_os_str().as_encoded_bytes()).unwrap();
                // SAFETY: plain umount2 with a valid C string.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
            let _ = std::fs::remove_dir_all(&d);
        }
    }
}

/// Runs `weft demo` with its temporary directory under this host's, interrupts it with
/// `signal` (to its whole process group when `group`, as a terminal's Ctrl-C does) once it
/// printed `at`, and checks that it cleaned up everything.
fn interrupt_demo(test: &str, signal: libc::c_int, group: bool, at: &str, min_ns: usize) {
    if !common::root_or_skip(test) {
        return;
    }
    let h = Host::new("demoint");
    let tmp = h.dir.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o700)).unwrap();
    // Dropped before `h` (declared after it): removes what `h` could not.
    let mut guard = Leftovers {
        tmp: tmp.clone(),
        demo: None,
    };
    // nsenter execs weft in place: the child's pid is the demo's, and its process group too.
    let demo =
        h.ns.cmd(weft_bin(), &["demo"])
            .env("TMPDIR", &tmp)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    let pid = i32::try_from(demo.id()).unwrap();
    let demo = guard.demo.insert(demo);
    let mut out = BufReader::new(demo.stdout.take().unwrap());
    let mut shown = String::new();
    let mut reached = false;
    let mut line = String::new();
    while out.read_line(&mut line).unwrap() > 0 {
        shown.push_str(&line);
        if line.starts_with(at) {
            reached = true;
            break;
        }
        line.clear();
    }
    assert!(reached, "the demo never printed {at:?}:\n{shown}");
    let dirs: Vec<PathBuf> = std::fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(dirs.len(), 1, "one demo directory expected: {dirs:?}");
    let namespaces = demo_namespaces(&dirs[0]);
    // The demo's four, and the sandboxes' made by then: the interrupt comes with work under
    // way.
    assert!(namespaces.len() >= min_ns, "{namespaces:?}\n{shown}");
    assert!(!processes_in(&namespaces).is_empty());

    // SAFETY: plain kill/killpg of the demo this test started.
    let sent = unsafe {
        if group {
            libc::killpg(pid, signal)
        } else {
            libc::kill(pid, signal)
        }
    };
    assert_eq!(sent, 0);
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    shown.push_str(&rest);
    let status = demo.wait().unwrap();
    let mut err = String::new();
    demo.stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    guard.demo = None;

    assert_eq!(
        status.code(),
        Some(128 + signal),
        "exit status {status}\nstdout:\n{shown}\nstderr:\n{err}"
    );
    assert!(
        shown.contains("demo interrupted: cleaned up, nothing left behind"),
        "{shown}"
    );
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().flatten().collect();
    assert!(left.is_empty(), "temporary directory left: {left:?}");
    let tmp_text = tmp.display().to_string();
    let mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&tmp_text))
        .map(str::to_string)
        .collect();
    assert!(mounts.is_empty(), "mounts left: {mounts:?}");
    // Killed processes are reaped by their parents within moments.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut procs = processes_in(&namespaces);
    while !procs.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        procs = processes_in(&namespaces);
    }
    assert!(
        procs.is_empty(),
        "processes left in the demo's namespaces: {procs:?}"
    );
}

#[test]
fn ctrl_c_during_the_demo_leaves_no_namespace_mount_process_or_directory() {
    interrupt_demo(
        "ctrl_c_during_the_demo_leaves_no_namespace_mount_process_or_directory",
        libc::SIGINT,
        true,
        "$ weft ps",
        5,
    );
}

#[test]
fn sigterm_to_the_demo_alone_stops_it_after_the_step_and_cleans_up() {
    interrupt_demo(
        "sigterm_to_the_demo_alone_stops_it_after_the_step_and_cleans_up",
        libc::SIGTERM,
        false,
        "$ weft port site",
        5,
    );
}

#[test]
fn ctrl_c_while_a_sandbox_is_being_created_leaves_nothing() {
    interrupt_demo(
        "ctrl_c_while_a_sandbox_is_being_created_leaves_nothing",
        libc::SIGINT,
        true,
        "$ weft run -d --name api",
        5,
    );
}

#[test]
fn ctrl_c_with_the_office_session_open_leaves_nothing() {
    interrupt_demo(
        "ctrl_c_with_the_office_session_open_leaves_nothing",
        libc::SIGINT,
        true,
        "  peer=172.17.0.10:",
        4,
    );
}

#[test]
fn the_demo_read_through_head_still_finishes_and_leaves_nothing() {
    let test = "the_demo_read_through_head_still_finishes_and_leaves_nothing";
    if !common::root_or_skip(test) {
        return;
    }
    let h = Host::new("demohead");
    let tmp = h.dir.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut guard = Leftovers {
        tmp: tmp.clone(),
        demo: None,
    };
    // `weft demo | head -n 3`: the reader goes away after three lines, and every later
    // write of the demo's fails with EPIPE.
    let demo = guard.demo.insert(
        h.ns.cmd(weft_bin(), &["demo"])
            .env("TMPDIR", &tmp)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut out = BufReader::new(demo.stdout.take().unwrap());
    for _ in 0..3 {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
    }
    drop(out);
    let status = demo.wait().unwrap();
    let mut err = String::new();
    demo.stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    guard.demo = None;
    assert_eq!(status.code(), Some(0), "{status}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().flatten().collect();
    assert!(left.is_empty(), "temporary directory left: {left:?}");
}
