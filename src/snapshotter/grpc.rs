//! The gRPC adapter: containerd.services.snapshots.v1 requests to [`Snapshotter`] calls, and
//! [`Error`]s to the status codes containerd's `errdefs.FromGRPC` turns back into its errors
//! (AlreadyExists is how a remote layer says "already there"). The `snapshotter` field of each
//! request is ignored: the socket serves one snapshotter.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tonic::{Request, Response, Status};

use super::meta::{Kind, Named};
use super::proto::snapshots::snapshots_server::{Snapshots, SnapshotsServer};
use super::proto::snapshots::{self as pb};
use super::proto::Mount;
use super::{Error, MountSpec, Snapshotter};

/// Infos per `List` response message.
const LIST_BATCH: usize = 100;

pub struct Service(Arc<Snapshotter>);

pub fn service(s: Arc<Snapshotter>) -> SnapshotsServer<Service> {
    SnapshotsServer::new(Service(s))
}

fn status(op: &str, e: Error) -> Status {
    let msg = format!("{op}: {e}");
    match e {
        Error::NotFound(_) => Status::not_found(msg),
        Error::AlreadyExists(_) => Status::already_exists(msg),
        Error::FailedPrecondition(_) => Status::failed_precondition(msg),
        Error::InvalidArgument(_) => Status::invalid_argument(msg),
        Error::Unavailable(_) => Status::unavailable(msg),
        Error::Internal(_) => {
            tracing::warn!("snapshotter: {msg}");
            Status::internal(msg)
        }
    }
}

fn labels(l: HashMap<String, String>) -> BTreeMap<String, String> {
    l.into_iter().collect()
}

fn mounts(m: Vec<MountSpec>) -> Vec<Mount> {
    m.into_iter()
        .map(|m| Mount {
            r#type: m.kind,
            source: m.source,
            target: String::new(),
            options: m.options,
        })
        .collect()
}

fn timestamp(nanos: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: nanos.div_euclid(1_000_000_000),
        nanos: nanos.rem_euclid(1_000_000_000) as i32,
    }
}

fn info(n: Named) -> pb::Info {
    let s = n.snapshot;
    pb::Info {
        name: n.name,
        parent: s.parent,
        kind: match s.kind {
            Kind::View => pb::Kind::View,
            Kind::Active => pb::Kind::Active,
            Kind::Committed => pb::Kind::Committed,
        } as i32,
        created_at: Some(timestamp(s.created)),
        updated_at: Some(timestamp(s.updated)),
        labels: s.labels.into_iter().collect(),
    }
}

#[tonic::async_trait]
impl Snapshots for Service {
    async fn prepare(
        &self,
        r: Request<pb::PrepareSnapshotRequest>,
    ) -> Result<Response<pb::PrepareSnapshotResponse>, Status> {
        let r = r.into_inner();
        tracing::debug!("snapshotter: prepare {:?} on {:?}", r.key, r.parent);
        let m = self
            .0
            .prepare(&r.key, &r.parent, labels(r.labels))
            .await
            .map_err(|e| status("prepare", e))?;
        Ok(Response::new(pb::PrepareSnapshotResponse {
            mounts: mounts(m),
        }))
    }

    async fn view(
        &self,
        r: Request<pb::ViewSnapshotRequest>,
    ) -> Result<Response<pb::ViewSnapshotResponse>, Status> {
        let r = r.into_inner();
        tracing::debug!("snapshotter: view {:?} of {:?}", r.key, r.parent);
        let m = self
            .0
            .view(&r.key, &r.parent, labels(r.labels))
            .await
            .map_err(|e| status("view", e))?;
        Ok(Response::new(pb::ViewSnapshotResponse {
            mounts: mounts(m),
        }))
    }

    async fn mounts(
        &self,
        r: Request<pb::MountsRequest>,
    ) -> Result<Response<pb::MountsResponse>, Status> {
        let m = self
            .0
            .mounts(&r.into_inner().key)
            .await
            .map_err(|e| status("mounts", e))?;
        Ok(Response::new(pb::MountsResponse { mounts: mounts(m) }))
    }

    async fn commit(&self, r: Request<pb::CommitSnapshotRequest>) -> Result<Response<()>, Status> {
        let r = r.into_inner();
        tracing::debug!("snapshotter: commit {:?} as {:?}", r.key, r.name);
        self.0
            .commit(&r.name, &r.key, labels(r.labels))
            .await
            .map_err(|e| status("commit", e))?;
        Ok(Response::new(()))
    }

    async fn remove(&self, r: Request<pb::RemoveSnapshotRequest>) -> Result<Response<()>, Status> {
        let key = r.into_inner().key;
        tracing::debug!("snapshotter: remove {key:?}");
        self.0.remove(&key).await.map_err(|e| status("remove", e))?;
        Ok(Response::new(()))
    }

    async fn stat(
        &self,
        r: Request<pb::StatSnapshotRequest>,
    ) -> Result<Response<pb::StatSnapshotResponse>, Status> {
        let n = self
            .0
            .stat(&r.into_inner().key)
            .map_err(|e| status("stat", e))?;
        Ok(Response::new(pb::StatSnapshotResponse {
            info: Some(info(n)),
        }))
    }

    async fn update(
        &self,
        r: Request<pb::UpdateSnapshotRequest>,
    ) -> Result<Response<pb::UpdateSnapshotResponse>, Status> {
        let r = r.into_inner();
        let i = r
            .info
            .ok_or_else(|| Status::invalid_argument("update: no snapshot info"))?;
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let n = self
            .0
            .update(&i.name, labels(i.labels), &paths)
            .map_err(|e| status("update", e))?;
        Ok(Response::new(pb::UpdateSnapshotResponse {
            info: Some(info(n)),
        }))
    }

    type ListStream =
        futures::stream::BoxStream<'static, Result<pb::ListSnapshotsResponse, Status>>;

    async fn list(
        &self,
        r: Request<pb::ListSnapshotsRequest>,
    ) -> Result<Response<Self::ListStream>, Status> {
        let all = self
            .0
            .list(&r.into_inner().filters)
            .map_err(|e| status("list", e))?;
        let mut batches = Vec::new();
        let mut it = all.into_iter().map(info).peekable();
        while it.peek().is_some() {
            let info: Vec<_> = it.by_ref().take(LIST_BATCH).collect();
            batches.push(Ok(pb::ListSnapshotsResponse { info }));
        }
        Ok(Response::new(Box::pin(futures::stream::iter(batches))))
    }

    async fn usage(
        &self,
        r: Request<pb::UsageRequest>,
    ) -> Result<Response<pb::UsageResponse>, Status> {
        let u = self
            .0
            .usage(&r.into_inner().key)
            .await
            .map_err(|e| status("usage", e))?;
        Ok(Response::new(pb::UsageResponse {
            size: u.size,
            inodes: u.inodes,
        }))
    }

    async fn cleanup(&self, _: Request<pb::CleanupRequest>) -> Result<Response<()>, Status> {
        self.0.cleanup().await.map_err(|e| status("cleanup", e))?;
        Ok(Response::new(()))
    }
}
