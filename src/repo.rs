//! The repo directory: everything one cidfs node keeps on disk.
//!
//! Location: an explicit path (`--repo`) > `$CIDFS_PATH` > `~/.cidfs`. Contents:
//!
//! | path | what | written by |
//! |---|---|---|
//! | `config.toml` | [`Config`], commented (a copy of `config/cidfs.toml`) | [`Repo::init`] |
//! | `identity.key` | libp2p ed25519 keypair, protobuf encoding, mode 0600 | first [`Repo::identity`] |
//! | `swarm.key` | optional private-network key (kubo PSK v1 format) | the operator |
//! | `blocks/` | the sled block store | the blockstore |
//! | `api` | multiaddr of the running daemon's HTTP API, e.g. `/ip4/127.0.0.1/tcp/5001` | the daemon, while it runs |
//! | `repo.lock` | `flock`ed by the running daemon; holds its pid | [`Repo::lock`] |
//!
//! The directory is created with mode 0700. Two daemons cannot share a repo: the daemon holds
//! [`RepoLock`] (an exclusive `flock` on `repo.lock`, via the `fs4` crate) for its whole life, and
//! the kernel releases it when the process exits, even on a crash. We take our own lock rather
//! than relying on sled's so the error is clear and the api file is covered too.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use cidfs_p2p::psk::SwarmKey;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;

use crate::config::{Config, DEFAULT_CONFIG_TOML};

/// Environment variable naming the repo directory.
pub const ENV_VAR: &str = "CIDFS_PATH";
/// Directory name under `$HOME` when `CIDFS_PATH` is not set.
pub const DEFAULT_DIR_NAME: &str = ".cidfs";
/// Config file name inside the repo.
pub const CONFIG_FILE: &str = "config.toml";
/// Node identity file name inside the repo.
pub const IDENTITY_FILE: &str = "identity.key";
/// Default swarm key file name inside the repo.
pub const SWARM_KEY_FILE: &str = "swarm.key";
/// API address file name inside the repo.
pub const API_FILE: &str = "api";
/// `<root>/api.token`: the running daemon's API token (mode 0600), which privileged commands
/// (`mount`, `umount`) need; the CLI sends it, so they are for the daemon's own user.
pub const API_TOKEN_FILE: &str = "api.token";
/// `<root>/api.sock`: the running daemon's API on a Unix socket (mode 0600). The CLI of the
/// daemon's own user prefers it to the TCP address in `api`: the same API without the TCP
/// stack on either side of every byte `cat` or `image pull` moves.
pub const API_SOCKET: &str = "api.sock";
/// `<root>/registry`: `IP:port` of the running daemon's registry endpoint.
pub const REGISTRY_FILE: &str = "registry";
/// Lock file name inside the repo.
pub const LOCK_FILE: &str = "repo.lock";
const BLOCKS_DIR: &str = "blocks";

/// Key and api files are tiny; refuse to read anything bigger than this.
const MAX_SMALL_FILE: u64 = 64 * 1024;

/// A cidfs repo directory (it may not exist yet: see [`Repo::init`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    root: PathBuf,
    /// A config file outside the repo (`--config`), read instead of `<root>/config.toml`.
    config_file: Option<PathBuf>,
}

impl Repo {
    /// Finds the repo: `explicit` > `$CIDFS_PATH` (if non-empty) > `~/.cidfs`.
    /// The path is made absolute but nothing is created.
    pub fn resolve(explicit: Option<PathBuf>) -> anyhow::Result<Repo> {
        resolve_root(explicit, std::env::var_os(ENV_VAR), dirs::home_dir()).map(Repo::at)
    }

    /// The repo at `root`, as given.
    pub fn at(root: impl Into<PathBuf>) -> Repo {
        Repo {
            root: root.into(),
            config_file: None,
        }
    }

    /// Reads the config from `file` instead of `<root>/config.toml` (`--config`, e.g. a
    /// read-only `/etc/cidfs/cidfs.toml` or a Kubernetes ConfigMap). `init` then writes no
    /// config into the repo.
    pub fn with_config_file(mut self, file: Option<PathBuf>) -> Repo {
        self.config_file = file;
        self
    }

    /// The repo directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The config file: the `--config` file if one was given, else `<root>/config.toml`.
    pub fn config_path(&self) -> PathBuf {
        self.config_file
            .clone()
            .unwrap_or_else(|| self.root.join(CONFIG_FILE))
    }

