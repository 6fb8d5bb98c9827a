//! `HOST[:PORT]/REPO[:TAG][@sha256:…]` as users write it after `docker://` (pure).

use anyhow::{bail, Context};
use std::fmt;

use crate::image::oci;

/// Docker Hub's name as users write it, and where its API really is.
const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// An image in a registry. `host` is `host[:port]` as used in URLs; `tag` is `latest` when
/// neither a tag nor a digest was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub host: String,
    pub repo: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl Reference {
    /// What to ask the manifest endpoint for: the digest when there is one, else the tag.
    pub fn reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.host, self.repo)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Reference {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        parse(s).with_context(|| {
            format!("bad image reference {s:?} (expected HOST[:PORT]/REPO[:TAG][@sha256:DIGEST])")
        })
    }
}

fn parse(s: &str) -> anyhow::Result<Reference> {
    let (rest, digest) = match s.split_once('@') {
        Some((rest, d)) => {
            oci::digest_hex(d).map_err(anyhow::Error::msg)?;
            (rest, Some(d.to_string()))
        }
        None => (s, None),
    };
    let Some((host, path)) = rest.split_once('/') else {
        bail!("missing repository after the registry host");
    };
    check_host(host)?;
    // A ':' after the last '/' starts the tag (a ':' before it belongs to the host's port).
    let (repo, tag) = match path.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, Some(tag)),
        _ => (path, None),
    };
    if repo.is_empty() {
        bail!("missing repository after the registry host");
    }
    check_repo(repo)?;
    if let Some(t) = tag {
        check_tag(t)?;
    }
    let tag = match (tag, &digest) {
        (Some(t), _) => Some(t.to_string()),
        (None, None) => Some("latest".to_string()),
        (None, Some(_)) => None,
    };
    let (host, repo) = if host == DOCKER_HUB || host == "index.docker.io" {
        let repo = if repo.contains('/') {
            repo.to_string()
        } else {
            format!("library/{repo}")
        };
        (DOCKER_HUB_API.to_string(), repo)
    } else {
        (host.to_string(), repo.to_string())
    };
    Ok(Reference {
        host,
        repo,
        tag,
        digest,
    })
}

/// A DNS name or IPv4 address with an optional port, `localhost[:port]`, or `[v6][:port]`. The
/// first path component must look like a host; `ubuntu:22.04` alone is not guessed to be Docker
/// Hub.
fn check_host(host: &str) -> anyhow::Result<()> {
    if host.is_empty() {
        bail!("missing registry host");
    }
    let (name, port) = if let Some(v6) = host.strip_prefix('[') {
        let (addr, after) = v6
            .split_once(']')
            .with_context(|| format!("bad registry host {host:?}: unclosed '['"))?;
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            bail!("bad registry host {host:?}: not an IPv6 address");
        }
        match after {
            "" => (None, None),
            p => match p.strip_prefix(':') {
                Some(p) => (None, Some(p)),
                None => bail!("bad registry host {host:?}"),
            },
        }
    } else {
        match host.split_once(':') {
            Some((n, p)) => (Some(n), Some(p)),
            None => (Some(host), None),
        }
    };
    if let Some(p) = port {
        if p.parse::<u16>().is_err() {
            bail!("bad registry port in {host:?}");
        }
    }
    if let Some(name) = name {
        let label_ok = |l: &str| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if !name.split('.').all(label_ok) {
            bail!("bad registry host {host:?}");
        }
        if !(name.contains('.') || port.is_some() || name == "localhost") {
            bail!(
                "{host:?} does not look like a registry host (name it with a '.', a port or \
                 localhost, e.g. docker.io/{host})"
            );
        }
    }
    Ok(())
}

/// The distribution spec's name rule: `/`-separated components of `[a-z0-9]+` joined by `.`,
/// `_`, `__` or `-+`.
fn check_repo(repo: &str) -> anyhow::Result<()> {
    if repo.bytes().any(|b| b.is_ascii_uppercase()) {
        bail!("bad repository {repo:?}: repository names must be lowercase");
    }
    for comp in repo.split('/') {
        if !component_ok(comp) {
            bail!(
                "bad repository {repo:?}: each '/'-separated part must be lowercase letters and \
                 digits, joined by '.', '_', '__' or '-'"
            );
        }
    }
    Ok(())
}

