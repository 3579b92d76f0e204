//! weft runs as root: it must not write through symlinks another user planted, must not use
//! directories another user controls, and keeps its state private (labels, a sandbox's
//! output), while the files sandboxes read stay readable inside them.

mod common;

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::{weft_bin, Host};

/// Removes a directory planted outside the host's own directory, also when the test fails.
struct Planted(PathBuf);

impl Drop for Planted {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Unmounts whatever a weft that did not refuse would have mounted under a run directory
/// (namespace handles, the handle directory), also when the test fails.
struct RunDirMounts(PathBuf);

impl Drop for RunDirMounts {
    fn drop(&mut self) {
        let netns = self.0.join("netns");
        let umount = |p: &Path| {
            let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: plain umount2 with a valid C string.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        };
        if let Ok(rd) = std::fs::read_dir(&netns) {
            for e in rd.flatten() {
                umount(&e.path());
            }
        }
        for _ in 0..3 {
            umount(&netns);
        }
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .mode()
        & 0o7777
}

#[test]
fn the_demo_never_writes_through_a_symlink_planted_where_it_works() {
    if !common::root_or_skip("the_demo_never_writes_through_a_symlink_planted_where_it_works") {
        return;
    }
    let h = Host::new("sdemo");
    let victim = h.dir.join("victim");
    std::fs::write(&victim, "precious").unwrap();
    // sh waits, then execs weft in place: the demo's pid is known before it starts, and with
    // it the directory an older weft used (/tmp/weft-demo-PID), where a local user could
    // have planted symlinks to files root may write.
    let mut demo =
        h.ns.cmd("sh", &["-c", &format!("read go; exec {} demo", weft_bin())])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    let planted = Planted(std::env::temp_dir().join(format!("weft-demo-{}", demo.id())));
    std::fs::create_dir(&planted.0).unwrap();
    for handle in ["host.ns", "internet.ns", "router.ns", "pc.ns"] {
        std::os::unix::fs::symlink(&victim, planted.0.join(handle)).unwrap();
    }
    demo.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let out = demo.wait_with_output().unwrap();
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "precious",
        "the demo wrote through a planted symlink"
    );
    assert!(
        std::fs::symlink_metadata(planted.0.join("host.ns"))
            .unwrap()
            .file_type()
            .is_symlink(),
        "the demo touched the planted directory"
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the demo failed: {shown}");
    // The headline: the office LAN behind the host's default route, known only from the
    // office PC's live session, is the first candidate and is skipped, with the reason.
    assert!(
        shown.contains(
            "172.17.0.0/16 contains 172.17.0.10, a peer of an established TCP connection on \
             port 22"
        ),
        "{shown}"
    );
    assert!(shown.contains("$ weft network inspect blue"), "{shown}");
    // Commands as a user would type them: no build path, no temporary directory.
    let tmp = std::env::temp_dir().join("weft-demo-");
    for l in shown.lines() {
        assert!(
            !l.contains(weft_bin()) && !l.contains(&*tmp.to_string_lossy()),
            "an absolute path in the demo's output: {l}"
        );
    }
    assert!(
        shown.contains("-- sh -c 'weft tool serve 0.0.0.0:80 --count 5 --timeout 60'"),
        "{shown}"
    );
}

#[test]
fn sandbox_files_replace_a_planted_symlink_instead_of_writing_through_it() {
    if !common::root_or_skip(
        "sandbox_files_replace_a_planted_symlink_instead_of_writing_through_it",
    ) {
        return;
    }
    let h = Host::new("sfiles");
    let victim = h.dir.join("victim");
    std::fs::write(&victim, "precious").unwrap();
    h.weft_ok(&["network", "create", "a", "--subnet", "10.161.0.0/24"]);
    h.weft_ok(&["network", "create", "b", "--subnet", "10.161.1.0/24"]);
    h.weft_ok(&["create", "--name", "s", "--network", "a"]);
    let id = h.json(&["inspect", "s"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let dir = h.run_dir().join("sandboxes").join(&id);
    for f in ["hosts", "resolv.conf"] {
        std::fs::remove_file(dir.join(f)).unwrap();
        std::os::unix::fs::symlink(&victim, dir.join(f)).unwrap();
    }
    // Connecting rewrites both files.
    h.weft_ok(&["network", "connect", "b", "s"]);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    for f in ["hosts", "resolv.conf"] {
        let md = std::fs::symlink_metadata(dir.join(f)).unwrap();
        assert!(md.is_file(), "{f} is still a symlink");
        assert_eq!(md.mode() & 0o777, 0o644, "{f}");
    }
    let hosts = std::fs::read_to_string(dir.join("hosts")).unwrap();
    assert!(hosts.contains("10.161.1.2"), "{hosts}");
}

#[test]
fn directories_another_user_owns_are_refused() {
    if !common::root_or_skip("directories_another_user_owns_are_refused") {
        return;
    }
    let h = Host::new("sowner");
    let victim = h.dir.join("victim-dir");
    std::fs::create_dir(&victim).unwrap();
    // A run directory prepared by uid 65534, whose `sandboxes` leads elsewhere.
    let run = h.dir.join("their-run");
    std::fs::create_dir(&run).unwrap();
    std::os::unix::fs::symlink(&victim, run.join("sandboxes")).unwrap();
    std::os::unix::fs::chown(&run, Some(65534), Some(65534)).unwrap();
    let _mounts = RunDirMounts(run.clone());
    let weft = |state: &Path, run: &Path, args: &[&str]| {
        let mut cmd = h.ns.cmd(weft_bin(), &[]);
        cmd.arg("--state-dir")
            .arg(state)
            .arg("--run-dir")
            .arg(run)
            .arg("--config")
            .arg(h.dir.join("weft.toml"))
            .args(args);
        common::run(&mut cmd)
    };
    let out = weft(
        &h.state_dir(),
        &run,
        &["create", "--name", "s", "--network", "none"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(err.contains("belongs to uid 65534"), "{err}");
    assert_eq!(
        std::fs::read_dir(&victim).unwrap().count(),
        0,
        "weft wrote into the other user's directory"
    );
    // The same for the state directory.
    let state = h.dir.join("their-state");
    std::fs::create_dir(&state).unwrap();
    std::os::unix::fs::chown(&state, Some(65534), Some(65534)).unwrap();
    let out = weft(&state, &h.run_dir(), &["ps"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("belongs to uid 65534"), "{err}");
    assert_eq!(std::fs::read_dir(&state).unwrap().count(), 0);
}

#[test]
fn state_logs_and_run_files_are_private_but_sandboxes_read_their_etc_files() {
    if !common::root_or_skip(
        "state_logs_and_run_files_are_private_but_sandboxes_read_their_etc_files",
    ) {
        return;
    }
    let h = Host::new("sperm");
    // An older weft left them readable to everyone.
    for d in [h.state_dir(), h.run_dir()] {
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    h.weft_ok(&["network", "create", "n", "--subnet", "10.161.2.0/24"]);
    h.weft_ok(&[
        "run",
        "-d",
        "--name",
        "s",
        "--network",
        "n",
        "--label",
        "secret=x",
        "--",
        "sh",
        "-c",
        "echo output; exec sleep 600",
    ]);
    let id = h.json(&["inspect", "s"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let state = h.state_dir();
    let mut private = vec![
        state.clone(),
        state.join("state.db"),
        state.join("logs"),
        state.join("logs").join(format!("{id}.log")),
        h.run_dir(),
        h.run_dir().join("sandboxes"),
        h.run_dir().join("sandboxes").join(&id),
        h.run_dir().join("netns"),
    ];
    // The monitor keeps the database open: in WAL mode these exist meanwhile.
    for f in ["state.db-wal", "state.db-shm"] {
        if state.join(f).exists() {
            private.push(state.join(f));
        }
    }
    for p in &private {
        assert_eq!(
            mode(p) & 0o077,
            0,
            "{} is {:o}: readable by others",
            p.display(),
            mode(p)
        );
    }
    let hosts = h.run_dir().join("sandboxes").join(&id).join("hosts");
    assert_eq!(mode(&hosts), 0o644);
    // A process that is not root inside the sandbox reads /etc/hosts.
    let out = h.weft_ok(&[
        "exec",
        "s",
        "--",
        "setpriv",
        "--reuid",
        "65534",
        "--regid",
        "65534",
        "--clear-groups",
        "cat",
        "/etc/hosts",
    ]);
    assert!(out.contains(" s\n"), "{out}");
}

/// `weft --state-dir STATE --run-dir RUN ps` in the host's namespace.
fn weft_with_dirs(h: &Host, state: &Path, run: &Path) -> std::process::Output {
    let mut cmd = h.ns.cmd(weft_bin(), &[]);
    cmd.arg("--state-dir")
        .arg(state)
        .arg("--run-dir")
        .arg(run)
        .arg("--config")
        .arg(h.dir.join("weft.toml"))
        .arg("ps");
    common::run(&mut cmd)
}

/// A directory's entries and mode, to show nothing was touched.
fn snapshot(dir: &Path) -> (Vec<String>, u32) {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    (names, mode(dir))
}

fn assert_refused(out: &std::process::Output, want: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "not refused: {err}");
    for w in want {
        assert!(err.contains(w), "{w:?} not in: {err}");
    }
}

#[test]
fn a_symlink_as_state_or_run_directory_is_refused_and_not_followed() {
    if !common::root_or_skip("a_symlink_as_state_or_run_directory_is_refused_and_not_followed") {
        return;
    }
    let h = Host::new("slink");
    let victim = h.dir.join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("keep"), "precious").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o755)).unwrap();
    // A world-writable sticky directory like /tmp, where another user made the links.
    let public = h.dir.join("pub");
    std::fs::create_dir(&public).unwrap();
    std::fs::set_permissions(&public, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let link = public.join("dir");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let _mounts = RunDirMounts(link.clone());
    let before = snapshot(&victim);
    for (state, run) in [(link.clone(), h.run_dir()), (h.state_dir(), link.clone())] {
        let out = weft_with_dirs(&h, &state, &run);
        assert_refused(&out, &[&link.display().to_string(), "symlink"]);
        assert_eq!(
            snapshot(&victim),
            before,
            "weft touched the symlink's target"
        );
    }
    // The same link owned by root, as the leaf: still refused (only ancestors are followed).
    let root_link = h.dir.join("rootlink");
    std::os::unix::fs::symlink(&victim, &root_link).unwrap();
    let out = weft_with_dirs(&h, &root_link, &h.run_dir());
    assert_refused(&out, &["symlink"]);
    assert_eq!(snapshot(&victim), before);
    // Planted by another user among the ancestors: refused.
    let theirs = public.join("theirs");
    std::os::unix::fs::symlink(&h.dir, &theirs).unwrap();
    std::os::unix::fs::lchown(&theirs, Some(65534), Some(65534)).unwrap();
    let out = weft_with_dirs(&h, &theirs.join("state"), &h.run_dir());
    assert_refused(&out, &[&theirs.display().to_string(), "uid 65534"]);
    assert!(!h.state_dir().exists());
    // A root-owned symlink among the ancestors (like /var/run -> /run) is followed.
    let out = weft_with_dirs(&h, &root_link.join("state"), &h.run_dir());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(victim.join("state").join("state.db").exists());
}

#[test]
fn a_state_or_run_directory_under_another_users_directory_is_refused() {
    if !common::root_or_skip("a_state_or_run_directory_under_another_users_directory_is_refused") {
        return;
    }
    let h = Host::new("sparent");
    // Owned by another user (who could swap weft's directory for a symlink any time).
    let theirs = h.dir.join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    // Root's, but writable by its group.
    let shared = h.dir.join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o775)).unwrap();
    // A sticky directory whose entry belongs to another user.
    let sticky = h.dir.join("sticky");
    std::fs::create_dir(&sticky).unwrap();
    std::fs::set_permissions(&sticky, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let in_sticky = sticky.join("theirs");
    std::fs::create_dir(&in_sticky).unwrap();
    std::os::unix::fs::chown(&in_sticky, Some(65534), Some(65534)).unwrap();
    for (parent, why) in [
        (&theirs, "belongs to uid 65534"),
        (&shared, "writable by its group or others"),
        (&in_sticky, "belongs to uid 65534"),
    ] {
        let _mounts = RunDirMounts(parent.join("run"));
        let named = parent.display().to_string();
        for (state, run) in [
            (parent.join("state"), h.run_dir()),
            (h.state_dir(), parent.join("run")),
            (parent.join("a").join("b"), h.run_dir()),
        ] {
            let before = snapshot(parent);
            let out = weft_with_dirs(&h, &state, &run);
            assert_refused(&out, &[&named, why]);
            assert_eq!(snapshot(parent), before, "weft touched {named}");
        }
    }
    // The sticky directory itself, root's, may hold weft's directories.
    let out = weft_with_dirs(&h, &sticky.join("state"), &sticky.join("run"));
    let _mounts = RunDirMounts(sticky.join("run"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
