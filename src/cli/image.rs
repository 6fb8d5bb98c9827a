//! `image push | pull | inspect`: the image module driven over the daemon's API, with a
//! progress bar per blob on a terminal.

use anyhow::{anyhow, Context};
use cid::Cid;
use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::Path;

use super::args::{ImageCommand, InspectArgs, PullArgs, PushArgs};
use super::client::ApiClient;
use crate::image::blob_store::BlobStore;
use crate::image::estargz::build::BuildOptions;
use crate::image::oci::Platform;
use crate::image::progress::{Bar, Reporter, Silent};
use crate::image::{inspect, location, pull, push, source};

pub async fn run(api: &ApiClient, cmd: ImageCommand) -> anyhow::Result<()> {
    match cmd {
        ImageCommand::Push(a) => push_cmd(api, a).await,
        ImageCommand::Pull(a) => pull_cmd(api, a).await,
        ImageCommand::Inspect(a) => inspect_cmd(api, a).await,
        ImageCommand::Optimize(a) => super::optimize::optimize(api, a).await,
        ImageCommand::Ls { holders, json } => ls_cmd(api, holders, json).await,
        ImageCommand::Tag { image, name } => {
            let v = api
                .json("image/tag", &[("arg", image), ("arg", name)])
                .await?;
            println!("{}", v["Cid"].as_str().unwrap_or_default());
            Ok(())
        }
        ImageCommand::Rm { name, keep } => {
            let v = api
                .json("image/rm", &[("arg", name), ("keep", keep.to_string())])
                .await?;
            if !keep {
                eprintln!(
                    "{} pins of the image removed here; `cidfs repo gc` frees their blocks",
                    v["Unpinned"].as_u64().unwrap_or_default()
                );
            }
            Ok(())
        }
        ImageCommand::History { name } => {
            let v = api.json("image/history", &[("arg", name)]).await?;
            for n in v["History"].as_array().cloned().unwrap_or_default() {
                println!(
                    "{}  {}  {}",
                    n["PushedAt"],
                    n["Cid"].as_str().unwrap_or_default(),
                    n["PushedDigest"].as_str().unwrap_or_default()
                );
            }
            Ok(())
        }
    }
}

fn platforms(list: &[String]) -> anyhow::Result<Vec<Platform>> {
    list.iter()
        .map(|p| Platform::parse(p).map_err(|e| anyhow!(e)))
        .collect()
}

pub(super) fn reporter(quiet: bool) -> Box<dyn Reporter> {
    if quiet || !std::io::stderr().is_terminal() {
        Box::new(Silent)
    } else {
        Box::new(Bars(MultiProgress::new()))
    }
}

async fn push_cmd(api: &ApiClient, a: PushArgs) -> anyhow::Result<()> {
    let src: location::Source = a.source.parse()?;
    let estargz = a.estargz.then(|| BuildOptions {
        chunk_size: a.chunk_size,
        prefetch: a.prefetch.clone(),
        level: a.compression_level,
        threads: 0,
    });
    let opts = push::PushOptions {
        estargz,
        platforms: platforms(&a.platform)?,
        dag: a.dag_layout,
        ..Default::default()
    };
    let reg = source::RegistryOptions {
        insecure: a.insecure,
        creds: a.creds.clone(),
        authfile: a.authfile.clone(),
    };
    let work = tempfile::Builder::new()
        .prefix("cidfs-push-")
        .tempdir()
        .context("creating a work directory (set TMPDIR to choose where)")?;
    let source = source::Source::open(&src, &reg, work.path()).await?;
    let rep = reporter(a.quiet);
    let pushed = push::push(&source, api, &opts, work.path(), rep.as_ref()).await?;
    println!("{}", pushed.root);
    Ok(())
}

/// The image CID `text` names: a CID reference, or a name the daemon looks up.
pub(super) async fn image_cid(api: &ApiClient, text: &str) -> anyhow::Result<Cid> {
    match crate::cidref::parse_image(text)? {
        crate::cidref::ImageRef::Cid(cid) => Ok(cid),
        crate::cidref::ImageRef::Named { .. } => {
            let v = api
                .json("image/resolve", &[("arg", text.to_string())])
                .await?;
            let cid = v["Cid"].as_str().unwrap_or_default();
            Cid::try_from(cid).map_err(|e| anyhow!("daemon answered a bad CID {cid:?}: {e}"))
        }
    }
}

