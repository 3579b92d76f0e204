//! The README's scripts on a fresh machine: scripts/lib/toolchain.sh finds a new enough cargo
//! for the user who ran sudo (sudo resets PATH), says how to get one when there is none,
//! installs missing packages only; scripts/install.sh stages the binary and the unit.
//! Everything runs against fake toolchains, fake `sudo`/`getent`/`apt-get` and temporary
//! directories: nothing of this machine is installed or changed.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::weft_bin;

/// A temporary directory removed on drop.
struct Tmp(PathBuf);

impl Tmp {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(common::unique(name));
        std::fs::create_dir_all(&dir).unwrap();
        Tmp(dir)
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn write_exe(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A fake toolchain in `dir`: `cargo` prints its arguments and the environment it got,
/// `rustc --version` prints `version`.
fn fake_toolchain(dir: &Path, version: &str) {
    write_exe(
        &dir.join("cargo"),
        "#!/bin/sh\necho \"cargo $* HOME=$HOME PATH=$PATH USER=$USER\"\n",
    );
    write_exe(
        &dir.join("rustc"),
        &format!("#!/bin/sh\necho \"rustc {version} (0000000 2026-01-01)\"\n"),
    );
}

/// A directory with only the tools the scripts use besides the toolchain (no cargo, no
/// apt-get, no sudo), so that what the machine has installed does not leak in.
fn base_tools(tmp: &Path) -> PathBuf {
    let dir = tmp.join("tools");
    std::fs::create_dir_all(&dir).unwrap();
    for t in [
        "bash", "sh", "env", "sed", "awk", "cut", "head", "dirname", "id", "find", "grep", "cat",
        "chown", "rm", "mkdir", "install", "mktemp", "pwd",
    ] {
        for d in ["/usr/bin", "/bin", "/usr/sbin", "/sbin"] {
            let p = Path::new(d).join(t);
            if p.exists() {
                std::os::unix::fs::symlink(&p, dir.join(t)).unwrap();
                break;
            }
        }
    }
    dir
}

/// Runs `script` (bash, in the repository, after sourcing scripts/lib/toolchain.sh) with only
/// `env` set (and PATH = `path`).
fn lib(script: &str, path: &str, env: &[(&str, &str)]) -> Output {
    let mut c = Command::new("/bin/bash");
    c.current_dir(repo())
        .env_clear()
        .env("PATH", path)
        .arg("-c")
        .arg(format!(
            "set -euo pipefail; . scripts/lib/toolchain.sh; {script}"
        ));
    for (k, v) in env {
        c.env(k, v);
    }
    common::run(&mut c)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Cargo.toml's rust-version, read here independently of the script.
fn rust_version() -> String {
    let toml = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    toml.lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap()
        .to_string()
}

/// `rust_version()` with its minor number moved by `delta`.
fn minor_moved(delta: i32) -> String {
    let v = rust_version();
    let mut parts: Vec<i32> = v.split('.').map(|p| p.parse().unwrap()).collect();
    parts[1] += delta;
    format!("{}.{}.0", parts[0], parts[1])
}

#[test]
fn the_required_version_comes_from_cargo_toml_and_compares_numerically() {
    let tmp = Tmp::new("scv");
    let tools = base_tools(&tmp.0);
    let out = lib(
        "weft_rust_version; \
         for p in '1.95 1.95.0' '1.95.0 1.95' '1.100.0 1.95' '2.0 1.95' '1.95.1 1.95'; do \
           weft_version_ge $p && echo \"$p ge\"; done; \
         for p in '1.94.9 1.95' '1.9 1.95' '0.99 1.0' '1.95 1.95.1'; do \
           weft_version_ge $p || echo \"$p lt\"; done",
        tools.to_str().unwrap(),
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let lines: Vec<String> = text(&out).lines().map(str::to_string).collect();
    assert_eq!(
        lines,
        [
            rust_version().as_str(),
            "1.95 1.95.0 ge",
            "1.95.0 1.95 ge",
            "1.100.0 1.95 ge",
            "2.0 1.95 ge",
            "1.95.1 1.95 ge",
            "1.94.9 1.95 lt",
            "1.9 1.95 lt",
            "0.99 1.0 lt",
            "1.95 1.95.1 lt",
        ]
    );
}

#[test]
fn rustups_cargo_in_the_users_home_is_found_without_it_on_path() {
    let tmp = Tmp::new("scf");
    let tools = base_tools(&tmp.0);
    let home = tmp.0.join("home");
    fake_toolchain(&home.join(".cargo/bin"), &rust_version());
    let out = lib(
        "weft_build_user; weft_find_cargo; echo \"dir=$WEFT_CARGO_DIR user=$WEFT_USER\"; \
         weft_cargo build --release",
        tools.to_str().unwrap(),
        &[("HOME", home.to_str().unwrap())],
    );
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let bin = home.join(".cargo/bin");
    assert!(t.contains(&format!("dir={} ", bin.display())), "{t}");
    // cargo runs with its own directory first on PATH (its rustc, not another one).
    assert!(
        t.contains(&format!(
            "cargo build --release HOME={} PATH={}:/usr/local/sbin:",
            home.display(),
            bin.display()
        )),
        "{t}"
    );
}

#[test]
fn cargo_and_cargo_home_given_by_the_caller_come_first() {
    let tmp = Tmp::new("scc");
    let tools = base_tools(&tmp.0);
    let home = tmp.0.join("home");
    fake_toolchain(&home.join(".cargo/bin"), &rust_version());
    let mine = tmp.0.join("mine");
    fake_toolchain(&mine.join("bin"), &minor_moved(1));
    let show = "weft_build_user; weft_find_cargo; echo \"dir=$WEFT_CARGO_DIR\"";
    let out = lib(
        show,
        tools.to_str().unwrap(),
        &[
            ("HOME", home.to_str().unwrap()),
            ("CARGO", mine.join("bin/cargo").to_str().unwrap()),
        ],
    );
    assert!(
        text(&out).contains(&format!("dir={}", mine.join("bin").display())),
        "{}",
        text(&out)
    );
    let out = lib(
        show,
        tools.to_str().unwrap(),
        &[
            ("HOME", home.to_str().unwrap()),
            ("CARGO_HOME", mine.to_str().unwrap()),
        ],
    );
    assert!(
        text(&out).contains(&format!("dir={}", mine.join("bin").display())),
        "{}",
        text(&out)
    );
}

#[test]
fn a_too_old_cargo_is_skipped_for_a_new_enough_one_and_named_when_alone() {
    let tmp = Tmp::new("sco");
    let tools = base_tools(&tmp.0);
    let home = tmp.0.join("home");
    // The distribution's cargo: on PATH, too old.
    let distro = tmp.0.join("usr-bin");
    let old = minor_moved(-1);
    fake_toolchain(&distro, &old);
    let path = format!("{}:{}", tools.display(), distro.display());
    let show = "weft_build_user; weft_find_cargo; echo \"dir=$WEFT_CARGO_DIR\"";

    let out = lib(show, &path, &[("HOME", home.to_str().unwrap())]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains(&format!(
            "error: weft needs Rust {} or newer (rust-version in Cargo.toml).",
            rust_version()
        )),
        "{t}"
    );
    assert!(
        t.contains(&format!("{}/cargo: rustc {old}, too old", distro.display())),
        "{t}"
    );
    assert!(
        t.contains("curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y"),
        "{t}"
    );
    assert!(t.contains("then run again: sudo "), "{t}");

    // rustup's, newer, in the home: taken although the old one is on PATH.
    fake_toolchain(&home.join(".cargo/bin"), &minor_moved(2));
    let out = lib(show, &path, &[("HOME", home.to_str().unwrap())]);
    assert!(
        text(&out).contains(&format!("dir={}", home.join(".cargo/bin").display())),
        "{}",
        text(&out)
    );

    // rustup there but its toolchain too old: update it, not install it again.
    fake_toolchain(&home.join(".cargo/bin"), &old);
    write_exe(&home.join(".cargo/bin/rustup"), "#!/bin/sh\n");
    let out = lib(show, &path, &[("HOME", home.to_str().unwrap())]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("rustup update stable"), "{t}");
    assert!(!t.contains("sh.rustup.rs"), "{t}");
}

#[test]
fn no_cargo_anywhere_says_how_to_get_one() {
    let tmp = Tmp::new("scn");
    let tools = base_tools(&tmp.0);
    let home = tmp.0.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let out = lib(
        "weft_build_user; weft_find_cargo",
        tools.to_str().unwrap(),
        &[("HOME", home.to_str().unwrap())],
    );
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    // /usr/local/cargo/bin (the rust image's) is looked at too; on a machine that has it,
    // that cargo would be found instead.
    if !Path::new("/usr/local/cargo/bin/cargo").exists() {
        assert!(t.contains("No cargo found"), "{t}");
        assert!(t.contains("https://sh.rustup.rs"), "{t}");
    }
}

#[test]
fn under_sudo_the_build_runs_as_the_user_with_their_toolchain() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        common::skipped(
            "under_sudo_the_build_runs_as_the_user_with_their_toolchain",
            "needs root (the scripts switch users only as root)",
        );
        return;
    }
    let tmp = Tmp::new("scs");
    let tools = base_tools(&tmp.0);
    let home = tmp.0.join("alice");
    fake_toolchain(&home.join(".cargo/bin"), &rust_version());
    // A fake user database and a fake sudo that records how it was called and runs the
    // command (as root: the recording is what is checked).
    let fakes = tmp.0.join("fakes");
    let log = tmp.0.join("sudo.log");
    write_exe(
        &fakes.join("getent"),
        &format!(
            "#!/bin/sh\n[ \"$2\" = alice ] && echo 'alice:x:4242:4242::{}:/bin/bash'\n",
            home.display()
        ),
    );
    write_exe(
        &fakes.join("sudo"),
        &format!(
            "#!/bin/sh\necho \"sudo $*\" >> {}\n[ \"$1\" = -u ] && shift 2\n[ \"$1\" = -- ] && shift\nexec \"$@\"\n",
            log.display()
        ),
    );
    let path = format!("{}:{}", fakes.display(), tools.display());
    let out = lib(
        "weft_build_user; weft_find_cargo; echo \"user=$WEFT_USER home=$WEFT_HOME\"; \
         weft_cargo build --release",
        &path,
        &[("HOME", "/root"), ("SUDO_USER", "alice")],
    );
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains(&format!("user=alice home={}", home.display())),
        "{t}"
    );
    let sudo = std::fs::read_to_string(&log).unwrap();
    let bin = home.join(".cargo/bin");
    assert!(
        sudo.contains(&format!(
            "sudo -u alice -- env HOME={} USER=alice LOGNAME=alice PATH={}:/usr/local/sbin:",
            home.display(),
            bin.display()
        )) && sudo
            .lines()
            .last()
            .unwrap()
            .ends_with(" cargo build --release"),
        "{sudo}"
    );
    // Also the version check ran as alice, so rustup reads her settings.
    assert!(
        sudo.lines().next().unwrap().ends_with(" test -w ."),
        "{sudo}"
    );
    assert!(sudo.contains(" rustc --version"), "{sudo}");

    // SUDO_USER=root (sudo from a root shell): no switch.
    let _ = std::fs::remove_file(&log);
    let out = lib(
        "weft_build_user; echo \"user=$WEFT_USER\"",
        &path,
        &[("HOME", "/root"), ("SUDO_USER", "root")],
    );
    assert!(text(&out).contains("user=root"), "{}", text(&out));
    assert!(!log.exists());
}

#[test]
fn packages_are_installed_only_when_missing_and_only_with_apt_get() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        common::skipped(
            "packages_are_installed_only_when_missing_and_only_with_apt_get",
            "needs root (the scripts install only as root)",
        );
        return;
    }
    let tmp = Tmp::new("scp");
    let tools = base_tools(&tmp.0);
    let log = tmp.0.join("apt.log");
    let apt = tmp.0.join("apt");
    write_exe(
        &apt.join("apt-get"),
        &format!("#!/bin/sh\necho \"apt-get $*\" >> {}\n", log.display()),
    );
    let with_apt = format!("{}:{}", apt.display(), tools.display());

    // Nothing missing: silent, apt-get not run.
    let out = lib("weft_need_packages 'for x'", &with_apt, &[]);
    assert!(
        out.status.success() && text(&out).is_empty(),
        "{}",
        text(&out)
    );
    assert!(!log.exists());

    let out = lib("weft_need_packages 'for x' gcc libc6-dev", &with_apt, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(text(&out), "== installing gcc libc6-dev (for x)\n");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "apt-get update -qq\napt-get install -y -qq gcc libc6-dev\n"
    );

    // No apt-get: says what is missing, fails.
    let out = lib(
        "weft_need_packages 'for x' gcc",
        tools.to_str().unwrap(),
        &[],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).starts_with(
            "error: missing gcc (for x): install them with your distribution's package manager"
        ),
        "{}",
        text(&out)
    );
}

