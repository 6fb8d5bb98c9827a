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

fn check_tag(tag: &Option<String>, text: &str) -> Result<(), String> {
    if let Some(t) = tag {
        let ok = !t.is_empty()
            && t.len() <= 128
            && t.bytes().enumerate().all(|(i, b)| {
                b.is_ascii_alphanumeric() || b == b'_' || (i > 0 && (b == b'.' || b == b'-'))
            });
        if !ok {
            return Err(format!(
                "{text:?}: bad tag {t:?} (letters, digits, _ . -; at most 128)"
            ));
        }
    }
    Ok(())
}

fn nonempty(p: &std::path::Path, text: &str) -> Result<(), String> {
    if p.as_os_str().is_empty() {
        return Err(format!("{text:?}: missing path"));
    }
    Ok(())
}

impl std::str::FromStr for Source {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        if let Some(rest) = text.strip_prefix("docker://") {
            if rest.is_empty() {
                return Err(format!("{text:?}: missing registry reference"));
            }
            return Ok(Source::Registry(rest.to_string()));
        }
        let (kind, rest) = text
            .split_once(':')
            .ok_or_else(|| format!("{text:?}: no transport; {SOURCES}"))?;
        let src = match kind {
            "oci" => {
                let (dir, tag) = split_path(rest);
                check_tag(&tag, text)?;
                nonempty(&dir, text)?;
                Source::Oci { dir, tag }
            }
            "oci-archive" => {
                let (file, tag) = split_path(rest);
                check_tag(&tag, text)?;
                nonempty(&file, text)?;
                Source::OciArchive { file, tag }
            }
            "docker-archive" => {
                let (file, name) = split_path(rest);
                nonempty(&file, text)?;
                Source::DockerArchive { file, name }
            }
            other => return Err(format!("{text:?}: unknown transport {other:?}; {SOURCES}")),
        };
        Ok(src)
    }
}

impl std::str::FromStr for Dest {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let (kind, rest) = text
            .split_once(':')
            .ok_or_else(|| format!("{text:?}: no transport; {DESTS}"))?;
        match kind {
            "oci" => {
                let (dir, tag) = split_path(rest);
                check_tag(&tag, text)?;
                nonempty(&dir, text)?;
                Ok(Dest::Oci { dir, tag })
            }
            "docker-archive" => {
                let (file, name) = split_path(rest);
                nonempty(&file, text)?;
                if let Some(n) = &name {
                    let (repo, tag) = n
                        .rsplit_once(':')
                        .ok_or_else(|| format!("{text:?}: the name must be NAME:TAG"))?;
                    let repo_ok = !repo.is_empty()
                        && repo.bytes().all(|b| {
                            b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/:".contains(&b)
                        });
                    if !repo_ok {
                        return Err(format!(
                            "{text:?}: bad image name {repo:?} (lowercase letters, digits, . _ - /)"
                        ));
                    }
                    check_tag(&Some(tag.to_string()), text)?;
                }
                Ok(Dest::DockerArchive { file, name })
            }
            "docker" | "oci-archive" => Err(format!(
                "{text:?}: cidfs pulls into {DESTS}; copy from there with skopeo"
            )),
            other => Err(format!("{text:?}: unknown transport {other:?}; {DESTS}")),
        }
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
        for bad in [
            "docker://x/y",
            "docker-archive:/o.tar:NoTag",
            "docker-archive:/o.tar:Up:1",
            "oci-archive:x",
        ] {
            let e = bad.parse::<Dest>().unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }
}
