//! A pull-only client of the OCI distribution API (REFERENCE §7). STUB: replaced by helper C.
#![allow(dead_code, unused_variables)]

use std::path::Path;

use super::oci::Descriptor;

#[derive(Debug, Clone)]
pub struct Reference {
    pub host: String,
    pub repo: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl std::str::FromStr for Reference {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        anyhow::bail!("registry references are not supported yet: {s}")
    }
}

pub struct Credentials {
    pub username: String,
    pub password: String,
}

pub fn credentials_for(
    host: &str,
    explicit: Option<&str>,
    authfile: Option<&Path>,
) -> anyhow::Result<Option<Credentials>> {
    Ok(None)
}

pub struct Client;

impl Client {
    pub fn new(
        r: &Reference,
        insecure: bool,
        creds: Option<Credentials>,
    ) -> anyhow::Result<Client> {
        anyhow::bail!("unsupported")
    }
    pub async fn manifest(&self, reference: &str) -> anyhow::Result<(String, Vec<u8>)> {
        anyhow::bail!("unsupported")
    }
    pub async fn blob_bytes(&self, desc: &Descriptor) -> anyhow::Result<Vec<u8>> {
        anyhow::bail!("unsupported")
    }
    pub async fn blob_to_file(
        &self,
        desc: &Descriptor,
        path: &Path,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> anyhow::Result<()> {
        anyhow::bail!("unsupported")
    }
}
