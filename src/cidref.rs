//! Parsing CID references as users and tools write them: `<cid>`, `/ipfs/<cid>`, `ipfs://<cid>`.
//! Pure; every error says what was wrong with the text.

use cid::Cid;

/// Why a reference was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CidRefError {
    #[error("empty CID reference")]
    Empty,
    #[error("invalid CID {text:?}: {reason}")]
    Invalid { text: String, reason: String },
    #[error("{text:?}: paths inside a DAG are not supported; give the CID of the file itself")]
    Path { text: String },
    #[error("{text:?}: IPNS names are not supported; give an /ipfs/ CID")]
    Ipns { text: String },
    #[error(
        "{text:?} is not a reference to an image by CID (HOST[:PORT]/ipfs/<CID>[:TAG|@DIGEST])"
    )]
    NotRegistryRef { text: String },
}

/// An image as users and runtimes name it: by CID, or by a name pushed to a registry endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    Cid(Cid),
    Named { repo: String, tag: String },
}

impl std::fmt::Display for ImageRef {
    /// The CID, or `repo:tag`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImageRef::Cid(cid) => write!(f, "{cid}"),
            ImageRef::Named { repo, tag } => write!(f, "{repo}:{tag}"),
        }
    }
}

/// Longest repository name (the distribution spec's bound).
pub const MAX_REPOSITORY: usize = 255;

/// Whether `name` is a repository name of the distribution spec: lowercase components of
/// letters and digits, joined inside by `.`, `_`, `__` or dashes, separated by `/`.
pub fn is_repository(name: &str) -> bool {
    let component = |c: &str| {
        let b = c.as_bytes();
        let alnum = |x: &u8| x.is_ascii_lowercase() || x.is_ascii_digit();
        let mut i = 0;
        if !b.first().is_some_and(alnum) {
            return false;
        }
        while i < b.len() {
            // a run of letters and digits, then one separator, then again
            while i < b.len() && alnum(&b[i]) {
                i += 1;
            }
            if i == b.len() {
                return true;
            }
            let sep = &c[i..];
            let len = if sep.starts_with("__") {
                2
            } else if b[i] == b'.' || b[i] == b'_' {
                1
            } else {
                b[i..].iter().take_while(|x| **x == b'-').count()
            };
            if len == 0 {
                return false;
            }
            i += len;
            if !b.get(i).is_some_and(alnum) {
                return false;
            }
        }
        true
    };
    !name.is_empty() && name.len() <= MAX_REPOSITORY && name.split('/').all(component)
}

/// Whether `t` is a tag of the distribution spec.
pub fn is_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// Parses an image as users write it: a CID reference ([`parse`]), or `NAME[:TAG]` (tag
/// `latest` when left out).
pub fn parse_image(text: &str) -> Result<ImageRef, CidRefError> {
    let t = text.trim();
    match parse(t) {
        Ok(cid) => Ok(ImageRef::Cid(cid)),
        Err(e) => name_and_tag(t).ok_or(e),
    }
}

/// `NAME[:TAG]`, when it is one (and not `ipfs/…`).
fn name_and_tag(t: &str) -> Option<ImageRef> {
    let (repo, tag) = match t.rsplit_once(':') {
        Some((r, tag)) if !tag.contains('/') => (r, tag),
        _ => (t, "latest"),
    };
    (is_repository(repo) && is_tag(tag) && repo != "ipfs" && !repo.starts_with("ipfs/")).then(
        || ImageRef::Named {
            repo: repo.to_string(),
            tag: tag.to_string(),
        },
    )
}

/// Parses a CID reference.
pub fn parse(text: &str) -> Result<Cid, CidRefError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(CidRefError::Empty);
    }
    if t.starts_with("/ipns/") || t.starts_with("ipns://") {
        return Err(CidRefError::Ipns { text: t.into() });
    }
    let rest = t
        .strip_prefix("/ipfs/")
        .or_else(|| t.strip_prefix("ipfs://"))
        .unwrap_or(t);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') {
        return Err(CidRefError::Path { text: t.into() });
    }
    if rest.is_empty() {
        return Err(CidRefError::Empty);
    }
    Cid::try_from(rest).map_err(|e| CidRefError::Invalid {
        text: rest.into(),
        reason: e.to_string(),
    })
}

