//! Which files of a mount were read, in the order of their first read: what `cidfs image
//! optimize` records while a command starts in the mount, to put those files first in each
//! layer and mark them for prefetching.

use serde::Serialize;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::sync::lock;

/// Files a trace keeps; later first reads are counted, not kept.
pub const MAX_FILES: usize = 10_000;

/// One traced file: the layer it was read from and its path there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TracedFile {
    /// The layer's digest in the manifest.
    #[serde(rename = "Layer")]
    pub layer: String,
    /// The file's path in the layer (its TOC name, no leading `/`).
    #[serde(rename = "Path")]
    pub path: String,
}

/// The first reads of a mount's files. Cheap to share.
#[derive(Debug, Default)]
pub struct Trace {
    /// The digest of each layer, by its index in the mount.
    layers: Vec<Arc<str>>,
    seen: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    inodes: HashSet<u64>,
    files: Vec<(usize, String)>,
    dropped: u64,
}

impl Trace {
    pub fn new(layers: Vec<Arc<str>>) -> Self {
        Trace {
            layers,
            seen: Mutex::default(),
        }
    }

    /// Notes a read of inode `ino`, the file `name` of layer `layer` (`name` is asked only on
    /// its first read).
    pub fn record(&self, ino: u64, layer: usize, name: impl FnOnce() -> String) {
        let mut seen = lock(&self.seen);
        if seen.inodes.contains(&ino) {
            return;
        }
        if seen.files.len() >= MAX_FILES {
            seen.dropped += 1;
            return;
        }
        seen.inodes.insert(ino);
        seen.files.push((layer, name()));
    }

    /// The files read so far, in the order of their first read, and how many more were read
    /// past [`MAX_FILES`].
    pub fn files(&self) -> (Vec<TracedFile>, u64) {
        let seen = lock(&self.seen);
        let files = seen
            .files
            .iter()
            .filter_map(|(l, path)| {
                Some(TracedFile {
                    layer: self.layers.get(*l)?.to_string(),
                    path: path.clone(),
                })
            })
            .collect();
        (files, seen.dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_reads_are_kept_in_order_and_bounded() {
        let t = Trace::new(vec!["sha256:a".into(), "sha256:b".into()]);
        t.record(5, 1, || "usr/bin/python3".into());
        t.record(9, 0, || "etc/hosts".into());
        t.record(5, 1, || unreachable!("a second read does not ask the name"));
        let (files, dropped) = t.files();
        assert_eq!(dropped, 0);
        assert_eq!(
            files,
            vec![
                TracedFile {
                    layer: "sha256:b".into(),
                    path: "usr/bin/python3".into()
                },
                TracedFile {
                    layer: "sha256:a".into(),
                    path: "etc/hosts".into()
                },
            ]
        );
        for ino in 100..100 + MAX_FILES as u64 {
            t.record(ino, 0, || format!("f{ino}"));
        }
        let (files, dropped) = t.files();
        assert_eq!(files.len(), MAX_FILES);
        assert_eq!(dropped, 2);
    }
}