    /// `<root>/identity.key`.
    pub fn identity_path(&self) -> PathBuf {
        self.root.join(IDENTITY_FILE)
    }

    /// `<root>/swarm.key`, the swarm key used when neither flag nor config names one.
    pub fn default_swarm_key_path(&self) -> PathBuf {
        self.root.join(SWARM_KEY_FILE)
    }

    /// `<root>/blocks`, the sled database directory.
    pub fn blocks_dir(&self) -> PathBuf {
        self.root.join(BLOCKS_DIR)
    }

    /// `<root>/api`, present while a daemon runs.
    pub fn api_file(&self) -> PathBuf {
        self.root.join(API_FILE)
    }

    /// `<root>/api.sock`, present while a daemon runs (see [`API_SOCKET`]).
    pub fn api_socket(&self) -> PathBuf {
        self.root.join(API_SOCKET)
    }

    /// `<root>/repo.lock`.
    pub fn lock_path(&self) -> PathBuf {
        self.root.join(LOCK_FILE)
    }

    /// Whether `init` has run (the identity exists).
    pub fn is_initialized(&self) -> bool {
        self.identity_path().is_file()
    }

    /// Creates whatever is missing: the directory (mode 0700), the commented default
    /// `config.toml` (unless `--config` names another file) and the identity. Returns `true` if
    /// this call made the repo, i.e. it is new. Existing files are never overwritten.
    pub fn init(&self) -> anyhow::Result<bool> {
        self.create_root()?;
        let created = !self.is_initialized();
        if self.config_file.is_none() {
            let config_path = self.config_path();
            write_new_file(&config_path, DEFAULT_CONFIG_TOML.as_bytes(), 0o644)
                .with_context(|| format!("writing default config {}", config_path.display()))?;
        }
        self.identity()?;
        Ok(created)
    }

    /// Writes `<root>/swarm.key` (mode 0600). Returns `false` when the repo already holds this
    /// very key; a different key already there is an error (it is never overwritten: nodes on
    /// the old key would be cut off).
    pub fn write_swarm_key(&self, key: &SwarmKey) -> anyhow::Result<bool> {
        let path = self.default_swarm_key_path();
        if write_new_file(&path, key.to_file_string().as_bytes(), 0o600)
            .with_context(|| format!("writing swarm key {}", path.display()))?
        {
            return Ok(true);
        }
        match self.swarm_key(None, "")? {
            Some(old) if old.bytes() == key.bytes() => Ok(false),
            old => bail!(
                "{} already holds another swarm key{}; remove it first to move this node to the \
                 new swarm",
                path.display(),
                old.map(|k| format!(" (fingerprint {})", k.fingerprint()))
                    .unwrap_or_default()
            ),
        }
    }

    /// Loads `config.toml`; errors name the file and the bad key.
    pub fn config(&self) -> anyhow::Result<Config> {
        let path = self.config_path();
        if !path.exists() && self.config_file.is_some() {
            bail!(
                "config file {} (--config, CIDFS_CONFIG) not found",
                path.display()
            );
        }
        if !path.exists() {
            bail!(
                "{} not found: run `cidfs init` (repo {})",
                path.display(),
                self.root.display()
            );
        }
        Config::load(&path)
    }

