//! `id`, `swarm`, `pin`, `repo`: small JSON commands, printed for people.

use super::args::{PinCommand, RepoCommand, SwarmCommand};
use super::client::ApiClient;
use indicatif::HumanBytes;

pub async fn id(api: &ApiClient) -> anyhow::Result<()> {
    let v = api.json("id", &[]).await?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

pub async fn swarm(api: &ApiClient, cmd: SwarmCommand) -> anyhow::Result<()> {
    match cmd {
        SwarmCommand::Peers => {
            let v = api.json("swarm/peers", &[]).await?;
            for p in v["Peers"].as_array().into_iter().flatten() {
                println!(
                    "{}/p2p/{}",
                    p["Addr"].as_str().unwrap_or_default(),
                    p["Peer"].as_str().unwrap_or_default()
                );
            }
        }
        SwarmCommand::Connect { addr } => {
            let v = api.json("swarm/connect", &[("arg", addr)]).await?;
            for s in v["Strings"].as_array().into_iter().flatten() {
                println!("{}", s.as_str().unwrap_or_default());
            }
        }
    }
    Ok(())
}

pub async fn pin(api: &ApiClient, cmd: PinCommand) -> anyhow::Result<()> {
    match cmd {
        PinCommand::Add { cid } => {
            let v = api.json("pin/add", &[("arg", cid)]).await?;
            for p in v["Pins"].as_array().into_iter().flatten() {
                println!("pinned {} recursively", p.as_str().unwrap_or_default());
            }
        }
        PinCommand::Ls => {
            let v = api.json("pin/ls", &[]).await?;
            for k in v["Keys"].as_object().into_iter().flatten().map(|(k, _)| k) {
                println!("{k} recursive");
            }
        }
        PinCommand::Rm { cid } => {
            let v = api.json("pin/rm", &[("arg", cid)]).await?;
            for p in v["Pins"].as_array().into_iter().flatten() {
                println!("unpinned {}", p.as_str().unwrap_or_default());
            }
        }
    }
    Ok(())
}

pub async fn repo(api: &ApiClient, cmd: RepoCommand) -> anyhow::Result<()> {
    let v = match cmd {
        RepoCommand::Gc { target, quiet } => {
            let params: Vec<(&str, String)> =
                target.iter().map(|t| ("target", t.to_string())).collect();
            let removed = api.ndjson("repo/gc", &params, None).await?;
            if !quiet {
                for v in &removed {
                    println!("removed {}", v["Key"]["/"].as_str().unwrap_or_default());
                }
            }
            let n = removed.len();
            let left = api.json("repo/stat", &[]).await?["BlockBytes"]
                .as_u64()
                .unwrap_or_default();
            eprintln!("{n} blocks removed; the store holds {}", HumanBytes(left));
            if let Some(t) = target.filter(|t| left > *t) {
                eprintln!(
                    "still above the target of {}: the rest is pinned (`cidfs pin ls`)",
                    HumanBytes(t)
                );
            }
            return Ok(());
        }
        RepoCommand::Verify { remove } => return verify(api, remove).await,
        RepoCommand::Stat => api.json("repo/stat", &[]).await?,
        RepoCommand::Ls => {
            for v in api.ndjson("refs/local", &[], None).await? {
                println!("{}", v["Ref"].as_str().unwrap_or_default());
            }
            return Ok(());
        }
    };
    if let Some(o) = v.as_object() {
        for (k, val) in o {
            println!(
                "{k}: {}",
                val.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| val.to_string())
            );
        }
    }
    Ok(())
}

/// `repo verify`: follows the daemon's NDJSON stream with a progress bar (on a terminal) and
/// fails when any block is corrupt.
async fn verify(api: &ApiClient, remove: bool) -> anyhow::Result<()> {
    let total = api.json("repo/stat", &[]).await?["NumObjects"]
        .as_u64()
        .unwrap_or_default();
    let bar = super::files::progress(total, "verifying {bar:40} {pos}/{len} blocks ({eta})");
    let mut resp = api
        .post("repo/verify", &[("remove", remove.to_string())], None)
        .await?;
    let (mut buf, mut corrupt, mut last) = (Vec::new(), 0u64, String::new());
    while let Some(chunk) = resp.chunk().await? {
        buf.extend_from_slice(&chunk);
        while let Some(end) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            let v: serde_json::Value = serde_json::from_slice(&line)?;
            if let Some(err) = v["Message"].as_str() {
                anyhow::bail!("verify failed: {err}");
            }
            let msg = v["Msg"].as_str().unwrap_or_default();
            let progress = v["Progress"].as_u64().unwrap_or_default();
            if msg.starts_with("block ") {
                corrupt += 1;
                match &bar {
                    Some(pb) => pb.println(msg),
                    None => println!("{msg}"),
                }
            } else if !msg.is_empty() {
                last = msg.to_string();
            }
            if let (Some(pb), true) = (&bar, progress > 0) {
                pb.set_position(progress);
            }
        }
    }
    if let Some(pb) = bar {
        pb.finish_and_clear();
    }
    if last.is_empty() {
        anyhow::bail!("the daemon ended the verify stream early");
    }
    println!("{last}");
    if corrupt > 0 {
        anyhow::bail!(
            "{corrupt} corrupt blocks{}",
            if remove {
                " removed: `cidfs pin add` fetches them again"
            } else {
                "; `cidfs repo verify --remove` deletes them so that peers can resupply them"
            }
        );
    }
    Ok(())
}
