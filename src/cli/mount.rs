//! `mount`, `umount`, `mounts`: the daemon does the mounting; these only ask it.

use anyhow::Context as _;
use std::path::Path;

use super::args::MountArgs;
use super::client::ApiClient;

/// The path as the daemon must see it: absolute (the daemon has another working directory).
pub(super) fn absolute(dir: &Path) -> anyhow::Result<String> {
    let abs = std::path::absolute(dir).with_context(|| format!("bad path {}", dir.display()))?;
    abs.to_str()
        .map(str::to_string)
        .with_context(|| format!("{} is not valid UTF-8", abs.display()))
}

pub async fn mount(api: &ApiClient, a: MountArgs) -> anyhow::Result<()> {
    let mut params = vec![("arg", a.image), ("arg", absolute(&a.dir)?)];
    if a.allow_other {
        params.push(("allow-other", "true".into()));
    }
    params.extend(a.platform.into_iter().map(|p| ("platform", p)));
    let v = api.json("mount", &params).await?;
    eprintln!(
        "mounted {} ({}, {} layers) at {}",
        v["Image"].as_str().unwrap_or_default(),
        v["Platform"].as_str().unwrap_or_default(),
        v["Layers"],
        v["Mountpoint"].as_str().unwrap_or_default()
    );
    Ok(())
}

pub async fn umount(api: &ApiClient, dir: &Path) -> anyhow::Result<()> {
    api.json("umount", &[("arg", absolute(dir)?)]).await?;
    Ok(())
}

pub async fn list(api: &ApiClient) -> anyhow::Result<()> {
    let v = api.json("mounts", &[]).await?;
    for m in v["Mounts"].as_array().into_iter().flatten() {
        println!(
            "{}\t{}\t{}",
            m["Mountpoint"].as_str().unwrap_or_default(),
            m["Image"].as_str().unwrap_or_default(),
            m["Platform"].as_str().unwrap_or_default()
        );
    }
    Ok(())
}