    /// The node's keypair from `identity.key`, generated (ed25519) and saved with mode 0600 the
    /// first time.
    pub fn identity(&self) -> anyhow::Result<Keypair> {
        let path = self.identity_path();
        match read_small_file(&path) {
            Ok(bytes) => {
                warn_if_shared(&path);
                Keypair::from_protobuf_encoding(&bytes).with_context(|| {
                    format!(
                        "{} is not a libp2p private key (protobuf encoding)",
                        path.display()
                    )
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let keypair = Keypair::generate_ed25519();
                let bytes = keypair
                    .to_protobuf_encoding()
                    .context("encoding new identity")?;
                let written = write_new_file(&path, &bytes, 0o600)
                    .with_context(|| format!("writing identity {}", path.display()))?;
                if written {
                    tracing::info!(peer_id = %keypair.public().to_peer_id(), "created node identity");
                    Ok(keypair)
                } else {
                    // Another process created it in the meantime: use theirs.
                    self.identity()
                }
            }
            Err(e) => Err(e).with_context(|| format!("reading identity {}", path.display())),
        }
    }

    /// The swarm key to use, if any. `override_path` (command line) wins; then `configured`
    /// (`swarm.swarm_key`, relative to the repo); both must exist. Otherwise
    /// `<root>/swarm.key` is used if it exists. Errors name the file.
    pub fn swarm_key(
        &self,
        override_path: Option<&Path>,
        configured: &str,
    ) -> anyhow::Result<Option<SwarmKey>> {
        let configured = configured.trim();
        let (path, required) = match override_path {
            Some(path) => (path.to_path_buf(), true),
            None if !configured.is_empty() => (self.root.join(configured), true),
            None => (self.default_swarm_key_path(), false),
        };
        let bytes = match read_small_file(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound && !required => return Ok(None),
            Err(e) => {
                return Err(e).with_context(|| format!("reading swarm key {}", path.display()))
            }
        };
        warn_if_shared(&path);
        let key = SwarmKey::parse_bytes(&bytes)
            .with_context(|| format!("invalid swarm key {}", path.display()))?;
        Ok(Some(key))
    }

    /// Publishes the API address (a multiaddr such as `/ip4/127.0.0.1/tcp/5001`, see
    /// [`api_multiaddr`]) for clients. Written atomically, without a trailing newline, as kubo does.
    pub fn write_api_file(&self, multiaddr: &str) -> anyhow::Result<()> {
        self.write_small_file(API_FILE, multiaddr)
    }

    /// Makes a fresh random API token and writes it to `<root>/api.token`, readable by the
    /// daemon's user alone (0600, created so: never readable by others, not even briefly).
    pub fn write_api_token(&self) -> anyhow::Result<String> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let token = hex::encode(rand::random::<[u8; 32]>());
        let path = self.root.join(API_TOKEN_FILE);
        let tmp = self
            .root
            .join(format!(".{API_TOKEN_FILE}.{}.tmp", std::process::id()));
        let _ = fs::remove_file(&tmp);
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| f.write_all(token.as_bytes()))
            .and_then(|()| fs::rename(&tmp, &path))
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(token)
    }

    /// The running daemon's API token, when this user may read it.
    pub fn read_api_token(&self) -> Option<String> {
        let bytes = read_small_file(&self.root.join(API_TOKEN_FILE)).ok()?;
        let token = String::from_utf8(bytes).ok()?.trim().to_string();
        (!token.is_empty()).then_some(token)
    }

    /// Removes the api file (at shutdown); a missing file is fine.
    pub fn remove_api_file(&self) -> anyhow::Result<()> {
        self.remove_small_file(API_FILE)
    }

    /// Removes the API socket (at shutdown); a missing one is fine.
    pub fn remove_api_socket(&self) -> anyhow::Result<()> {
        self.remove_small_file(API_SOCKET)
    }

    /// Writes `<root>/registry`: the `IP:port` of the running daemon's registry endpoint.
    pub fn write_registry_file(&self, addr: SocketAddr) -> anyhow::Result<()> {
        self.write_small_file(REGISTRY_FILE, &addr.to_string())
    }

    /// Removes the registry file (at shutdown); a missing file is fine.
    pub fn remove_registry_file(&self) -> anyhow::Result<()> {
        self.remove_small_file(REGISTRY_FILE)
    }

    /// Replaces `<root>/<name>` with `text` atomically (a temporary file renamed over it).
    fn write_small_file(&self, name: &str, text: &str) -> anyhow::Result<()> {
        let path = self.root.join(name);
        let tmp = self
            .root
            .join(format!(".{name}.{}.tmp", std::process::id()));
        fs::write(&tmp, text.trim())
            .and_then(|()| fs::rename(&tmp, &path))
            .with_context(|| format!("writing {}", path.display()))
    }

