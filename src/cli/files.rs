//! `add`, `cat` and `block`: moving bytes between files or stdio and the daemon.

use anyhow::{bail, Context};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

use super::args::{AddArgs, BlockCommand, CatArgs};
use super::client::ApiClient;

/// A progress bar of `len` steps drawn with `template`, when both stdout and stderr are
/// terminals (piped output stays clean).
pub(super) fn progress(len: u64, template: &str) -> Option<ProgressBar> {
    if !std::io::stdout().is_terminal() || !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(template) {
        pb.set_style(style);
    }
    Some(pb)
}

const BYTES_BAR: &str = "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}";

pub async fn add(api: &ApiClient, a: &AddArgs) -> anyhow::Result<()> {
    let part = if a.file.as_os_str() == "-" {
        // streamed as it comes (no length: the upload is chunked), never held whole
        let stdin = tokio_util::io::ReaderStream::with_capacity(tokio::io::stdin(), 1 << 20);
        reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(stdin)).file_name("stdin")
    } else {
        let (stream, len) = crate::image::blob_file::read_stream(&a.file).await?;
        let pb = progress(len, BYTES_BAR);
        let stream = stream.inspect(move |c| {
            if let (Some(pb), Ok(c)) = (&pb, c) {
                pb.inc(c.len() as u64);
            }
        });
        let name = a
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(stream), len)
            .file_name(name)
    };
    let form = reqwest::multipart::Form::new().part("file", part);
    let mut params = vec![("pin", (!a.no_pin).to_string())];
    match &a.profile {
        Some(p) => params.push(("profile", p.clone())),
        None => params.push(("cid-version", a.cid_version.to_string())),
    }
    for v in api.ndjson("add", &params, Some(form)).await? {
        let hash = v["Hash"].as_str().unwrap_or_default();
        if a.quiet {
            println!("{hash}");
        } else {
            println!("added {hash} {}", v["Name"].as_str().unwrap_or_default());
        }
    }
    Ok(())
}

/// `add --only-hash`: computes the CID locally; needs no daemon and stores nothing.
pub async fn add_only_hash(a: &AddArgs) -> anyhow::Result<()> {
    let input: Box<dyn tokio::io::AsyncRead + Unpin + Send> = if a.file.as_os_str() == "-" {
        Box::new(tokio::io::stdin())
    } else {
        Box::new(
            tokio::fs::File::open(&a.file)
                .await
                .with_context(|| format!("opening {}", a.file.display()))?,
        )
    };
    // the node's one add path, over a throwaway store it never writes to
    let hasher = crate::blockservice::BlockService::new(
        std::sync::Arc::new(crate::blockstore::MemStore::default()),
        None,
    );
    let input = tokio_util::io::ReaderStream::with_capacity(input, 1 << 20);
    let adder = crate::unixfs::Adder::new(&a.options())?;
    let root = crate::unixfs::io::add_stream(&hasher, adder, input, false, &|_| {})
        .await?
        .root;
    if a.quiet {
        println!("{root}");
    } else {
        println!("added {root} {}", a.file.display());
    }
    Ok(())
}

pub async fn cat(api: &ApiClient, a: &CatArgs) -> anyhow::Result<()> {
    let cid = crate::cidref::parse(&a.cid)?;
    let mut params = vec![("arg", cid.to_string()), ("offset", a.offset.to_string())];
    if let Some(l) = a.length {
        params.push(("length", l.to_string()));
    }
    let resp = api.post("cat", &params, None).await?;
    let expected: Option<u64> = resp
        .headers()
        .get("X-Content-Length")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    use std::io::Write as _;
    let mut body = resp.bytes_stream();
    // straight to fd 1, where the pieces arrive (`cat` runs on one thread): tokio's stdout
    // copies every piece once more, and handing each piece to a writer thread of its own cost
    // a third of this process's CPU (83 against 55 ms for 256 MiB). A slow reader of the
    // output slows the transfer, as a pipe should.
    let mut out = super::Stdout(std::fs::File::from(
        std::os::fd::AsFd::as_fd(&std::io::stdout()).try_clone_to_owned()?,
    ));
    let mut written = 0u64;
    while let Some(piece) = body.next().await {
        let piece = piece.context("the transfer broke off (see the daemon's log)")?;
        out.write_all(&piece).context("writing standard output")?;
        written += piece.len() as u64;
    }
    out.flush().context("writing standard output")?;
    if let Some(n) = expected.filter(|n| *n != written) {
        bail!("short read: got {written} of {n} bytes");
    }
    Ok(())
}

pub async fn block(api: &ApiClient, cmd: BlockCommand) -> anyhow::Result<()> {
    match cmd {
        BlockCommand::Get { cid } => {
            let cid = crate::cidref::parse(&cid)?.to_string();
            let data = api
                .post("block/get", &[("arg", cid)], None)
                .await?
                .bytes()
                .await?;
            use std::io::Write as _;
            let mut out = super::Stdout(std::io::stdout().lock());
            out.write_all(&data)?;
            out.flush()?;
        }
        BlockCommand::Put { file, cid_codec } => {
            let data = tokio::fs::read(&file)
                .await
                .with_context(|| format!("reading {}", file.display()))?;
            let form = reqwest::multipart::Form::new().part(
                "file",
                reqwest::multipart::Part::bytes(data).file_name("block"),
            );
            let v: serde_json::Value = api
                .post("block/put", &[("cid-codec", cid_codec)], Some(form))
                .await?
                .json()
                .await?;
            println!("{}", v["Key"].as_str().unwrap_or_default());
        }
        BlockCommand::Stat { cid } => {
            let cid = crate::cidref::parse(&cid)?.to_string();
            let v = api.json("block/stat", &[("arg", cid)]).await?;
            println!(
                "Key: {}\nSize: {}",
                v["Key"].as_str().unwrap_or_default(),
                v["Size"]
            );
        }
    }
    Ok(())
}
