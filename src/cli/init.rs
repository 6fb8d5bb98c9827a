//! `cidfs init`: the repo, and the swarm key of a private swarm (`--private` starts one,
//! `--swarm-key-from` joins one).

use anyhow::Context;
use cidfs_p2p::psk::SwarmKey;
use std::io::Read;
use std::path::Path;

use super::args::InitArgs;
use crate::repo::Repo;

pub fn init(repo: &Repo, a: &InitArgs) -> anyhow::Result<()> {
    let key_path = repo.default_swarm_key_path();
    if a.private && key_path.exists() {
        anyhow::bail!(
            "{} exists already: this node is in a private swarm. To join another node to it, \
             copy that file there and run `cidfs init --swarm-key-from FILE`; to start a new \
             swarm instead, remove the file first",
            key_path.display()
        );
    }
    let key = match (&a.swarm_key_from, a.private) {
        (Some(source), _) => Some(read_key(source)?),
        (None, true) => Some(SwarmKey::generate()),
        (None, false) => None,
    };
    if repo.init()? {
        println!("initialized cidfs repo at {}", repo.root().display());
    } else {
        println!("cidfs repo already exists at {}", repo.root().display());
    }
    println!("peer identity: {}", repo.identity()?.public().to_peer_id());
    let Some(key) = key else { return Ok(()) };
    let written = repo.write_swarm_key(&key)?;
    let fingerprint = key.fingerprint();
    if a.private {
        println!(
            "private swarm key written to {} (fingerprint {fingerprint})",
            key_path.display()
        );
        println!(
            "To join another node to this swarm, run this line there (it holds the key: keep it secret):"
        );
        println!("  cidfs init --swarm-key-from {}", hex::encode(key.bytes()));
        println!(
            "or copy {} to that node and run: cidfs init --swarm-key-from /path/to/swarm.key",
            key_path.display()
        );
    } else if written {
        println!(
            "swarm key written to {} (fingerprint {fingerprint})",
            key_path.display()
        );
    } else {
        println!(
            "{} already holds this swarm key (fingerprint {fingerprint})",
            key_path.display()
        );
    }
    Ok(())
}

/// The key from `--swarm-key-from`: 64 hex digits, `-` (a key file on stdin) or a key file.
fn read_key(source: &str) -> anyhow::Result<SwarmKey> {
    let source = source.trim();
    if source == "-" {
        let mut data = Vec::new();
        std::io::stdin()
            .take(64 * 1024)
            .read_to_end(&mut data)
            .context("reading the swarm key from stdin")?;
        return parse_key_text(&data).context("invalid swarm key on stdin");
    }
    if looks_like_hex_key(source) && !Path::new(source).exists() {
        return parse_key_text(source.as_bytes());
    }
    let data = std::fs::read(source).with_context(|| {
        format!(
            "reading swarm key file {source} (--swarm-key-from takes 64 hex digits, a file or -)"
        )
    })?;
    parse_key_text(&data).with_context(|| format!("invalid swarm key file {source}"))
}

fn looks_like_hex_key(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A kubo swarm.key file, or the bare 64 hex digits of one.
fn parse_key_text(data: &[u8]) -> anyhow::Result<SwarmKey> {
    let trimmed = String::from_utf8_lossy(data).trim().to_string();
    if looks_like_hex_key(&trimmed) {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(&trimmed, &mut bytes).context("not hex")?;
        return Ok(SwarmKey::from_bytes(bytes));
    }
    Ok(SwarmKey::parse_bytes(data)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_line_and_key_file_give_the_same_key() {
        let key = SwarmKey::generate();
        let from_hex = parse_key_text(hex::encode(key.bytes()).as_bytes()).unwrap();
        let from_file = parse_key_text(key.to_file_string().as_bytes()).unwrap();
        assert_eq!(from_hex.bytes(), key.bytes());
        assert_eq!(from_file.bytes(), key.bytes());
    }

    #[test]
    fn bad_keys_are_refused_with_the_reason() {
        for bad in ["", "abc", &"zz".repeat(32), &"ab".repeat(31)] {
            let err = parse_key_text(bad.as_bytes()).unwrap_err();
            assert!(!format!("{err:#}").is_empty());
        }
        let err = read_key("/nonexistent/swarm.key").unwrap_err();
        assert!(
            format!("{err:#}").contains("/nonexistent/swarm.key"),
            "{err:#}"
        );
    }
}
