//! `image optimize IMAGE -- CMD…`: mount the image lazily, run the command in a chroot of the
//! mount, read back which files it read (the daemon's `mount/trace`), and push the image again
//! with those files first in their layers and marked for prefetching.

use anyhow::{bail, Context as _};
use std::collections::HashMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::time::Duration;

use super::args::OptimizeArgs;
use super::client::ApiClient;
use super::image::{image_cid, reporter};
use super::mount::absolute;
use crate::image::estargz::build::BuildOptions;
use crate::image::location::{Dest, Source as Loc};
use crate::image::oci::Platform;
use crate::image::{pull, push, source};

/// Host directories bound into the mounted rootfs while the command runs (when the image has
/// the directory).
const BINDS: [&str; 2] = ["/dev", "/proc"];

pub async fn optimize(api: &ApiClient, a: OptimizeArgs) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("image optimize runs the command in a chroot of the mounted image: run it as root");
    }
    let root = image_cid(api, &a.image).await?;
    let platforms = match &a.platform {
        Some(p) => vec![Platform::parse(p).map_err(|e| anyhow::anyhow!(e))?],
        None => Vec::new(),
    };
    let work = tempfile::Builder::new()
        .prefix("cidfs-optimize-")
        .tempdir()
        .context("creating a work directory (set TMPDIR to one under mount.allowed_roots)")?;
    let rootfs = work.path().join("rootfs");
    std::fs::create_dir(&rootfs)?;
    let dir = absolute(&rootfs)?;
    let mut params = vec![("arg", root.to_string()), ("arg", dir.clone())];
    params.extend(a.platform.iter().map(|p| ("platform", p.clone())));
    api.json("mount", &params).await?;
    let traced = run_traced(api, &rootfs, &dir, &a).await;
    let unmounted = api.json("umount", &[("arg", dir)]).await;
    let (files, status) = traced?;
    unmounted?;
    eprintln!(
        "{} read {} files ({status})",
        a.cmd.join(" "),
        files.values().map(Vec::len).sum::<usize>()
    );
    if files.is_empty() {
        bail!("the command read no file of the image: nothing to prefetch");
    }

    // the image as it is, into a layout, and back with the traced files first
    let layout = work.path().join("layout");
    let resolved = pull::resolve(api, root, &platforms).await?;
    let rep = reporter(a.quiet);
    let dest = Dest::Oci {
        dir: layout.clone(),
        tag: Some("optimize".into()),
    };
    pull::pull(api, &resolved, &dest, rep.as_ref()).await?;
    let src = Loc::Oci {
        dir: layout,
        tag: Some("optimize".into()),
    };
    let source = source::Source::open(&src, &Default::default(), work.path()).await?;
    let opts = push::PushOptions {
        estargz: Some(BuildOptions {
            chunk_size: a.chunk_size,
            prefetch: Vec::new(),
            level: a.compression_level,
            threads: 0,
        }),
        dag: a.dag_layout,
        reconvert: true,
        layer_prefetch: files,
        ..Default::default()
    };
    let pushed = push::push(&source, api, &opts, work.path(), rep.as_ref()).await?;
    println!("{}", pushed.root);
    Ok(())
}

/// Runs the command in `rootfs` (the mount at `dir`) with the host's [`BINDS`]; returns the
/// files it read, by layer digest, in the order of their first read, and how it ended.
async fn run_traced(
    api: &ApiClient,
    rootfs: &Path,
    dir: &str,
    a: &OptimizeArgs,
) -> anyhow::Result<(HashMap<String, Vec<String>>, String)> {
    let mut bound = Vec::new();
    for host in BINDS {
        let at = rootfs.join(host.trim_start_matches('/'));
        if at.is_dir() {
            bind(Path::new(host), &at)?;
            bound.push(at);
        }
    }
    let ran = run(rootfs, &a.cmd, Duration::from_secs(a.timeout)).await;
    for at in bound.iter().rev() {
        let _ = detach(at);
    }
    let status = ran?;
    let v = api.json("mount/trace", &[("arg", dir.to_string())]).await?;
    let mut files: HashMap<String, Vec<String>> = HashMap::new();
    for f in v["Files"].as_array().into_iter().flatten() {
        let (Some(layer), Some(path)) = (f["Layer"].as_str(), f["Path"].as_str()) else {
            continue;
        };
        files
            .entry(layer.to_string())
            .or_default()
            .push(path.to_string());
    }
    Ok((files, status))
}

/// Runs `cmd` chrooted in `rootfs` (its output on our stderr), killed after `timeout`; says how
/// it ended. A command that
/// fails still leaves a useful trace, so only failing to start it is an error.
async fn run(rootfs: &Path, cmd: &[String], timeout: Duration) -> anyhow::Result<String> {
    let mut child = tokio::process::Command::new("chroot")
        .arg(rootfs)
        .args(cmd)
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .stdin(std::process::Stdio::null())
        // stdout is the new image's CID
        .stdout(std::io::stderr())
        .kill_on_drop(true)
        .spawn()
        .context("starting chroot")?;
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => Ok(format!("it exited with {}", status?)),
        Err(_) => {
            let _ = child.kill().await;
            Ok(format!("stopped after {} s", timeout.as_secs()))
        }
    }
}

fn c_path(p: &Path) -> anyhow::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).with_context(|| format!("bad path {}", p.display()))
}

/// Binds `host` at `at` (read-only would need a second remount; the command is the caller's
/// own, run as root anyway).
fn bind(host: &Path, at: &Path) -> anyhow::Result<()> {
    let (src, dst) = (c_path(host)?, c_path(at)?);
    // SAFETY: both are valid NUL-terminated paths that outlive the call; a bind mount ignores
    // the type and data arguments.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("binding {} at {}", host.display(), at.display()));
    }
    Ok(())
}

fn detach(at: &Path) -> anyhow::Result<()> {
    let c = c_path(at)?;
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(())
}