/// A peer id as `image ls` shows it: `self`, `-` for none, else its last 8 characters (a
/// peer's record: not trusted to be ASCII, so cut by characters).
fn short_peer(id: &str, me: &str) -> String {
    match id {
        "" => "-".to_string(),
        id if id == me => "self".to_string(),
        id => {
            let tail: String = id
                .chars()
                .skip(id.chars().count().saturating_sub(8))
                .collect();
            format!("…{tail}")
        }
    }
}

async fn ls_cmd(api: &ApiClient, list_holders: bool, json: bool) -> anyhow::Result<()> {
    let v = api.json("image/ls", &[]).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let names = v["Names"].as_array().cloned().unwrap_or_default();
    if names.is_empty() {
        eprintln!("no names: push an image to the registry endpoint (docker://HOST:PORT/NAME:TAG)");
        return Ok(());
    }
    let me = v["Self"].as_str().unwrap_or_default();
    let short = |id: &str| short_peer(id, me);
    println!(
        "{:<32} {:<61} {:>10} {:>6}  {:<11} PUSHED DIGEST",
        "NAME", "CID", "SIZE", "COPIES", "PUSHED BY"
    );
    for n in names {
        let holders: Vec<&str> = n["Holders"]
            .as_array()
            .map(|h| h.iter().filter_map(|p| p.as_str()).collect())
            .unwrap_or_default();
        let size = n["Size"]
            .as_u64()
            .map_or("-".to_string(), |s| indicatif::HumanBytes(s).to_string());
        println!(
            "{:<32} {:<61} {:>10} {:>6}  {:<11} {}",
            n["Name"].as_str().unwrap_or_default(),
            n["Cid"].as_str().unwrap_or_default(),
            size,
            holders.len(),
            short(n["PushedBy"].as_str().unwrap_or_default()),
            n["PushedDigest"].as_str().unwrap_or_default()
        );
        if list_holders {
            let who = |h: &str| {
                if h == me {
                    "self".to_string()
                } else {
                    h.to_string()
                }
            };
            for h in holders {
                println!("    held by {}", who(h));
            }
            for (h, pinned) in n["PartialHolders"].as_object().into_iter().flatten() {
                let pinned = indicatif::HumanBytes(pinned.as_u64().unwrap_or(0));
                println!(
                    "    held partly by {} ({pinned} of its blobs pinned)",
                    who(h)
                );
            }
        }
    }
    Ok(())
}

async fn pull_cmd(api: &ApiClient, a: PullArgs) -> anyhow::Result<()> {
    let root = image_cid(api, &a.image).await?;
    let dest: location::Dest = a.to.parse()?;
    let resolved = pull::resolve(api, root, &platforms(&a.platform)?).await?;
    let rep = reporter(a.quiet);
    pull::pull(api, &resolved, &dest, rep.as_ref()).await
}

async fn inspect_cmd(api: &ApiClient, a: InspectArgs) -> anyhow::Result<()> {
    let root = image_cid(api, &a.image).await?;
    let resolved = pull::resolve(api, root, &[]).await?;
    let report = inspect::inspect(api, &resolved).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", inspect::render(&report));
    }
    Ok(())
}

impl ApiClient {
    /// Adds one file part, its leaves planned by `leaf_ends` when given.
    async fn add_part(
        &self,
        part: reqwest::multipart::Part,
        leaf_ends: Option<Vec<u64>>,
    ) -> anyhow::Result<Cid> {
        let mut form = reqwest::multipart::Form::new();
        if let Some(ends) = leaf_ends {
            form = form.text(crate::api::LEAF_ENDS_PART, serde_json::to_string(&ends)?);
        }
        let form = form.part("file", part.file_name("file"));
        let params = [
            ("cid-version", "1".to_string()),
            ("pin", "false".to_string()),
        ];
        let text = self.post("add", &params, Some(form)).await?.text().await?;
        let first = text
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default();
        let v: serde_json::Value =
            serde_json::from_str(first).context("daemon sent invalid JSON")?;
        let hash = v["Hash"].as_str().unwrap_or_default();
        Cid::try_from(hash).map_err(|e| anyhow!("daemon answered a bad CID {hash:?}: {e}"))
    }
}

