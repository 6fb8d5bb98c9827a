//! Where images come from and go to, as users write them (skopeo's transport syntax):
//! `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`, `docker-archive:FILE[:NAME:TAG]`,
//! `docker://HOST[:PORT]/REPO[:TAG|@DIGEST]`. Pure.

use std::path::PathBuf;

/// An image source for `cidfs image push`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Oci { dir: PathBuf, tag: Option<String> },
    OciArchive { file: PathBuf, tag: Option<String> },
    DockerArchive { file: PathBuf, name: Option<String> },
    Registry(String),
}

/// An image destination for `cidfs image pull`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    Oci { dir: PathBuf, tag: Option<String> },
    DockerArchive { file: PathBuf, name: Option<String> },
}

const SOURCES: &str =
    "expected oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE or docker://HOST/REPO:TAG";
const DESTS: &str = "expected oci:DIR[:TAG] or docker-archive:FILE[:NAME:TAG]";

fn split_path(rest: &str) -> (PathBuf, Option<String>) {
    match rest.split_once(':') {
        Some((p, t)) if !t.is_empty() => (PathBuf::from(p), Some(t.to_string())),
        Some((p, _)) => (PathBuf::from(p), None),
        None => (PathBuf::from(rest), None),
    }
}

/// Why a source or destination is refused: the text given, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?}: {problem}")]
pub struct LocationError {
    pub text: String,
    pub problem: Problem,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("missing registry reference")]
    NoReference,
    #[error("no transport; {0}")]
    NoTransport(&'static str),
    #[error("unknown transport {0:?}; {1}")]
    Transport(String, &'static str),
    #[error("cidfs pulls into {DESTS}; copy from there with skopeo")]
    NotADestination,
    #[error("bad tag {0:?} (letters, digits, _ . -; at most 128)")]
    Tag(String),
    #[error("missing path")]
    NoPath,
    #[error("the name must be NAME:TAG")]
    NoTag,
    #[error("bad image name {0:?} (lowercase letters, digits, . _ - /)")]
    Name(String),
}

fn check_tag(tag: &Option<String>) -> Result<(), Problem> {
    if let Some(t) = tag {
        let ok = !t.is_empty()
            && t.len() <= 128
            && t.bytes().enumerate().all(|(i, b)| {
                b.is_ascii_alphanumeric() || b == b'_' || (i > 0 && (b == b'.' || b == b'-'))
            });
        if !ok {
            return Err(Problem::Tag(t.clone()));
        }
    }
    Ok(())
}

fn nonempty(p: &std::path::Path) -> Result<(), Problem> {
    if p.as_os_str().is_empty() {
        return Err(Problem::NoPath);
    }
    Ok(())
}

impl std::str::FromStr for Source {
    type Err = LocationError;
    fn from_str(text: &str) -> Result<Self, LocationError> {
        parse_source(text).map_err(|problem| LocationError {
            text: text.to_string(),
            problem,
        })
    }
}

fn parse_source(text: &str) -> Result<Source, Problem> {
    if let Some(rest) = text.strip_prefix("docker://") {
        if rest.is_empty() {
            return Err(Problem::NoReference);
        }
        return Ok(Source::Registry(rest.to_string()));
    }
    let (kind, rest) = text.split_once(':').ok_or(Problem::NoTransport(SOURCES))?;
    let src = match kind {
        "oci" => {
            let (dir, tag) = split_path(rest);
            check_tag(&tag)?;
            nonempty(&dir)?;
            Source::Oci { dir, tag }
        }
        "oci-archive" => {
            let (file, tag) = split_path(rest);
            check_tag(&tag)?;
            nonempty(&file)?;
            Source::OciArchive { file, tag }
        }
        "docker-archive" => {
            let (file, name) = split_path(rest);
            nonempty(&file)?;
            Source::DockerArchive { file, name }
        }
        other => return Err(Problem::Transport(other.to_string(), SOURCES)),
    };
    Ok(src)
}

impl std::str::FromStr for Dest {
    type Err = LocationError;
    fn from_str(text: &str) -> Result<Self, LocationError> {
        parse_dest(text).map_err(|problem| LocationError {
            text: text.to_string(),
            problem,
        })
    }
}

fn parse_dest(text: &str) -> Result<Dest, Problem> {
    let (kind, rest) = text.split_once(':').ok_or(Problem::NoTransport(DESTS))?;
    match kind {
        "oci" => {
            let (dir, tag) = split_path(rest);
            check_tag(&tag)?;
            nonempty(&dir)?;
            Ok(Dest::Oci { dir, tag })
        }
        "docker-archive" => {
            let (file, name) = split_path(rest);
            nonempty(&file)?;
            if let Some(n) = &name {
                let (repo, tag) = n.rsplit_once(':').ok_or(Problem::NoTag)?;
                let repo_ok = !repo.is_empty()
                    && repo.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/:".contains(&b)
                    });
                if !repo_ok {
                    return Err(Problem::Name(repo.to_string()));
                }
                check_tag(&Some(tag.to_string()))?;
            }
            Ok(Dest::DockerArchive { file, name })
        }
        "docker" | "oci-archive" => Err(Problem::NotADestination),
        other => Err(Problem::Transport(other.to_string(), DESTS)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse() {
        assert_eq!(
            "oci:/tmp/x:v1".parse::<Source>().unwrap(),
            Source::Oci {
                dir: "/tmp/x".into(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            "oci:/tmp/x".parse::<Source>().unwrap(),
            Source::Oci {
                dir: "/tmp/x".into(),
                tag: None
            }
        );
        assert_eq!(
            "docker-archive:a.tar".parse::<Source>().unwrap(),
            Source::DockerArchive {
                file: "a.tar".into(),
                name: None
            }
        );
        assert_eq!(
            "docker://127.0.0.1:5000/a/b:1".parse::<Source>().unwrap(),
            Source::Registry("127.0.0.1:5000/a/b:1".into())
        );
        for bad in ["x", "zip:foo", "oci:", "oci:/d:bad tag", "docker://"] {
            assert!(bad.parse::<Source>().is_err(), "{bad}");
        }
    }

    #[test]
    fn dests_parse() {
        assert_eq!(
            "docker-archive:/o.tar:ipfs/x:latest"
                .parse::<Dest>()
                .unwrap(),
            Dest::DockerArchive {
                file: "/o.tar".into(),
                name: Some("ipfs/x:latest".into())
            }
        );
        for (bad, problem) in [
            ("docker://x/y", Problem::NotADestination),
            ("docker-archive:/o.tar:NoTag", Problem::NoTag),
            ("docker-archive:/o.tar:Up:1", Problem::Name("Up".into())),
            ("oci-archive:x", Problem::NotADestination),
        ] {
            let e = bad.parse::<Dest>().unwrap_err();
            assert_eq!(e.problem, problem, "{bad}");
            assert!(e.to_string().contains(bad), "{e}");
        }
    }
}
