//! Files and directories weft creates. weft runs as root, often in directories other users can
//! write to (`/tmp`) or could have prepared beforehand, so it never opens a file it creates
//! through a symlink and never reuses a file that already exists (`O_NOFOLLOW | O_EXCL`);
//! replaced files are written fresh and renamed into place (or, for files bind-mounted into
//! sandboxes, rewritten in place: [`overwrite`]); directories are private (0700),
//! must belong to root, and lie where only root can change the path to them (see
//! [`private_dir`]).

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{
    DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt,
};
use std::path::{Path, PathBuf};

/// Creates `path` as a new file with `mode` (exactly, whatever the umask), refusing to follow
/// a symlink or to open a file that already exists.
pub fn create_new(path: &Path, mode: u32) -> io::Result<File> {
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    // The umask may have taken bits away that must be there (files read inside sandboxes).
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    Ok(f)
}

/// Opens an existing file for appending, only if it is a regular file of its own: not
/// through a symlink, not a FIFO or device (whose open could block or whose writes go
/// elsewhere), not a hard link to another file.
pub fn open_append(path: &Path) -> io::Result<File> {
    open_own(OpenOptions::new().append(true), path)
}

/// Opens an existing file for reading under the same conditions as [`open_append`].
pub fn open_read(path: &Path) -> io::Result<File> {
    open_own(OpenOptions::new().read(true), path)
}

/// Rewrites an existing file in place (the same inode), under the conditions of
/// [`open_append`]: a bind mount of it shows the new contents too, which a [`replace`] (a new
/// inode) would not. Unchanged contents are not written again; new ones are written over the
/// old, then the rest is cut off.
///
/// Only as much of the old contents is read as the comparison needs: the sandbox's root may
/// have written its bind-mounted copy full (gigabytes, on the run directory's tmpfs).
pub fn overwrite(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut old = Vec::new();
    let enough = u64::try_from(contents.len())
        .map_err(io::Error::other)?
        .saturating_add(1);
    std::io::Read::read_to_end(&mut std::io::Read::take(open_read(path)?, enough), &mut old)?;
    if old == contents {
        return Ok(());
    }
    let mut f = open_own(OpenOptions::new().write(true), path)?;
    f.write_all(contents)?;
    f.set_len(u64::try_from(contents.len()).map_err(io::Error::other)?)?;
    Ok(())
}

fn open_own(opts: &mut OpenOptions, path: &Path) -> io::Result<File> {
    // O_NONBLOCK: opening a FIFO without a peer would wait for one.
    let f = opts
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            match e.raw_os_error() {
                Some(libc::ELOOP) => io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "it is a symbolic link; weft does not follow one there",
                ),
                // A FIFO without a reader, opened to write.
                Some(libc::ENXIO) => {
                    io::Error::new(io::ErrorKind::InvalidInput, "it is not a regular file")
                }
                _ => e,
            }
        })?;
    let md = f.metadata()?;
    if !md.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "it is not a regular file",
        ));
    }
    if md.nlink() != 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "it has other hard links; weft does not write to a file shared with another name",
        ));
    }
    // Back to blocking: the descriptor becomes a command's stdout and stderr.
    let flags = nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_GETFL).map_err(io::Error::from)?;
    let flags = nix::fcntl::OFlag::from_bits_truncate(flags) & !nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_SETFL(flags)).map_err(io::Error::from)?;
    Ok(f)
}

