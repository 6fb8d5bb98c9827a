//! `image inspect`: an image's index, manifests, configs and a table of its layers.

use serde::Serialize;

use super::blob_store::BlobStore;
use super::estargz::{footer, FOOTER_SIZE};
use super::oci::{self, ANNOTATION_TOC_DIGEST};
use super::pull::Resolved;

#[derive(Debug, Serialize)]
pub struct Report {
    pub root: String,
    #[serde(rename = "rootDescriptor")]
    pub root_desc: oci::Descriptor,
    pub index: oci::Index,
    pub images: Vec<ImageReport>,
}

#[derive(Debug, Serialize)]
pub struct ImageReport {
    pub platform: String,
    pub descriptor: oci::Descriptor,
    pub manifest: oci::Manifest,
    pub config: serde_json::Value,
    pub layers: Vec<LayerReport>,
}

#[derive(Debug, Serialize)]
pub struct LayerReport {
    pub digest: String,
    pub size: i64,
    pub cid: String,
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// The blob ends with an eStargz footer.
    pub estargz: bool,
    #[serde(rename = "tocDigest", skip_serializing_if = "Option::is_none")]
    pub toc_digest: Option<String>,
}

/// Build the report; reads the last bytes of each layer to look for an eStargz footer.
pub async fn inspect<S: BlobStore>(store: &S, r: &Resolved) -> anyhow::Result<Report> {
    let mut images = Vec::new();
    for i in &r.images {
        let mut layers = Vec::new();
        for l in &i.manifest.layers {
            let cid = l.cid().map_err(|e| anyhow::anyhow!(e))?;
            let size = l.size.max(0) as u64;
            let estargz = if size >= FOOTER_SIZE as u64 {
                let tail = store
                    .cat_bytes(&cid, size - FOOTER_SIZE as u64, Some(FOOTER_SIZE as u64))
                    .await?;
                footer::parse(&tail).is_ok()
            } else {
                false
            };
            layers.push(LayerReport {
                digest: l.digest.clone(),
                size: l.size,
                cid: cid.to_string(),
                media_type: l.media_type.clone(),
                estargz,
                toc_digest: l.annotations.get(ANNOTATION_TOC_DIGEST).cloned(),
            });
        }
        let config: serde_json::Value = serde_json::from_slice(&i.config)?;
        let platform = i
            .desc
            .platform
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_else(|| {
                oci::ConfigSummary::parse(&i.config)
                    .map(|c| c.platform().to_string())
                    .unwrap_or_default()
            });
        images.push(ImageReport {
            platform,
            descriptor: i.desc.clone(),
            manifest: i.manifest.clone(),
            config,
            layers,
        });
    }
    Ok(Report {
        root: r.root.to_string(),
        root_desc: r.root_desc.clone(),
        index: r.index.clone(),
        images,
    })
}

/// The human-readable form.
pub fn render(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "Image      {}", r.root);
    let _ = writeln!(
        s,
        "Index      {} ({} bytes)",
        r.root_desc.digest, r.root_desc.size
    );
    for i in &r.images {
        let _ = writeln!(s);
        let _ = writeln!(s, "Platform   {}", i.platform);
        let _ = writeln!(
            s,
            "Manifest   {} ({} bytes) {}",
            i.descriptor.digest,
            i.descriptor.size,
            i.descriptor.urls.join(" ")
        );
        let _ = writeln!(
            s,
            "Config     {} ({} bytes) {}",
            i.manifest.config.digest,
            i.manifest.config.size,
            i.manifest.config.urls.join(" ")
        );
        let c = &i.config;
        let show = |v: &serde_json::Value| match v {
            serde_json::Value::Null => "-".to_string(),
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let _ = writeln!(s, "Created    {}", show(&c["created"]));
        let _ = writeln!(s, "Entrypoint {}", show(&c["config"]["Entrypoint"]));
        let _ = writeln!(s, "Cmd        {}", show(&c["config"]["Cmd"]));
        if let Some(env) = c["config"]["Env"].as_array() {
            for e in env {
                let _ = writeln!(s, "Env        {}", show(e));
            }
        }
        let total: i64 = i.layers.iter().map(|l| l.size).sum();
        let _ = writeln!(s, "Layers     {} ({} bytes)", i.layers.len(), total);
        let _ = writeln!(
            s,
            "  {:<3} {:<19} {:>12}  {:<61} {:<8} TOC",
            "#", "DIGEST", "SIZE", "CID", "ESTARGZ"
        );
        for (n, l) in i.layers.iter().enumerate() {
            let _ = writeln!(
                s,
                "  {:<3} {:<19} {:>12}  {:<61} {:<8} {}",
                n + 1,
                super::progress::short(&l.digest),
                l.size,
                l.cid,
                if l.estargz { "yes" } else { "no" },
                l.toc_digest
                    .as_deref()
                    .map(super::progress::short)
                    .unwrap_or("-")
            );
        }
    }
    s
}
