//! The command line: parse with clap ([`args`]), then run one subcommand. Every subcommand but
//! `init`, `daemon`, `keygen` and `add --only-hash` is a client of the daemon's API.

pub mod args;
mod client;
mod files;
mod image;
mod info;
mod init;
mod mount;
mod optimize;
mod stats;

use anyhow::Context;
use clap::Parser;
use std::process::ExitCode;

use crate::repo::Repo;
use args::{Cli, Command, LogFormat};
use client::ApiClient;

/// glibc serves allocations over 128 KiB (every 256 KiB block buffer, every 4 MiB `add` batch)
/// with a fresh `mmap` and unmaps them on free, so each block received, read or served
/// page-faulted its buffer in again; and it trims the heap top past 128 KiB free. Raising both
/// keeps block buffers in the heap (bench-transfer: the receiver's CPU −12 %; peak RSS +20 MiB).
/// The daemon and every command alike: an `image pull` receives its blobs in HTTP chunks of up
/// to a few hundred KiB.
fn tune_malloc() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets allocator parameters; it is thread-safe in glibc
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 20);
    }
}

/// The daemon's async worker threads unless `--worker-threads` says: one on up to three CPUs,
/// else half of them. A block is handed on several times (its connection, bitswap's reader,
/// the serve queue, a writer, the API), and with a worker per CPU the hand-offs woke the other
/// CPU: on two CPUs, one worker against two moved 256 MiB between two nodes 8 % faster with
/// 10-15 % less CPU on each side and answered a `block/get` from a peer a fifth sooner, while
/// pulls, mount reads and lazy starts stayed inside their spread (docs/performance-log.md).
/// The blocking pool (inflating, hashing big chunks, reading packs), the store's writer and
/// the FUSE threads run beside it.
fn daemon_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// Parses the command line and runs it.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    tune_malloc();
    let daemon = matches!(cli.command, Command::Daemon(_));
    init_tracing(if daemon { "info" } else { "warn" }, cli.log_format);
    let mut builder = match cli.command {
        // the daemon, and commands that stream data through the client (`image push` and
        // `optimize` also read a layout's blobs in `block_in_place`, which needs this runtime)
        Command::Daemon(ref d) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(d.worker_threads.map_or_else(daemon_workers, usize::from));
            b
        }
        Command::Add(_) => tokio::runtime::Builder::new_multi_thread(),
        Command::Image(ref c) if !matches!(c, args::ImageCommand::Pull(_)) => {
            tokio::runtime::Builder::new_multi_thread()
        }
        // a request or a few, and their answers: no worker threads to start, and an answer
        // wakes no other thread (`cidfs mount` of an optimized image, whose prefetch keeps both
        // cores busy, answered about 5 ms sooner). `cat` too: the connection and the writes to
        // standard output on one thread took a third as many context switches as on two, and
        // 256 MiB from the node's own store came 1.24x as fast (medians of 15). And `image
        // pull`: its client switched context about 330 times per 185 MB layer instead of
        // 1,600, with a tenth less CPU
        _ => tokio::runtime::Builder::new_current_thread(),
    };
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if stdout_closed(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Whether `e` is standard output closed by its reader (`cidfs cat | head`), which is not an
/// error; any other broken pipe is (a daemon that answered an upload early and hung up).
fn stdout_closed(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.is::<StdoutClosed>()
            || c.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .is_some_and(|inner| inner.is::<StdoutClosed>())
    })
}

/// Standard output was closed by its reader (`cidfs cat | head`).
#[derive(Debug, thiserror::Error)]
#[error("standard output was closed")]
pub(crate) struct StdoutClosed;

/// A writer to standard output: a broken pipe becomes [`StdoutClosed`], which `run` takes for
/// success, so that only a reader that went away, not a daemon that hung up, ends quietly.
pub(crate) struct Stdout<W>(pub W);

impl<W: std::io::Write> std::io::Write for Stdout<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf).map_err(closed)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush().map_err(closed)
    }
}

fn closed(e: std::io::Error) -> std::io::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::io::Error::new(std::io::ErrorKind::BrokenPipe, StdoutClosed)
    } else {
        e
    }
}

fn init_tracing(default: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal;
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => fmt.with_ansi(std::io::stderr().is_terminal()).init(),
        // one JSON object per line: timestamp, level, target, fields (message included)
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let repo = Repo::resolve(cli.repo.clone())?.with_config_file(cli.config.clone());
    let api = || ApiClient::connect(&repo, cli.api, cli.api_auth.as_deref());
    match cli.command {
        Command::Init(a) => init::init(&repo, &a),
        Command::Daemon(a) => {
            let o = crate::daemon::Overrides {
                swarm_key: a.swarm_key,
                peers: a.peers,
                listen: a.listen,
                api: a.api_listen,
                no_mdns: a.no_mdns,
                fetch_timeout_secs: a.fetch_timeout,
                registry: a.registry_listen,
                layer_store: a.layer_store,
                snapshotter_socket: a.snapshotter_socket,
            };
            crate::daemon::run(repo, o).await
        }
        Command::Keygen => {
            print!("{}", cidfs_p2p::psk::SwarmKey::generate().to_file_string());
            Ok(())
        }
        Command::Add(a) if a.only_hash => files::add_only_hash(&a).await,
        Command::Add(a) => files::add(&api()?, &a).await,
        Command::Cat(a) => files::cat(&api()?, &a).await,
        Command::Block(b) => files::block(&api()?, b).await,
        Command::Id => info::id(&api()?).await,
        Command::Swarm(s) => info::swarm(&api()?, s).await,
        Command::Pin(p) => info::pin(&api()?, p).await,
        Command::Image(i) => image::run(&api()?, i).await,
        Command::Mount(m) => mount::mount(&api()?, m).await,
        Command::Umount { dir } => mount::umount(&api()?, &dir).await,
        Command::Mounts => mount::list(&api()?).await,
        Command::Stats(s) => stats::run(&api()?, &s).await,
        Command::Repo(r) => info::repo(&api()?, r).await.context("repo command failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    /// Only standard output's reader going away ends a command quietly: a broken pipe to the
    /// daemon (it answered an upload early, e.g. disk full, and hung up) is an error.
    #[test]
    fn only_a_closed_stdout_is_quiet() {
        struct Closed;
        impl std::io::Write for Closed {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let e = Stdout(Closed).write_all(b"x").unwrap_err();
        assert!(stdout_closed(&anyhow::Error::new(e).context("writing")));
        let upload: std::io::Error = std::io::ErrorKind::BrokenPipe.into();
        assert!(!stdout_closed(
            &anyhow::Error::new(upload).context("sending the body")
        ));
    }
}