/// The image of a registry reference to a cidfs registry endpoint: `HOST[:PORT]/ipfs/<CID>…`
/// ([`parse_registry_ref`]), or `HOST[:PORT]/NAME[:TAG]` for a name pushed to it.
pub fn parse_registry_image(text: &str) -> Result<ImageRef, CidRefError> {
    match parse_registry_ref(text) {
        Ok(cid) => Ok(ImageRef::Cid(cid)),
        Err(e @ CidRefError::Invalid { .. }) => Err(e),
        Err(e) => {
            let bare = text.strip_prefix("docker://").unwrap_or(text);
            bare.split_once('/')
                .and_then(|(_host, path)| name_and_tag(path))
                .ok_or(e)
        }
    }
}

/// The image CID of a registry reference to a cidfs registry endpoint,
/// `[docker://]HOST[:PORT]/ipfs/<CID>[:TAG|@DIGEST]`, as containers/storage and containerd pass
/// it on. Whichever host serves it, `ipfs/<CID>` names the same content.
pub fn parse_registry_ref(text: &str) -> Result<Cid, CidRefError> {
    let bare = text
        .strip_prefix("docker://")
        .or_else(|| text.strip_prefix("//"))
        .unwrap_or(text);
    let not_ref = || CidRefError::NotRegistryRef { text: text.into() };
    let (_host, path) = bare.split_once('/').ok_or_else(not_ref)?;
    let rest = path.strip_prefix("ipfs/").ok_or_else(not_ref)?;
    // a CID has neither `:` nor `@`: what follows is the tag or the digest
    let cid = rest.split([':', '@']).next().unwrap_or(rest);
    if cid.is_empty() || cid.contains('/') {
        return Err(not_ref());
    }
    Cid::try_from(cid).map_err(|e| CidRefError::Invalid {
        text: cid.into(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_distribution_grammar() {
        for ok in ["app", "team/app", "a.b/c__d/e---f", "x9/y_z"] {
            assert!(is_repository(ok), "{ok}");
        }
        for bad in [
            "",
            "App",
            "team/-app",
            "a..b",
            "app_",
            "a/",
            "/a",
            "a___b",
            "a.-b",
        ] {
            assert!(!is_repository(bad), "{bad}");
        }
        let named = |r: &str, t: &str| ImageRef::Named {
            repo: r.into(),
            tag: t.into(),
        };
        assert_eq!(parse_image("team/app:1.0"), Ok(named("team/app", "1.0")));
        assert_eq!(parse_image("team/app"), Ok(named("team/app", "latest")));
        assert!(matches!(parse_image(V1), Ok(ImageRef::Cid(_))));
        assert!(parse_image("ipfs/app:1").is_err());
        assert!(parse_image("Team/App").is_err());
        assert_eq!(
            parse_registry_image("127.0.0.1:5050/team/app:1.0"),
            Ok(named("team/app", "1.0"))
        );
        assert!(matches!(
            parse_registry_image(&format!("h:1/ipfs/{V1}:latest")),
            Ok(ImageRef::Cid(_))
        ));
    }

    const V1: &str = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4";

    #[test]
    fn accepts_the_three_forms_and_v0() {
        for t in [
            V1.to_string(),
            format!("/ipfs/{V1}"),
            format!("ipfs://{V1}"),
            format!(" {V1}\n"),
        ] {
            assert_eq!(parse(&t).unwrap().to_string(), V1);
        }
        assert!(parse("QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH").is_ok());
    }

    #[test]
    fn rejects_bad_references_with_reasons() {
        assert_eq!(parse(""), Err(CidRefError::Empty));
        assert_eq!(parse("/ipfs/"), Err(CidRefError::Empty));
        assert!(matches!(
            parse("bafy-not-a-cid"),
            Err(CidRefError::Invalid { .. })
        ));
        assert!(matches!(parse("Qm123"), Err(CidRefError::Invalid { .. })));
        // truncated base32
        assert!(matches!(parse(&V1[..20]), Err(CidRefError::Invalid { .. })));
        assert!(matches!(
            parse(&format!("/ipfs/{V1}/etc/passwd")),
            Err(CidRefError::Path { .. })
        ));
        assert!(matches!(
            parse("/ipns/example.com"),
            Err(CidRefError::Ipns { .. })
        ));
        let msg = parse("zzz").unwrap_err().to_string();
        assert!(msg.contains("invalid CID \"zzz\""), "{msg}");
    }
}