fn random_suffix() -> io::Result<String> {
    let mut b = [0u8; 8];
    getrandom::getrandom(&mut b).map_err(|e| io::Error::other(format!("random bytes: {e}")))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Replaces `path` with a file holding `contents` and `mode`: written to a fresh file beside
/// it, then renamed over it, so a symlink planted at `path` is replaced, never followed, and
/// readers never see a half-written file.
pub fn replace(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let tmp = path.with_file_name(format!(".{}.{}", name.to_string_lossy(), random_suffix()?));
    let res = create_new(&tmp, mode)
        .and_then(|mut f| f.write_all(contents))
        .and_then(|()| std::fs::rename(&tmp, path));
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// How many symlinks among the ancestors of a directory are followed before giving up (as
/// the kernel's `ELOOP` limit).
const MAX_SYMLINKS: usize = 40;

/// Makes way for a socket the agent binds at `path` (the caller holds the agent lock, so no
/// live agent uses it): whatever is there, left by a dead agent or planted, is removed and
/// never followed; a directory is refused.
pub fn clear_socket_path(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_dir() => Err(io::Error::other(format!(
            "{} is a directory",
            path.display()
        ))),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Makes `dir` exist as a directory only root can enter, in a place no other user controls.
///
/// weft runs as root and is often pointed at paths under directories other users can write
/// to (`/tmp`). Every ancestor of `dir` must belong to root (or to weft's own uid) and must
/// not be writable by its group or others, unless it is sticky (like `/tmp`, where nobody
/// can rename or remove another user's entry: the next component must then be root's, which
/// every component must be anyway). A symlink among the ancestors is followed only if root
/// owns it (`/var/run -> /run`); `dir` itself must not be a symlink. Missing directories are
/// created 0700. `dir` must not be a shared sticky directory such as `/tmp`; wider modes are
/// narrowed to 0700. Refused with an error naming the component and why; nothing is
/// changed then.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    let real = walk_trusted(dir, true)?.ok_or_else(|| io::Error::other("not created"))?;
    let md = std::fs::symlink_metadata(&real)?;
    if md.mode() & 0o1000 != 0 {
        return Err(refused(format!(
            "{} is a shared (sticky) directory; use a directory of weft's own inside it",
            real.display()
        )));
    }
    if md.mode() & 0o077 != 0 {
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// The checks of [`private_dir`] alone, creating and changing nothing: the part of `dir`
/// that exists must pass them (a missing part would be created by root). For several
/// directories checked before any is made.
pub fn check_private_dir(dir: &Path) -> io::Result<()> {
    match walk_trusted(dir, false)? {
        Some(real) if std::fs::symlink_metadata(&real)?.mode() & 0o1000 != 0 => {
            Err(refused(format!(
                "{} is a shared (sticky) directory; use a directory of weft's own inside it",
                real.display()
            )))
        }
        _ => Ok(()),
    }
}

fn refused(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, why)
}

/// Walks `dir` from `/`, checking every component as [`private_dir`] says and, with
/// `create`, creating the missing ones (0700); returns the real path of `dir`, an existing
/// directory of ours (`None` if it is missing and not `create`d).
fn walk_trusted(dir: &Path, create: bool) -> io::Result<Option<PathBuf>> {
    let me = nix::unistd::geteuid().as_raw();
    let ours = |uid: u32| uid == 0 || uid == me;
    // What is left to walk, front first; a followed symlink puts its target in front.
    let mut todo = std::collections::VecDeque::new();
    push_front(&mut todo, &std::path::absolute(dir)?);
    let mut links = 0;
    let mut cur = PathBuf::from("/");
    let root = std::fs::symlink_metadata(&cur)?;
    check_ancestor(&cur, &root, ours)?;
    while let Some(step) = todo.pop_front() {
        let name = match step {
            Step::Root => {
                cur = PathBuf::from("/");
                continue;
            }
            // `cur` is a real path of checked directories: its parent is one of them.
            Step::Parent => {
                cur.pop();
                continue;
            }
            Step::Name(n) => n,
        };
        let next = cur.join(name);
        let leaf = todo.is_empty();
        let md = match std::fs::symlink_metadata(&next) {
            Ok(md) => md,
            Err(e) if e.kind() == io::ErrorKind::NotFound && !create => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Not recursive: each new directory is made in one just checked.
                match std::fs::DirBuilder::new().mode(0o700).create(&next) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e),
                }
                std::fs::symlink_metadata(&next)?
            }
            Err(e) => return Err(e),
        };
        if md.file_type().is_symlink() {
            if leaf {
                return Err(refused(format!(
                    "{} is a symlink: weft does not use a symlink as its directory (whoever made it chose where weft's files go); give the directory itself",
                    next.display()
                )));
            }
            if !ours(md.uid()) {
                return Err(refused(format!(
                    "{} is a symlink owned by uid {}, not by root: its owner chose where it leads; give a path without it",
                    next.display(),
                    md.uid()
                )));
            }
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(io::Error::other(format!(
                    "{}: too many levels of symbolic links",
                    dir.display()
                )));
            }
            push_front(&mut todo, &std::fs::read_link(&next)?);
            continue;
        }
        if !md.is_dir() {
            return Err(refused(format!("{} is not a directory", next.display())));
        }
        if !ours(md.uid()) {
            return Err(refused(if leaf {
                format!(
                    "{} belongs to uid {}, not to uid {me}: another user could change weft's files in it; use a directory of your own",
                    next.display(),
                    md.uid()
                )
            } else {
                format!(
                    "{} belongs to uid {}, not to uid {me}: its owner could replace what lies below it; use a directory only root controls",
                    next.display(),
                    md.uid()
                )
            }));
        }
        if !leaf {
            check_ancestor(&next, &md, ours)?;
        }
        cur = next;
    }
    Ok(Some(cur))
}

