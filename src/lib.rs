//! cidfs: share container images across a private peer-to-peer swarm.
//!
//! Levels (a module imports only from lower levels; `levels::no_module_imports_from_above`
//! checks every `crate::` path outside tests):
//! 0. [`config`], [`sync`], [`cidref`], [`socket`] (owner-only Unix sockets), [`sched`]
//!    (threads on spare CPU time) and the `cidfs_p2p` crate
//! 1. [`repo`]: the repo directory and its config; [`blockstore`]: sled-indexed block storage,
//!    every block checked against its CID
//! 2. [`blockservice`]: local store first, then bitswap through the p2p node; [`metrics`]: the
//!    instruments the levels above record into, and the `/metrics` page
//! 3. [`unixfs`]: kubo-identical `add` and range reads over any block getter
//! 4. [`image`]: the IPFS-enabled OCI format, eStargz, push / pull / inspect
//! 5. [`mount`]: lazy FUSE rootfs mounts of images, chunk by chunk from the swarm
//! 6. [`api`]: the kubo RPC subset on axum; [`registry_server`]: the read-only OCI registry
//!    endpoint; [`layer_store`]: the Podman additional layer store; [`snapshotter`]: the
//!    containerd snapshotter
//! 7. [`daemon`]: wires it all together
//! 8. [`cli`]: clap front-end; every networked subcommand is an API client

pub mod api;
pub mod blockservice;
pub mod blockstore;
pub mod cidref;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod image;
pub mod layer_store;
pub mod metrics;
pub mod mount;
pub mod registry_server;
pub mod repo;
pub mod sched;
pub mod snapshotter;
pub mod socket;
pub mod sync;
#[cfg(test)]
pub(crate) mod test_utils;
pub mod unixfs;

#[cfg(feature = "fuzzing")]
pub mod fuzzing;

#[cfg(test)]
mod levels {
    /// Each top-level module's level (see the crate docs); tests and fuzzing stand above all.
    const LEVELS: &[(&str, u8)] = &[
        ("config", 0),
        ("sync", 0),
        ("socket", 0),
        ("sched", 0),
        ("cidref", 0),
        ("repo", 1),
        ("blockstore", 1),
        ("blockservice", 2),
        ("metrics", 2),
        ("unixfs", 3),
        ("image", 4),
        ("mount", 5),
        ("api", 6),
        ("registry_server", 6),
        ("layer_store", 6),
        ("snapshotter", 6),
        ("daemon", 7),
        ("cli", 8),
        ("main", 9),
        ("lib", 9),
        ("fuzzing", 9),
        ("test_utils", 9),
    ];

    fn level(module: &str) -> Option<u8> {
        LEVELS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
    }

    /// Every `crate::x` path (imports, paths in code and doc links) in non-test code names a
    /// module of a lower level or the file's own, so data flows one way.
    #[test]
    fn no_module_imports_from_above() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![src.clone()];
        let mut found = Vec::new();
        while let Some(p) = files.pop() {
            if p.is_dir() {
                files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
                continue;
            }
            let rel = p.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
            if !rel.ends_with(".rs") || rel.ends_with("tests.rs") {
                continue;
            }
            let top = rel.split('/').next().unwrap().trim_end_matches(".rs");
            let own = level(top).unwrap_or_else(|| panic!("{rel}: module {top} has no level"));
            let text = std::fs::read_to_string(&p).unwrap();
            // test modules come last in a file
            let code = text.split("#[cfg(test)]\nmod ").next().unwrap();
            for (i, _) in code.match_indices("crate::") {
                let name: String = code[i + 7..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    !code[i + 7..].starts_with('{'),
                    "{rel}: a grouped `crate::{{…}}` import: name each path"
                );
                match level(&name) {
                    Some(l) if name != top && l >= own => found.push(format!("{rel} -> {name}")),
                    _ => {}
                }
            }
        }
        assert!(
            found.is_empty(),
            "imports from the same or a higher level: {found:#?}"
        );
    }
}