fn install(args: &[&str]) -> Output {
    common::run(
        Command::new(repo().join("scripts/install.sh"))
            .args(args)
            .env_remove("SUDO_USER"),
    )
}

#[test]
fn install_stages_the_binary_and_a_unit_running_it_and_uninstall_removes_them() {
    let tmp = Tmp::new("sci");
    let dest = tmp.0.join("dest");
    let dest_s = dest.to_str().unwrap();
    let out = install(&["--destdir", dest_s, "--binary", weft_bin()]);
    assert!(out.status.success(), "{}", text(&out));
    let bin = dest.join("usr/local/bin/weft");
    let unit = dest.join("etc/systemd/system/weft.service");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&bin), 0o755);
    assert_eq!(mode(&unit), 0o644);
    assert_eq!(
        std::fs::read(&bin).unwrap(),
        std::fs::read(weft_bin()).unwrap()
    );
    let unit_text = std::fs::read_to_string(&unit).unwrap();
    assert!(
        unit_text.contains("\nType=notify\nExecStart=/usr/local/bin/weft daemon --stay\n"),
        "{unit_text}"
    );
    // What the unit runs is a command this weft accepts.
    let help = common::ok(Command::new(&bin).args(["daemon", "--help"]));
    assert!(help.contains("--stay"), "{help}");
    assert!(text(&out).contains(&format!("installed {}", bin.display())));

    let out = install(&["--destdir", dest_s, "--uninstall"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!bin.exists() && !unit.exists(), "{}", text(&out));

    // Another prefix: the unit follows the binary.
    let out = install(&[
        "--destdir",
        dest_s,
        "--prefix=/opt/weft/",
        "--binary",
        weft_bin(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let unit_text = std::fs::read_to_string(&unit).unwrap();
    assert!(
        unit_text.contains("\nExecStart=/opt/weft/bin/weft daemon --stay\n"),
        "{unit_text}"
    );
    assert!(dest.join("opt/weft/bin/weft").exists());
}

#[test]
fn install_refuses_bad_options() {
    let tmp = Tmp::new("scb");
    let dest = tmp.0.join("dest");
    let dest_s = dest.to_str().unwrap();
    for (args, msg) in [
        (vec!["--bogus"], "error: unknown option --bogus"),
        (vec!["--prefix"], "error: --prefix needs a value"),
        (
            vec!["--prefix", "opt/weft"],
            "error: --prefix must be an absolute path",
        ),
        (
            vec!["--prefix", "/opt/my weft"],
            "error: --prefix must be an absolute path",
        ),
        (
            vec!["--binary", "/nonexistent/weft"],
            "error: /nonexistent/weft is not an executable",
        ),
    ] {
        let mut full = vec!["--destdir", dest_s];
        full.extend(args.iter());
        let out = install(&full);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(msg), "{args:?}: {}", text(&out));
    }
    assert!(!dest.exists(), "a refused install wrote something");
}
