//! `id`, `swarm`, `pin`, `repo`: small JSON commands, printed for people.

use super::args::{PinCommand, RepoCommand, SwarmCommand};
use super::client::ApiClient;

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
        RepoCommand::Gc => {
            let text = api.post("repo/gc", &[], None).await?.text().await?;
            let mut n = 0;
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let v: serde_json::Value = serde_json::from_str(line)?;
                println!("removed {}", v["Key"]["/"].as_str().unwrap_or_default());
                n += 1;
            }
            eprintln!("{n} blocks removed");
            return Ok(());
        }
        RepoCommand::Stat => api.json("repo/stat", &[]).await?,
        RepoCommand::Ls => {
            let text = api.post("refs/local", &[], None).await?.text().await?;
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let v: serde_json::Value = serde_json::from_str(line)?;
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