/// One step of a walk from `/`.
enum Step {
    /// Back to `/` (an absolute symlink's target).
    Root,
    /// `..`.
    Parent,
    /// Into this entry.
    Name(std::ffi::OsString),
}

/// Puts the steps of `path` in front of `todo`.
fn push_front(todo: &mut std::collections::VecDeque<Step>, path: &Path) {
    use std::path::Component;
    for c in path.components().rev() {
        match c {
            Component::RootDir => todo.push_front(Step::Root),
            Component::ParentDir => todo.push_front(Step::Parent),
            Component::Normal(n) => todo.push_front(Step::Name(n.to_os_string())),
            Component::Prefix(_) | Component::CurDir => {}
        }
    }
}

/// An ancestor must be ours (checked by the caller for all but `/`) and writable by nobody
/// else, unless it is sticky.
fn check_ancestor(
    path: &Path,
    md: &std::fs::Metadata,
    ours: impl Fn(u32) -> bool,
) -> io::Result<()> {
    if !ours(md.uid()) {
        return Err(refused(format!(
            "{} belongs to uid {}, not to root: its owner could replace what lies below it",
            path.display(),
            md.uid()
        )));
    }
    if md.mode() & 0o022 != 0 && md.mode() & 0o1000 == 0 {
        return Err(refused(format!(
            "{} is writable by its group or others (mode {:04o}) and not sticky: they could replace what lies below it; use a directory only root can write to",
            path.display(),
            md.mode() & 0o7777
        )));
    }
    Ok(())
}