    fn remove_small_file(&self, name: &str) -> anyhow::Result<()> {
        let path = self.root.join(name);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing {}", path.display()))
            }
            _ => Ok(()),
        }
    }

    pub fn read_api_addr(&self) -> anyhow::Result<SocketAddr> {
        let path = self.api_file();
        let bytes = match read_small_file(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                bail!("no daemon running? {} not found", path.display())
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let text = String::from_utf8(bytes)
            .with_context(|| format!("{} is not UTF-8 text", path.display()))?;
        parse_api_multiaddr(&text).with_context(|| format!("bad address in {}", path.display()))
    }

    /// Takes the exclusive repo lock, held until the returned guard is dropped or the process
    /// exits. Fails at once if another process holds it.
    pub fn lock(&self) -> anyhow::Result<RepoLock> {
        let path = self.lock_path();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("opening lock file {}", path.display()))?;
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => {}
            Err(fs4::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                // Best effort: the pid is only for the message.
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let holder = if holder.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {holder})")
                };
                bail!(
                    "repo {} is in use by another daemon{holder}: {} is locked",
                    self.root.display(),
                    path.display()
                );
            }
            Err(fs4::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()))
            }
        }
        file.set_len(0)
            .and_then(|()| write!(file, "{}", std::process::id()))
            .with_context(|| format!("writing pid to {}", path.display()))?;
        Ok(RepoLock { _file: file, path })
    }

    fn create_root(&self) -> anyhow::Result<()> {
        if let Some(parent) = self.root.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent)
                .with_context(|| format!("creating directory {}", parent.display()))?;
        }
        match fs::DirBuilder::new().mode(0o700).create(&self.root) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                Err(e).with_context(|| format!("creating repo {}", self.root.display()))
            }
            _ if !self.root.is_dir() => bail!("repo {} is not a directory", self.root.display()),
            _ => self.close_root(),
        }
    }

    /// Makes the repo 0700 when it is more open (kubelet's `DirectoryOrCreate` makes it 0755):
    /// it holds the identity, the API token, the blocks and the layer-store mount.
    fn close_root(&self) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(&self.root)
            .with_context(|| format!("reading repo {}", self.root.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700))
                .with_context(|| format!("making repo {} mode 0700", self.root.display()))?;
            tracing::warn!(
                "repo {} was mode {:o}; made it 0700",
                self.root.display(),
                mode & 0o777
            );
        }
        Ok(())
    }
}

/// Proof that this process holds the repo lock; dropping it releases the lock.
#[derive(Debug)]
pub struct RepoLock {
    _file: File,
    path: PathBuf,
}

impl RepoLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The api-file form of a socket address: `/ip4/<ip>/tcp/<port>` or `/ip6/<ip>/tcp/<port>`.
pub fn api_multiaddr(addr: SocketAddr) -> String {
    Multiaddr::empty()
        .with(addr.ip().into())
        .with(Protocol::Tcp(addr.port()))
        .to_string()
}

/// Parses the api-file form (`/ip4/127.0.0.1/tcp/5001`, surrounding whitespace ignored) into a
/// socket address. Trailing protocols such as `/http` are ignored.
pub fn parse_api_multiaddr(text: &str) -> anyhow::Result<SocketAddr> {
    let text = text.trim();
    let addr: Multiaddr = text
        .parse()
        .with_context(|| format!("`{text}` is not a multiaddr"))?;
    let mut parts = addr.iter();
    match (parts.next(), parts.next()) {
        (Some(Protocol::Ip4(ip)), Some(Protocol::Tcp(port))) => Ok(SocketAddr::from((ip, port))),
        (Some(Protocol::Ip6(ip)), Some(Protocol::Tcp(port))) => Ok(SocketAddr::from((ip, port))),
        _ => bail!("`{text}` is not of the form /ip4/<ip>/tcp/<port> or /ip6/<ip>/tcp/<port>"),
    }
}

fn resolve_root(
    explicit: Option<PathBuf>,
    env: Option<OsString>,
    home: Option<PathBuf>,
) -> anyhow::Result<PathBuf> {
    let root = match (explicit, env.filter(|v| !v.is_empty())) {
        (Some(path), _) => path,
        (None, Some(path)) => PathBuf::from(path),
        (None, None) => match home {
            Some(home) => home.join(DEFAULT_DIR_NAME),
            None => bail!("cannot find the home directory: set {ENV_VAR} to choose a repo"),
        },
    };
    std::path::absolute(&root).with_context(|| format!("resolving repo path {}", root.display()))
}

/// Reads a file that should be small, refusing anything over [`MAX_SMALL_FILE`].
fn read_small_file(path: &Path) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    File::open(path)?
        .take(MAX_SMALL_FILE + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_SMALL_FILE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("file is larger than {MAX_SMALL_FILE} bytes"),
        ));
    }
    Ok(bytes)
}

