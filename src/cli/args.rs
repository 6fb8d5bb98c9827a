//! Every command and flag, with the help a newcomer reads.

use clap::{Args, Parser, Subcommand};
use libp2p::Multiaddr;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Share container images and files across a private peer-to-peer swarm.
///
/// Start a node with `cidfs daemon`; the other commands talk to it over its HTTP API
/// (address in $CIDFS_PATH/api), like `ipfs` talks to kubo.
#[derive(Parser, Debug)]
#[command(name = "cidfs", version, propagate_version = true)]
pub struct Cli {
    /// Repo directory (config, identity, block store, swarm.key).
    #[arg(long, global = true, env = "CIDFS_PATH", value_name = "DIR")]
    pub repo: Option<PathBuf>,
    /// Talk to the daemon at this TCP address instead of through $CIDFS_PATH/api.sock (the
    /// daemon's own user) or the address in $CIDFS_PATH/api.
    #[arg(long, global = true, value_name = "HOST:PORT")]
    pub api: Option<SocketAddr>,
    /// Credential for a daemon whose API has [api.authorizations] (kubo's --api-auth):
    /// bearer:TOKEN or basic:USER:PASSWORD. Without it the CLI sends the daemon's own token
    /// from $CIDFS_PATH/api.token when it can read it.
    #[arg(
        long = "api-auth",
        global = true,
        env = "CIDFS_API_AUTH",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub api_auth: Option<String>,
    /// Read the config from FILE instead of $CIDFS_PATH/config.toml (e.g. a read-only
    /// /etc/cidfs/cidfs.toml, or a Kubernetes ConfigMap).
    #[arg(long, global = true, env = "CIDFS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log lines as text (for people) or json (one object per line, for journald, Loki or
    /// Elasticsearch). Which lines: RUST_LOG, e.g. RUST_LOG=info,cidfs_p2p=debug.
    #[arg(long, global = true, env = "CIDFS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create the repo (config, identity) if it does not exist; set up a private swarm.
    ///
    /// A private swarm is a set of nodes that share one secret key (kubo's swarm.key format):
    /// they talk only to each other. On the first node:
    ///   cidfs init --private
    /// writes a fresh key and prints the line to run on every other node:
    ///   cidfs init --swarm-key-from <64 hex digits>
    /// (or copy $CIDFS_PATH/swarm.key there and pass its path). Nodes on one LAN then find each
    /// other by mDNS as soon as `cidfs daemon` runs on them; no other config is needed.
    #[command(verbatim_doc_comment)]
    Init(InitArgs),
    /// Run the node: p2p swarm, block store and HTTP API, until SIGINT/SIGTERM.
    Daemon(DaemonArgs),
    /// Add a file; prints its CID (the same CID as `ipfs add --cid-version=1`).
    Add(AddArgs),
    /// Write a file's bytes (or a byte range of them) to stdout, fetching from peers as needed.
    Cat(CatArgs),
    /// Raw blocks: get, put, stat.
    #[command(subcommand)]
    Block(BlockCommand),
    /// Show this node's peer id and addresses.
    Id,
    /// Peers: list connections, connect to a peer.
    #[command(subcommand)]
    Swarm(SwarmCommand),
    /// Pins keep a DAG (and every block under it) through garbage collection.
    #[command(subcommand)]
    Pin(PinCommand),
    /// The block store: garbage collection and statistics.
    #[command(subcommand)]
    Repo(RepoCommand),
    /// Generate a new swarm key (kubo PSK v1 format) on stdout.
    Keygen,
    /// Container images in the swarm: push, pull, inspect (the IPFS-enabled OCI format of
    /// stargz-snapshotter and nerdctl).
    #[command(subcommand)]
    Image(ImageCommand),
    /// Mount an image's root filesystem, read-only, fetching file contents only when read.
    ///
    /// The daemon mounts the merged layers (whiteouts applied) over FUSE at DIR, an existing
    /// directory, and this command returns once the mount is ready. Only metadata is fetched
    /// now; each read fetches just the eStargz chunks it needs from peers (and keeps them).
    /// Needs root (or FUSE rights) for the daemon. See `[mount]` in config.toml for the read
    /// timeout, prefetch and background fetch.
    ///
    /// Examples:
    ///   cidfs mount bafkrei... /mnt/app
    ///   chroot /mnt/app /bin/sh -c 'cat /etc/os-release'
    ///   cidfs umount /mnt/app
    #[command(verbatim_doc_comment)]
    Mount(MountArgs),
    /// Unmount a directory mounted with `cidfs mount` (a busy mount is detached: it goes from
    /// the tree at once and ends when its last open file closes).
    Umount {
        /// The mount point.
        dir: PathBuf,
    },
    /// List the daemon's mounts: directory, image CID, platform.
    Mounts,
    /// A live summary of what the daemon is doing: peers, bitswap traffic, FUSE reads,
    /// registry and layer-store requests, store size (from its /metrics page).
    ///
    /// Refreshes every --interval seconds until Ctrl-C; --once prints one summary and exits.
    /// Rates are per second over the last interval.
    #[command(verbatim_doc_comment)]
    Stats(StatsArgs),
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Print one summary and exit (rates are then averaged over --interval).
    #[arg(long)]
    pub once: bool,
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 2.0, value_name = "SECS", value_parser = parse_interval)]
    pub interval: f64,
    /// Rows in the per-peer table (busiest peers first; 0 hides it).
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub peers: usize,
}