/// Takes group and other permissions away from an existing file (a no-op if it is absent).
pub fn make_private(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(md) if md.is_file() && md.mode() & 0o077 != 0 => {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(md.mode() & 0o700))
        }
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// A new directory with an unpredictable name under the system's temporary directory,
/// mode 0700 (`mkdtemp`).
pub fn private_temp_dir(prefix: &str) -> io::Result<PathBuf> {
    // A fresh random name created with mkdir (which fails on anything existing, symlinks
    // included), retried on the unlikely collision.
    for _ in 0..16 {
        let dir = std::env::temp_dir().join(format!("{prefix}{}", random_suffix()?));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "no free temporary directory name",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overwrite_keeps_the_inode_and_refuses_links() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("resolv.conf");
        std::fs::write(&f, "nameserver 9.9.9.9\nsearch a-long-search-domain\n").unwrap();
        let ino = std::fs::metadata(&f).unwrap().ino();
        overwrite(&f, b"nameserver 10.1.0.1\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&f).unwrap(),
            "nameserver 10.1.0.1\n"
        );
        assert_eq!(std::fs::metadata(&f).unwrap().ino(), ino);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        assert!(overwrite(&link, b"x").is_err());
        assert_eq!(
            overwrite(&dir.path().join("absent"), b"x").map_err(|e| e.kind()),
            Err(io::ErrorKind::NotFound)
        );
        assert_eq!(
            std::fs::read_to_string(&f).unwrap(),
            "nameserver 10.1.0.1\n"
        );
    }

    #[test]
    fn overwrite_reads_no_more_of_a_huge_file_than_it_compares() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("resolv.conf");
        // A sandbox's root filled its bind-mounted copy (sparse here: 4 GiB of zeros).
        let big = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&f)
            .unwrap();
        big.set_len(4 << 30).unwrap();
        drop(big);
        let t = std::time::Instant::now();
        overwrite(&f, b"nameserver 10.1.0.1\n").unwrap();
        assert!(
            t.elapsed() < std::time::Duration::from_secs(1),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(std::fs::read(&f).unwrap(), b"nameserver 10.1.0.1\n");
        // The same contents followed by more: not taken for unchanged.
        std::fs::write(&f, "nameserver 10.1.0.1\nnameserver 6.6.6.6\n").unwrap();
        overwrite(&f, b"nameserver 10.1.0.1\n").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"nameserver 10.1.0.1\n");
    }

    #[test]
    fn create_new_refuses_symlinks_and_existing_files() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        assert!(create_new(&link, 0o600).is_err());
        assert!(create_new(&victim, 0o600).is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        let f = dir.path().join("new");
        create_new(&f, 0o644).unwrap();
        let mode = std::fs::metadata(&f).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o644);
    }

    #[test]
    fn open_append_takes_only_a_regular_file_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let e = open_append(&link).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        let hard = dir.path().join("hard");
        std::fs::hard_link(&victim, &hard).unwrap();
        let e = open_append(&hard).unwrap_err();
        assert!(e.to_string().contains("hard links"), "{e}");
        assert!(open_read(&hard).is_err());
        // A FIFO without a reader or writer: refused at once, not waited on.
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let e = open_read(&fifo).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        // Writing O_NONBLOCK to a FIFO without a reader fails at open (ENXIO).
        let e = open_append(&fifo).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        std::fs::remove_file(&hard).unwrap();
        let mut f = open_append(&victim).unwrap();
        f.write_all(b"+").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep+");
    }

    #[test]
    fn replace_swaps_a_planted_symlink_instead_of_following_it() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let target = dir.path().join("hosts");
        std::os::unix::fs::symlink(&victim, &target).unwrap();
        replace(&target, b"new", 0o644).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        let md = std::fs::symlink_metadata(&target).unwrap();
        assert!(md.is_file());
        assert_eq!(md.mode() & 0o777, 0o644);
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
        // Nothing else left beside it.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn private_dir_follows_our_symlinks_on_the_way_but_not_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o755)).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = private_dir(&link).unwrap_err();
        assert!(err.to_string().contains("is a symlink"), "{err}");
        assert_eq!(std::fs::metadata(&real).unwrap().mode() & 0o777, 0o755);
        // Relative targets and `..` too.
        let rel = dir.path().join("rel");
        std::os::unix::fs::symlink("real/../real", &rel).unwrap();
        private_dir(&rel.join("state").join("logs")).unwrap();
        let made = real.join("state").join("logs");
        assert_eq!(std::fs::metadata(&made).unwrap().mode() & 0o777, 0o700);
        private_dir(
            &dir.path()
                .join("real")
                .join("..")
                .join("real")
                .join("state"),
        )
        .unwrap();
    }

    #[test]
    fn private_dir_refuses_writable_ancestors_and_symlink_loops() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = private_dir(&shared.join("state")).unwrap_err();
        assert!(
            err.to_string().contains("writable by its group or others"),
            "{err}"
        );
        assert!(!shared.join("state").exists());
        // Sticky: allowed.
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        private_dir(&shared.join("state")).unwrap();
        let err = private_dir(&shared).unwrap_err();
        assert!(err.to_string().contains("sticky"), "{err}");
        std::os::unix::fs::symlink("b", dir.path().join("a")).unwrap();
        std::os::unix::fs::symlink("a", dir.path().join("b")).unwrap();
        let err = private_dir(&dir.path().join("a").join("state")).unwrap_err();
        assert!(err.to_string().contains("too many levels"), "{err}");
    }

    #[test]
    fn check_private_dir_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let wide = dir.path().join("wide");
        std::fs::create_dir(&wide).unwrap();
        std::fs::set_permissions(&wide, std::fs::Permissions::from_mode(0o755)).unwrap();
        check_private_dir(&wide.join("a").join("b")).unwrap();
        check_private_dir(&wide).unwrap();
        assert!(!wide.join("a").exists());
        assert_eq!(std::fs::metadata(&wide).unwrap().mode() & 0o777, 0o755);
        std::os::unix::fs::symlink(&wide, dir.path().join("link")).unwrap();
        assert!(check_private_dir(&dir.path().join("link")).is_err());
    }

    #[test]
    fn private_temp_dirs_are_fresh_and_private() {
        let a = private_temp_dir("weft-unit-").unwrap();
        let b = private_temp_dir("weft-unit-").unwrap();
        assert_ne!(a, b);
        assert_eq!(std::fs::metadata(&a).unwrap().mode() & 0o777, 0o700);
        std::fs::remove_dir(&a).unwrap();
        std::fs::remove_dir(&b).unwrap();
    }
}
