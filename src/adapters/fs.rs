//! Files and directories weft creates. weft runs as root, often in directories other users can
//! write to (`/tmp`) or could have prepared beforehand, so it never opens a file it creates
//! through a symlink and never reuses a file that already exists (`O_NOFOLLOW | O_EXCL`);
//! replaced files are written fresh and renamed into place; directories are private (0700)
//! and must belong to root.

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

/// Opens an existing file for appending without following a symlink.
pub fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
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

/// Makes `dir` exist as a directory only root can enter: created 0700 if missing; an existing
/// one must belong to root (anyone else could swap weft's files under it) and must not be a
/// shared sticky directory such as `/tmp`; wider modes are narrowed to 0700.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let md = std::fs::metadata(dir)?;
    let fail = |why: String| io::Error::new(io::ErrorKind::PermissionDenied, why);
    if !md.is_dir() {
        return Err(fail(format!("{} is not a directory", dir.display())));
    }
    let me = nix::unistd::geteuid().as_raw();
    if md.uid() != me {
        return Err(fail(format!(
            "{} belongs to uid {}, not to uid {me}: another user could change weft's files in it; use a directory of your own",
            dir.display(),
            md.uid()
        )));
    }
    if md.mode() & 0o1000 != 0 {
        return Err(fail(format!(
            "{} is a shared (sticky) directory; use a directory of weft's own inside it",
            dir.display()
        )));
    }
    if md.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
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
    fn private_temp_dirs_are_fresh_and_private() {
        let a = private_temp_dir("weft-unit-").unwrap();
        let b = private_temp_dir("weft-unit-").unwrap();
        assert_ne!(a, b);
        assert_eq!(std::fs::metadata(&a).unwrap().mode() & 0o777, 0o700);
        std::fs::remove_dir(&a).unwrap();
        std::fs::remove_dir(&b).unwrap();
    }
}
