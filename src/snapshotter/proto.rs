//! The containerd snapshots service, generated from `proto/*.proto` by `scripts/gen-proto.sh`
//! (tonic-prost-build, server side only) and committed, so a build needs no protoc.
#![allow(clippy::all, clippy::pedantic, missing_docs)]

pub mod containerd {
    pub mod types {
        include!("proto/containerd.types.rs");
    }
    pub mod services {
        pub mod snapshots {
            pub mod v1 {
                include!("proto/containerd.services.snapshots.v1.rs");
            }
        }
    }
}

pub use containerd::services::snapshots::v1 as snapshots;
pub use containerd::types::Mount;