fn component_ok(c: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let b = c.as_bytes();
    let (Some(&first), Some(&last)) = (b.first(), b.last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    // Separators: '.', '_', '__', or any run of '-'.
    let mut i = 0;
    while i < b.len() {
        let x = b[i];
        if alnum(x) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|s| s == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub(crate) fn check_tag(tag: &str) -> anyhow::Result<()> {
    let b = tag.as_bytes();
    let ok = matches!(b.first(), Some(f) if f.is_ascii_alphanumeric() || *f == b'_')
        && b.len() <= 128
        && b.iter()
            .all(|x| x.is_ascii_alphanumeric() || matches!(x, b'.' | b'_' | b'-'));
    if !ok {
        bail!(
            "bad tag {tag:?}: up to 128 letters, digits, '_', '.' and '-', not starting with \
             '.' or '-'"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Reference {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e:#}"))
    }
    fn err(s: &str) -> String {
        format!("{:#}", s.parse::<Reference>().unwrap_err())
    }
    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn parses() {
        let r = p("127.0.0.1:5000/a/b:1.0");
        assert_eq!(
            r,
            Reference {
                host: "127.0.0.1:5000".into(),
                repo: "a/b".into(),
                tag: Some("1.0".into()),
                digest: None
            }
        );
        assert_eq!(r.reference(), "1.0");
        assert_eq!(r.to_string(), "127.0.0.1:5000/a/b:1.0");
        assert_eq!(p("localhost:5000/x").tag.as_deref(), Some("latest"));
        assert_eq!(p("localhost/x").host, "localhost");
        assert_eq!(p("reg.example.com/x_y__z.w-v---u").repo, "x_y__z.w-v---u");
        assert_eq!(p("[::1]:5000/x").host, "[::1]:5000");

        let r = p(&format!("quay.io/a/b@{D}"));
        assert_eq!((r.tag.as_deref(), r.digest.as_deref()), (None, Some(D)));
        assert_eq!(r.reference(), D);
        let r = p(&format!("quay.io/a/b:v1@{D}"));
        assert_eq!((r.tag.as_deref(), r.reference()), (Some("v1"), D));

        let r = p("docker.io/alpine:3");
        assert_eq!(
            (r.host.as_str(), r.repo.as_str()),
            ("registry-1.docker.io", "library/alpine")
        );
        assert_eq!(p("docker.io/grafana/grafana").repo, "grafana/grafana");
    }

    #[test]
    fn rejects() {
        assert!(
            err("127.0.0.1:5000").contains("missing repository"),
            "{}",
            err("127.0.0.1:5000")
        );
        assert!(err("127.0.0.1:5000/").contains("missing repository"));
        assert!(err("127.0.0.1:5000/:tag").contains("missing repository"));
        assert!(err("127.0.0.1:5000/App").contains("must be lowercase"));
        assert!(err("127.0.0.1:5000/a//b").contains("bad repository"));
        assert!(err("127.0.0.1:5000/a-:1").contains("bad repository"));
        assert!(err("127.0.0.1:5000/a:.x").contains("bad tag"));
        assert!(err("127.0.0.1:5000/a:").contains("bad tag"));
        assert!(err(&format!("127.0.0.1:5000/a:{}", "t".repeat(129))).contains("bad tag"));
        assert!(err("127.0.0.1:5000/a@sha256:abc").contains("bad digest"));
        assert!(err("127.0.0.1:5000/a@md5:abc").contains("only sha256"));
        assert!(err("127.0.0.1:99999/a").contains("bad registry port"));
        assert!(err("ubuntu/x").contains("does not look like a registry host"));
        assert!(err("/x").contains("missing registry host"));
        assert!(err("bad_host.com/x").contains("bad registry host"));
        // The context names the input and the expected form.
        assert!(err("127.0.0.1:5000/App").contains("HOST[:PORT]/REPO"));
    }
}