impl BlobStore for ApiClient {
    async fn add_file(
        &self,
        path: &Path,
        leaf_ends: Option<Vec<u64>>,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> anyhow::Result<Cid> {
        // the body stream must be 'static; progress is reported as the daemon answers instead
        let (stream, len) = crate::image::blob_file::read_stream(path).await?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
        let stream = stream.inspect(move |c| {
            if let Ok(c) = c {
                let _ = tx.send(c.len() as u64);
            }
        });
        let part =
            reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(stream), len);
        let add = self.add_part(part, leaf_ends);
        tokio::pin!(add);
        loop {
            tokio::select! {
                r = &mut add => return r,
                Some(n) = rx.recv() => progress(n),
            }
        }
    }

    async fn add_bytes(&self, bytes: Vec<u8>) -> anyhow::Result<Cid> {
        self.add_part(reqwest::multipart::Part::bytes(bytes), None)
            .await
    }

    async fn pin_all(&self, cids: &[Cid]) -> anyhow::Result<()> {
        let args: Vec<(&str, String)> = cids.iter().map(|c| ("arg", c.to_string())).collect();
        self.json("pin/add", &args).await.map(|_| ())
    }

    async fn cat_bytes(&self, cid: &Cid, offset: u64, len: Option<u64>) -> anyhow::Result<Vec<u8>> {
        let mut params = vec![("arg", cid.to_string()), ("offset", offset.to_string())];
        if let Some(l) = len {
            params.push(("length", l.to_string()));
        }
        let resp = self.post("cat", &params, None).await?;
        let bytes = resp
            .bytes()
            .await
            .context("the transfer broke off (see the daemon's log)")?;
        Ok(bytes.to_vec())
    }

    async fn cat_to_file(
        &self,
        cid: &Cid,
        path: &Path,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> anyhow::Result<(String, u64)> {
        let resp = self.post("cat", &[("arg", cid.to_string())], None).await?;
        let body = resp
            .bytes_stream()
            .map(|c| c.context("the transfer broke off (see the daemon's log)"));
        // the daemon fetching the blob costs more CPU than hashing and writing it here: the writer
        // takes only what the daemon leaves (README, Performance)
        use crate::image::blob_file::{write_hashed, WriterCpu};
        write_hashed(body, path, WriterCpu::Spare, progress).await
    }
}

/// One indicatif bar per blob.
struct Bars(MultiProgress);

impl Reporter for Bars {
    fn start(&self, label: &str, total: u64) -> Box<dyn Bar> {
        let pb = if total > 0 {
            let pb = self.0.add(ProgressBar::new(total));
            if let Ok(s) = ProgressStyle::with_template(
                "{prefix:32} {msg:10} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
            ) {
                pb.set_style(s);
            }
            pb
        } else {
            let pb = self.0.add(ProgressBar::new_spinner());
            if let Ok(s) = ProgressStyle::with_template("{prefix:32} {msg:10} {spinner} {elapsed}")
            {
                pb.set_style(s);
            }
            pb.enable_steady_tick(std::time::Duration::from_millis(200));
            pb
        };
        pb.set_prefix(label.to_string());
        Box::new(IndicatifBar(pb))
    }
}

struct IndicatifBar(ProgressBar);

impl Bar for IndicatifBar {
    fn inc(&self, n: u64) {
        self.0.inc(n)
    }
    fn set_message(&self, msg: &str) {
        self.0.set_message(msg.to_string())
    }
    fn finish(&self) {
        self.0.finish_and_clear()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn peer_ids_are_shortened_by_characters() {
        assert_eq!(super::short_peer("", "me"), "-");
        assert_eq!(super::short_peer("me", "me"), "self");
        assert_eq!(super::short_peer("12D3KooWabcdefgh", "me"), "…abcdefgh");
        // a hostile origin with multi-byte characters does not panic
        assert_eq!(super::short_peer("ééééééééé", "me"), "…éééééééé");
    }
}
