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