/// A command-line value that does not parse.
#[derive(Debug, thiserror::Error)]
pub enum BadValue {
    #[error("{0:?} is not a number of seconds from 0.1 to 3600")]
    Interval(String),
    #[error("{0:?} is not a size ({1}); e.g. 500MB, 20GiB or 1048576")]
    Size(String, parse_size::Error),
}

fn parse_interval(s: &str) -> Result<f64, BadValue> {
    match s.parse::<f64>() {
        Ok(v) if (0.1..=3600.0).contains(&v) => Ok(v),
        _ => Err(BadValue::Interval(s.to_string())),
    }
}

/// A size such as `1048576`, `500MB` or `20GiB`.
fn parse_size(s: &str) -> Result<u64, BadValue> {
    // MB and GB are powers of 10, MiB and GiB of 2 (as `du`, `df -H` and kubo's StorageMax)
    parse_size::Config::new()
        .parse_size(s)
        .map_err(|e| BadValue::Size(s.to_string(), e))
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// Start a private swarm: write a fresh swarm key to $CIDFS_PATH/swarm.key and print the
    /// line that joins another node to it.
    #[arg(long, conflicts_with = "swarm_key_from")]
    pub private: bool,
    /// Join a private swarm: the key as 64 hex digits (the line `init --private` printed), a
    /// swarm.key file, or - for stdin. Written to $CIDFS_PATH/swarm.key.
    #[arg(long, value_name = "KEY|FILE|-")]
    pub swarm_key_from: Option<String>,
}