/// Creates `path` with `mode` and writes `bytes`, unless it exists: then returns `Ok(false)`.
fn write_new_file(path: &Path, bytes: &[u8], mode: u32) -> io::Result<bool> {
    let mut file = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(e),
    };
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(true)
}

/// Secrets should not be readable by group or others; say so, but carry on (kubo does not check).
fn warn_if_shared(path: &Path) {
    if let Ok(meta) = fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                file = %path.display(),
                mode = format!("{mode:o}"),
                "secret file is readable by other users; chmod 600 it"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_repo() -> (tempfile::TempDir, Repo) {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = Repo::at(dir.path().join("repo"));
        (dir, repo)
    }

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).expect("metadata").permissions().mode() & 0o777
    }

    const VECTOR_FILE: &str = "/key/swarm/psk/1.0.0/\n/base16/\n6189c5cf0b87fb800c1a9feeda73c6ab5e998db48fb9e6a978575c770ceef683\n";

    #[test]
    fn resolve_order() {
        let home = Some(PathBuf::from("/home/u"));
        let env = Some(OsString::from("/env/repo"));
        let pick = |explicit: Option<&str>, env: Option<OsString>, home: Option<PathBuf>| {
            resolve_root(explicit.map(PathBuf::from), env, home)
        };
        assert_eq!(
            pick(Some("/x"), env.clone(), home.clone()).expect("explicit"),
            PathBuf::from("/x")
        );
        assert_eq!(
            pick(None, env.clone(), home.clone()).expect("env"),
            PathBuf::from("/env/repo")
        );
        assert_eq!(
            pick(None, Some(OsString::new()), home.clone()).expect("empty env"),
            PathBuf::from("/home/u/.cidfs")
        );
        assert!(pick(None, None, None).is_err());
        assert!(pick(Some("rel"), None, None)
            .expect("relative")
            .is_absolute());
    }

    #[test]
    fn init_creates_private_dir_config_and_identity_once() {
        let (_dir, repo) = temp_repo();
        assert!(!repo.is_initialized());
        assert!(repo.init().expect("init"));
        assert!(repo.is_initialized());
        assert_eq!(mode_of(repo.root()), 0o700);
        assert_eq!(
            fs::read_to_string(repo.config_path()).expect("config"),
            DEFAULT_CONFIG_TOML
        );
        assert_eq!(repo.config().expect("config parses"), Config::default());
        assert_eq!(mode_of(&repo.identity_path()), 0o600);
        let first = repo.identity().expect("identity").public().to_peer_id();

        // Second init changes nothing.
        fs::write(repo.config_path(), "[metrics]\nenabled = false\n").expect("edit");
        assert!(!repo.init().expect("re-init"));
        assert!(!repo.config().expect("config").metrics.enabled);
        assert_eq!(
            repo.identity().expect("identity").public().to_peer_id(),
            first
        );
    }

    #[test]
    fn config_file_outside_the_repo_is_read_and_never_written() {
        let (dir, repo) = temp_repo();
        let outside = dir.path().join("etc-cidfs.toml");
        let repo = repo.with_config_file(Some(outside.clone()));
        let err = repo.config().unwrap_err();
        assert!(format!("{err:#}").contains("--config"), "{err:#}");
        assert!(repo.init().expect("init"));
        assert!(!outside.exists() && !repo.root().join(CONFIG_FILE).exists());
        fs::write(&outside, "[metrics]\nenabled = false\n").expect("write");
        assert!(!repo.config().expect("config").metrics.enabled);
    }

    #[test]
    fn swarm_key_is_written_once_and_never_replaced() {
        let (_dir, repo) = temp_repo();
        repo.init().expect("init");
        let key = SwarmKey::generate();
        assert!(repo.write_swarm_key(&key).expect("first"));
        assert_eq!(mode_of(&repo.default_swarm_key_path()), 0o600);
        assert!(!repo.write_swarm_key(&key).expect("same key again"));
        let err = repo.write_swarm_key(&SwarmKey::generate()).unwrap_err();
        assert!(format!("{err:#}").contains(&key.fingerprint()), "{err:#}");
        let kept = repo.swarm_key(None, "").expect("read").expect("key");
        assert_eq!(kept.bytes(), key.bytes());
    }

    #[test]
    fn config_errors_name_the_file() {
        let (_dir, repo) = temp_repo();
        let e = format!("{:#}", repo.config().expect_err("uninitialized"));
        assert!(e.contains("cidfs init"), "{e}");
        repo.init().expect("init");
        fs::write(
            repo.config_path(),
            "[api]\nlisten = \"127.0.0.1:1\"\nport = 2\n",
        )
        .expect("w");
        let e = format!("{:#}", repo.config().expect_err("bad key"));
        assert!(e.contains("config.toml") && e.contains("port"), "{e}");
    }

    #[test]
    fn corrupt_identity_is_an_error_not_replaced() {
        let (_dir, repo) = temp_repo();
        repo.init().expect("init");
        fs::write(repo.identity_path(), b"garbage").expect("write");
        let e = format!("{:#}", repo.identity().expect_err("corrupt"));
        assert!(e.contains("identity.key"), "{e}");
        assert_eq!(fs::read(repo.identity_path()).expect("read"), b"garbage");
    }

    #[test]
    fn swarm_key_precedence_and_errors() {
        let (dir, repo) = temp_repo();
        repo.init().expect("init");
        assert_eq!(repo.swarm_key(None, "").expect("none"), None);

        fs::write(repo.default_swarm_key_path(), VECTOR_FILE).expect("write");
        let key = repo.swarm_key(None, "").expect("default").expect("some");
        assert_eq!(key.fingerprint(), "45fc986bbc9388a11d939df26f730f0c");

        // Config path (relative to the repo) beats the default file.
        let other = SwarmKey::generate();
        fs::write(repo.root().join("other.key"), other.to_file_string()).expect("write");
        assert_eq!(
            repo.swarm_key(None, "other.key").expect("configured"),
            Some(other.clone())
        );
        // The explicit path beats both.
        let third = SwarmKey::generate();
        let explicit = dir.path().join("third.key");
        fs::write(&explicit, third.to_file_string()).expect("write");
        assert_eq!(
            repo.swarm_key(Some(&explicit), "other.key")
                .expect("explicit"),
            Some(third)
        );

        // Named files must exist; parse errors name the file and what is wrong.
        let e = format!(
            "{:#}",
            repo.swarm_key(None, "missing.key").expect_err("missing")
        );
        assert!(e.contains("missing.key"), "{e}");
        fs::write(repo.default_swarm_key_path(), "/base16/\n00\n").expect("write");
        let e = format!("{:#}", repo.swarm_key(None, "").expect_err("bad"));
        assert!(e.contains("swarm.key") && e.contains("no header"), "{e}");
    }

    #[test]
    fn api_file_round_trip() {
        let (_dir, repo) = temp_repo();
        repo.init().expect("init");
        let e = format!("{:#}", repo.read_api_addr().expect_err("no daemon"));
        assert!(e.contains("no daemon running?") && e.contains("api"), "{e}");

        let addr: SocketAddr = "127.0.0.1:5001".parse().expect("addr");
        repo.write_api_file(&api_multiaddr(addr)).expect("write");
        assert_eq!(
            fs::read_to_string(repo.api_file()).expect("read"),
            "/ip4/127.0.0.1/tcp/5001"
        );
        assert_eq!(repo.read_api_addr().expect("read"), addr);

        let v6: SocketAddr = "[::1]:4321".parse().expect("addr");
        repo.write_api_file(&format!("{}\n", api_multiaddr(v6)))
            .expect("write");
        assert_eq!(repo.read_api_addr().expect("read"), v6);

        repo.remove_api_file().expect("remove");
        repo.remove_api_file().expect("remove again");
        assert!(repo.read_api_addr().is_err());

        assert!(parse_api_multiaddr("/dns4/example.com/tcp/1").is_err());
        assert!(parse_api_multiaddr("127.0.0.1:5001").is_err());
        assert_eq!(
            parse_api_multiaddr(" /ip4/10.0.0.1/tcp/80/http\n").expect("http suffix"),
            "10.0.0.1:80".parse::<SocketAddr>().expect("addr")
        );
    }

    #[test]
    fn second_lock_is_refused_until_the_first_is_dropped() {
        let (_dir, repo) = temp_repo();
        repo.init().expect("init");
        let held = repo.lock().expect("first lock");
        let e = format!("{:#}", repo.lock().expect_err("second lock"));
        assert!(e.contains("in use by another daemon"), "{e}");
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        assert_eq!(held.path(), repo.lock_path());
        drop(held);
        repo.lock().expect("lock after release");
    }
}
