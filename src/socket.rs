//! Unix sockets that only their owner can reach: the containerd snapshotter's and the API's.

use anyhow::Context as _;
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// Binds a Unix socket at `socket`, mode 0600. It is bound in a private (0700) directory, made
/// 0600 there, then moved into place, so it is never reachable with the umask's mode (finding
/// L5 of the security review: it was chmodded after bind, at its path). A socket left at the
/// path by an earlier daemon is replaced; any other file is not. `what` names the socket and
/// the setting behind it in errors.
pub fn bind_private(socket: &Path, what: &str) -> anyhow::Result<tokio::net::UnixListener> {
    if let Ok(m) = std::fs::symlink_metadata(socket) {
        anyhow::ensure!(
            m.file_type().is_socket(),
            "{} exists and is not a socket; refusing to replace it ({what})",
            socket.display()
        );
    }
    let parent = match socket.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let private = tempfile::Builder::new()
        .prefix(".cidfs-socket-")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a private directory in {}", parent.display()))?;
    let staged = private.path().join("s");
    let listener = tokio::net::UnixListener::bind(&staged)
        .with_context(|| format!("binding the socket {} ({what})", socket.display()))?;
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))?;
    // rename replaces a stale socket in one step
    std::fs::rename(&staged, socket)
        .with_context(|| format!("moving the socket to {} ({what})", socket.display()))?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt as _;

    #[tokio::test]
    async fn a_socket_is_the_owners_and_replaces_a_stale_one_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/api.sock");
        let first = bind_private(&path, "test").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        drop(first);
        // the socket of a daemon that is gone is replaced, and the new one answers
        let second = bind_private(&path, "test").unwrap();
        let client = tokio::net::UnixStream::connect(&path);
        let (accepted, connected) = tokio::join!(second.accept(), client);
        accepted.unwrap();
        connected.unwrap();
        // no private directory is left behind
        let left: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("api.sock")]);
        // a regular file is not replaced
        let file = dir.path().join("file");
        std::fs::write(&file, b"data").unwrap();
        let err = bind_private(&file, "test").unwrap_err();
        assert!(err.to_string().contains("not a socket"), "{err:#}");
        assert_eq!(std::fs::read(&file).unwrap(), b"data");
    }
}