/// How log lines are written (`--log-format`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Args, Debug)]
pub struct MountArgs {
    /// The image: CID, ipfs://CID or /ipfs/CID (as printed by `cidfs image push`), or a
    /// NAME[:TAG] pushed to the registry endpoint.
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// An existing directory to mount it on.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Let every user read the mount, not only the daemon's user (FUSE `allow_other`).
    #[arg(long)]
    pub allow_other: bool,
    /// Which platform of a multi-platform image, OS/ARCH[/VARIANT] (default: this host's).
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Put an image into the swarm; prints its CID (and nothing else) on stdout.
    ///
    /// Layers are converted to eStargz (seekable gzip) so they can be mounted lazily; every
    /// blob is added as a UnixFS file (eStargz layers cut at their gzip members, see
    /// --dag-layout) and pinned; every descriptor gets an `ipfs://<CID>` URL. The image CID
    /// names the index descriptor.
    ///
    /// Examples:
    ///   cidfs image push oci:./layout:v1
    ///   cidfs image push docker-archive:./saved.tar
    ///   cidfs image push --insecure docker://127.0.0.1:5000/app:1.0
    #[command(verbatim_doc_comment)]
    Push(PushArgs),
    /// Fetch an image by CID from the swarm into an OCI layout or a docker-archive, verifying
    /// every blob's size and sha256 digest.
    ///
    /// Examples:
    ///   cidfs image pull bafkrei... --to oci:./out:v1
    ///   cidfs image pull ipfs://bafkrei... --to docker-archive:./img.tar:app:1.0
    ///   podman load -i ./img.tar
    #[command(verbatim_doc_comment)]
    Pull(PullArgs),
    /// Show an image's index, manifests, configs and a table of its layers.
    Inspect(InspectArgs),
    /// Record what a command reads while it starts, and push the image again with those files
    /// first in their layers, marked for prefetching: a lazy mount of the new image fetches
    /// them in one batch as it mounts, instead of one chunk per page fault.
    ///
    /// The image is mounted lazily in a temporary directory under mount.allowed_roots, the
    /// command runs in a chroot of it (with the host's /dev and /proc bound in; as root), the
    /// files it read are recorded in order, and every layer is converted again. Prints the
    /// new image's CID; the old one is unchanged. The idea of `ctr-remote image optimize`.
    ///
    /// Example:
    ///   cidfs image optimize team/app:1.0 -- python3 -c 'import json'
    #[command(verbatim_doc_comment)]
    Optimize(OptimizeArgs),
    /// List the swarm's image names: the CID each names, its size, the node that pushed it,
    /// and how many live nodes hold it fully (COPIES; --holders lists them).
    ///
    /// Names are the swarm's: a push to any node's registry endpoint names the image on every
    /// node. A name works wherever a CID does: cidfs image pull team/app:1.0 --to oci:./out,
    /// cidfs mount team/app:1.0 /mnt/app, podman run 127.0.0.1:5050/team/app:1.0.
    /// [[preload]] rules in the config fetch and pin images by name (see config.toml).
    Ls {
        /// Also list the peer ids of the nodes that hold each image fully, and of those that
        /// hold it partly (its index and manifests, some blobs: a lazy mount) ("self" is this
        /// node).
        #[arg(long)]
        holders: bool,
        /// Print the daemon's answer as JSON (Name, Cid, Size, PushedBy, Holders, …).
        #[arg(long)]
        json: bool,
    },
    /// Give an image (a CID or a name) another name, as a push by that name would.
    ///
    /// Example:
    ///   cidfs image tag team/app:1.0 team/app:stable
    #[command(verbatim_doc_comment)]
    Tag {
        /// The image: CID, ipfs://CID, /ipfs/CID or NAME[:TAG].
        #[arg(value_name = "IMAGE")]
        image: String,
        /// The new name, NAME[:TAG] (tag `latest` when left out).
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Remove a name, on every node of the swarm, and unpin on this node the image's blobs that
    /// no other name here needs (`cidfs repo gc` then frees them; other nodes keep their copies
    /// until their gc target or `repo gc` takes them).
    Rm {
        #[arg(value_name = "NAME")]
        name: String,
        /// Only remove the name: the image stays pinned here.
        #[arg(long)]
        keep: bool,
    },
    /// What a name pointed at before, oldest first, then what it points at now.
    History {
        #[arg(value_name = "NAME")]
        name: String,
    },
}

#[derive(Args, Debug)]
pub struct PushArgs {
    /// oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:NAME:TAG] or
    /// docker://HOST[:PORT]/REPO[:TAG|@DIGEST].
    #[arg(value_name = "SOURCE")]
    pub source: String,
    /// Convert layers to eStargz (`--estargz=false` keeps them as they are). Layers that
    /// already are eStargz are kept byte for byte.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub estargz: bool,
    /// Uncompressed bytes per eStargz chunk.
    #[arg(long, default_value_t = 4 << 20, value_name = "BYTES")]
    pub chunk_size: u64,
    /// Put this file first in its layer and mark it for prefetching (repeatable, in order),
    /// e.g. --prefetch /bin/sh.
    #[arg(long, value_name = "PATH")]
    pub prefetch: Vec<String>,
    /// How eStargz layers are cut into blocks: `members` ends blocks where the layer's gzip
    /// members end, so files an earlier image already shared are not fetched again (a rebuilt
    /// image moves only its changed files); `fixed` cuts every 256 KiB, the CIDs of `ipfs add
    /// --cid-version=1` and `nerdctl push ipfs://`. Both are read by every IPFS client.
    #[arg(long, value_enum, default_value_t, value_name = "LAYOUT")]
    pub dag_layout: crate::image::push::DagLayout,
    /// gzip level of eStargz chunks (0-9; ctr-remote uses 9, which is twice as slow for ~0.6 %
    /// smaller layers).
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(0..=9))]
    pub compression_level: u32,
    /// Keep only this platform of a multi-platform image, OS/ARCH[/VARIANT] (repeatable;
    /// default: all).
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Vec<String>,
    /// docker://: use plain HTTP.
    #[arg(long)]
    pub insecure: bool,
    /// docker://: credentials USER:PASS.
    #[arg(long, value_name = "USER:PASS")]
    pub creds: Option<String>,
    /// docker://: an auth file (containers auth.json or ~/.docker/config.json format).
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct OptimizeArgs {
    /// The image: CID, ipfs://CID, /ipfs/CID, or a NAME[:TAG] pushed to the registry endpoint.
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// The command to start in the image, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub cmd: Vec<String>,
    /// Stop the command after this many seconds; what it read until then is kept.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub timeout: u64,
    /// The platform to run and push, OS/ARCH[/VARIANT] (default: this host's).
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
    /// Uncompressed bytes per eStargz chunk of the new image.
    #[arg(long, default_value_t = 4 << 20, value_name = "BYTES")]
    pub chunk_size: u64,
    /// gzip level of the new image's chunks (0-9).
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(0..=9))]
    pub compression_level: u32,
    /// How the new image's layers are cut into blocks (see `image push --help`).
    #[arg(long, value_enum, default_value_t, value_name = "LAYOUT")]
    pub dag_layout: crate::image::push::DagLayout,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct PullArgs {
    /// The image: CID, ipfs://CID, /ipfs/CID, or a NAME[:TAG] pushed to the registry endpoint.
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// Where to write it: oci:DIR[:TAG] or docker-archive:FILE[:NAME:TAG].
    #[arg(long, value_name = "DEST")]
    pub to: String,
    /// Keep only this platform, OS/ARCH[/VARIANT] (repeatable; default: all, or the host's for
    /// a docker-archive).
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Vec<String>,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The image: CID, ipfs://CID, /ipfs/CID, or a NAME[:TAG] pushed to the registry endpoint.
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// Print everything as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Default)]
pub struct DaemonArgs {
    /// Private-network key file (kubo swarm.key format); default: $CIDFS_PATH/swarm.key if present.
    #[arg(long, value_name = "FILE")]
    pub swarm_key: Option<PathBuf>,
    /// Static peer to connect to and keep connected (repeatable), e.g. /ip4/10.0.0.2/tcp/4001/p2p/12D3...
    #[arg(long = "peer", value_name = "MULTIADDR")]
    pub peers: Vec<Multiaddr>,
    /// Swarm listen address (repeatable); replaces swarm.listen from the config.
    #[arg(long = "listen", value_name = "MULTIADDR")]
    pub listen: Vec<Multiaddr>,
    /// API listen address; replaces api.listen from the config (port 0 picks a free port).
    #[arg(long = "api-listen", value_name = "HOST:PORT")]
    pub api_listen: Option<SocketAddr>,
    /// Do not discover peers on the LAN by mDNS.
    #[arg(long)]
    pub no_mdns: bool,
    /// Seconds before a block that no peer provides fails (bitswap.fetch_timeout_secs).
    #[arg(long, value_name = "SECS")]
    pub fetch_timeout: Option<u64>,
    /// Registry endpoint address (HOST:PORT/ipfs/<CID> images); replaces registry.listen and
    /// turns it on (port 0 picks a free port, written to $CIDFS_PATH/registry).
    #[arg(long = "registry-listen", value_name = "HOST:PORT")]
    pub registry_listen: Option<SocketAddr>,
    /// Mount the additional layer store of podman / CRI-O here (layer_store.mountpoint); point
    /// storage.conf's `additionallayerstores = ["DIR:ref"]` at it.
    #[arg(long = "layer-store", value_name = "DIR")]
    pub layer_store: Option<PathBuf>,
    /// Serve the containerd snapshotter on this unix socket (snapshotter.socket; `socket = ""`
    /// in the config turns it off); name it in containerd's `[proxy_plugins.cidfs]` with
    /// `type = "snapshot"`.
    #[arg(long = "snapshotter-socket", value_name = "PATH")]
    pub snapshotter_socket: Option<PathBuf>,
    /// Threads that run the node's async work: connections, bitswap, the API, the registry
    /// endpoint, the mounts' requests. Default: one on a machine of up to three CPUs, else half
    /// of them (inflating, hashing big chunks, reading packs and writing the store have threads
    /// of their own; see README, Performance).
    #[arg(long, value_name = "N", env = "CIDFS_WORKER_THREADS",
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub worker_threads: Option<u16>,
}

impl AddArgs {
    /// The options `--profile` or `--cid-version` ask for.
    pub fn options(&self) -> crate::unixfs::add::AddOptions {
        use crate::unixfs::add::AddOptions;
        match self.profile.as_deref().and_then(AddOptions::profile) {
            Some(o) => o,
            None => AddOptions {
                cid_version: self.cid_version,
                ..AddOptions::default()
            },
        }
    }
}

#[derive(Args, Debug)]
pub struct AddArgs {
    /// The file to add ("-" reads stdin).
    pub file: PathBuf,
    /// Only compute the CID; store nothing (works without a daemon).
    #[arg(long, short = 'n')]
    pub only_hash: bool,
    /// CID version: 1 gives raw leaves and base32 CIDs (bafy...), 0 gives kubo's legacy Qm... CIDs.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub cid_version: u8,
    /// An import profile instead (kubo's names): unixfs-v1-2025 (CIDv1, raw leaves, 1 MiB chunks,
    /// 1024 links per node: kubo >= 0.40 and Helia's default), unixfs-v0-2015 (plain `ipfs add`),
    /// legacy-cid-v1 (the default; the layout of image CIDs).
    #[arg(long, conflicts_with = "cid_version", value_parser = clap::builder::PossibleValuesParser::new(crate::unixfs::add::AddOptions::PROFILES))]
    pub profile: Option<String>,
    /// Do not pin the file (it may then be removed by `cidfs repo gc`).
    #[arg(long)]
    pub no_pin: bool,
    /// Print only the CID.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct CatArgs {
    /// CID, /ipfs/CID or ipfs://CID of a file.
    pub cid: String,
    /// First byte to write.
    #[arg(long, short = 'o', default_value_t = 0)]
    pub offset: u64,
    /// Number of bytes to write (default: to the end).
    #[arg(long, short = 'l')]
    pub length: Option<u64>,
}

#[derive(Subcommand, Debug)]
pub enum BlockCommand {
    /// Write a block's raw bytes to stdout.
    Get { cid: String },
    /// Store a file as one raw block; prints its CID.
    Put {
        file: PathBuf,
        /// Codec of the new CID: raw or dag-pb.
        #[arg(long, default_value = "raw")]
        cid_codec: String,
    },
    /// Print a block's CID and size.
    Stat { cid: String },
}

#[derive(Subcommand, Debug)]
pub enum SwarmCommand {
    /// List connected peers.
    Peers,
    /// Connect to a peer by multiaddr (ending in /p2p/<peer id>).
    Connect { addr: String },
}

#[derive(Subcommand, Debug)]
pub enum PinCommand {
    /// Fetch a whole DAG and pin it.
    Add { cid: String },
    /// List pinned roots.
    Ls,
    /// Unpin a root.
    Rm { cid: String },
}

#[derive(Subcommand, Debug)]
pub enum RepoCommand {
    /// Remove blocks that no pin reaches (all of them, or until the store fits --target).
    ///
    /// Examples:
    ///   cidfs repo gc                  # every unpinned block
    ///   cidfs repo gc --target 20GiB   # unpinned blocks until the store holds at most 20 GiB
    #[command(verbatim_doc_comment)]
    Gc {
        /// Stop once the blocks take at most this much: bytes, or with a unit (500MB, 20GiB).
        /// Pinned blocks are never removed, so the store may stay above it.
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        target: Option<u64>,
        /// Print only the summary, not every removed CID.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Re-hash every stored block against its CID and list the corrupt ones (disk rot, a
    /// bad copy). Exits with status 1 when any block is corrupt.
    Verify {
        /// Also delete the corrupt blocks, so that the next read or `pin add` fetches good
        /// copies from peers.
        #[arg(long)]
        remove: bool,
    },
    /// Blocks and bytes stored, fetched from and sent to peers.
    Stat,
    /// List the CID of every block stored here, one per line (kubo's `ipfs refs local`).
    Ls,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_units_and_bad_ones_say_what_is_wanted() {
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_size("20GiB").unwrap(), 20 << 30);
        assert_eq!(parse_size("500MB").unwrap(), 500_000_000);
        let e = parse_size("1x").unwrap_err().to_string();
        assert!(e.contains("\"1x\"") && e.contains("20GiB"), "{e}");
        assert!(parse_interval("0").is_err() && parse_interval("2.5").is_ok());
    }

    #[test]
    fn worker_threads_are_at_least_one() {
        let workers = |args: &[&str]| match Cli::try_parse_from(args).map(|c| c.command) {
            Ok(Command::Daemon(d)) => Ok(d.worker_threads),
            Ok(_) => unreachable!(),
            Err(e) => Err(e.to_string()),
        };
        // without the flag, CIDFS_WORKER_THREADS decides: only its absence means the default
        if std::env::var_os("CIDFS_WORKER_THREADS").is_none() {
            assert_eq!(workers(&["cidfs", "daemon"]), Ok(None));
        }
        // the flag wins over the environment
        assert_eq!(
            workers(&["cidfs", "daemon", "--worker-threads", "2"]),
            Ok(Some(2))
        );
        let e = workers(&["cidfs", "daemon", "--worker-threads", "0"]).unwrap_err();
        assert!(e.contains("--worker-threads"), "{e}");
    }
}
