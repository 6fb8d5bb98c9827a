//! The registry over real HTTP on loopback, serving an image pushed into an in-memory node:
//! manifests by tag and digest, blobs with single and multiple ranges, HEAD, and the bad requests
//! a registry must answer with the right status and OCI code. Real clients (skopeo, podman,
//! docker) pull from it in `tests/registry.rs`.

use std::sync::Arc;

use super::{router, Registry};
use crate::blockservice::BlockService;
use crate::blockstore::MemStore;
use crate::image::oci::{self, Descriptor};
use crate::image::pull;
use crate::image::tests::{push_dir, write_layout};
use crate::metrics::RegistryCounters;

struct Fixture {
    base: String,
    http: reqwest::Client,
    img: pull::Resolved,
    counters: Arc<RegistryCounters>,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let blocks = BlockService::new(Arc::new(MemStore::default()), None);
    let dir = tempfile::tempdir().unwrap();
    write_layout(dir.path(), "v1");
    let pushed = push_dir(&blocks, dir.path(), true).await.unwrap();
    let img = pull::resolve(&blocks, pushed.root, &[]).await.unwrap();
    let counters = Arc::new(RegistryCounters::default());
    let app = router(Registry::new(blocks, counters.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!(
        "http://{}/v2/ipfs/{}",
        listener.local_addr().unwrap(),
        pushed.root
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Fixture {
        base,
        http: reqwest::Client::new(),
        img,
        counters,
        _dir: dir,
    }
}

impl Fixture {
    async fn get(&self, path: &str, range: Option<&str>) -> reqwest::Response {
        let mut r = self.http.get(format!("{}{path}", self.base));
        if let Some(range) = range {
            r = r.header("Range", range);
        }
        r.send().await.unwrap()
    }

    fn layer(&self) -> &Descriptor {
        &self.img.images[0].manifest.layers[0]
    }

    async fn layer_bytes(&self) -> Vec<u8> {
        let r = self
            .get(&format!("/blobs/{}", self.layer().digest), None)
            .await;
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap().to_vec()
    }
}

/// The OCI error code of a response, with its status.
async fn code(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let v: serde_json::Value = r.json().await.unwrap();
    (
        status,
        v["errors"][0]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_and_blobs_with_digests_and_ranges() {
    let fx = fixture().await;
    // latest is the index, served with its media type and digest
    let r = fx.get("/manifests/latest", None).await;
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], oci::OCI_INDEX);
    assert_eq!(h["docker-content-digest"], fx.img.root_desc.digest.as_str());
    let body = r.bytes().await.unwrap();
    assert_eq!(oci::sha256_digest(&body), fx.img.root_desc.digest);
    assert_eq!(h["content-length"], body.len().to_string().as_str());
    // the manifest by digest, and HEAD of it (headers only)
    let m = &fx.img.images[0].desc;
    let r = fx.get(&format!("/manifests/{}", m.digest), None).await;
    assert_eq!(r.headers()["content-type"], oci::OCI_MANIFEST);
    assert_eq!(oci::sha256_digest(&r.bytes().await.unwrap()), m.digest);
    let r = fx
        .http
        .head(format!("{}/manifests/{}", fx.base, m.digest))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], m.size.to_string().as_str());
    assert_eq!(r.headers()["docker-content-digest"], m.digest.as_str());
    assert!(r.bytes().await.unwrap().is_empty());
    // blobs: the config and a layer, whole and verified
    let cfg = &fx.img.images[0].manifest.config;
    let r = fx.get(&format!("/blobs/{}", cfg.digest), None).await;
    assert_eq!(oci::sha256_digest(&r.bytes().await.unwrap()), cfg.digest);
    let layer = fx.layer_bytes().await;
    assert_eq!(oci::sha256_digest(&layer), fx.layer().digest);
    // one range
    let path = format!("/blobs/{}", fx.layer().digest);
    let r = fx.get(&path, Some("bytes=10-99")).await;
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 10-99/{}", layer.len()).as_str()
    );
    assert_eq!(&r.bytes().await.unwrap()[..], &layer[10..100]);
    let r = fx.get(&path, Some("bytes=-5")).await;
    assert_eq!(&r.bytes().await.unwrap()[..], &layer[layer.len() - 5..]);
    // several ranges: multipart/byteranges, each part with its Content-Range
    let r = fx.get(&path, Some("bytes=0-3,1000-1009")).await;
    assert_eq!(r.status(), 206);
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    let boundary = ct.split("boundary=").nth(1).unwrap().to_string();
    assert!(ct.starts_with("multipart/byteranges"), "{ct}");
    let body = r.bytes().await.unwrap();
    let mut want = Vec::new();
    for (a, b) in [(0usize, 3usize), (1000, 1009)] {
        want.extend_from_slice(
            format!(
                "\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes {a}-{b}/{}\r\n\r\n",
                layer.len()
            )
            .as_bytes(),
        );
        want.extend_from_slice(&layer[a..=b]);
    }
    want.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    assert_eq!(&body[..], &want[..]);
    // what was served is counted: 1 layer GET whole, 3 ranged (+ the ones above)
    let c = &fx.counters;
    assert_eq!(c.layers.load(std::sync::atomic::Ordering::Relaxed), 4);
    assert_eq!(c.configs.load(std::sync::atomic::Ordering::Relaxed), 1);
    // tags
    let r = fx.get("/tags/list", None).await;
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["tags"], serde_json::json!(["latest"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_the_right_status_and_code() {
    let fx = fixture().await;
    let host = fx.base.split("/v2/").next().unwrap().to_string();
    let root = fx.img.root.to_string();
    let get = |p: String| {
        let http = fx.http.clone();
        async move { http.get(p).send().await.unwrap() }
    };
    let zero = format!("sha256:{}", "0".repeat(64));
    let layer = fx.layer().digest.clone();
    let size = fx.layer().size;
    let cases: Vec<(String, u16, &str)> = vec![
        (format!("{}/manifests/v9", fx.base), 404, "MANIFEST_UNKNOWN"),
        (
            format!("{}/manifests/{zero}", fx.base),
            404,
            "MANIFEST_UNKNOWN",
        ),
        // a layer is a blob, not a manifest
        (
            format!("{}/manifests/{layer}", fx.base),
            404,
            "MANIFEST_UNKNOWN",
        ),
        (format!("{}/blobs/{zero}", fx.base), 404, "BLOB_UNKNOWN"),
        (
            format!("{}/blobs/sha256:xyz", fx.base),
            400,
            "DIGEST_INVALID",
        ),
        (
            format!("{}/blobs/md5:{}", fx.base, "0".repeat(32)),
            400,
            "DIGEST_INVALID",
        ),
        (
            format!("{host}/v2/ipfs/notacid/manifests/latest"),
            400,
            "NAME_INVALID",
        ),
        (
            format!("{host}/v2/ipfs/{}/manifests/latest", root.to_uppercase()),
            400,
            "NAME_INVALID",
        ),
        // CIDv0 of some block: refused by form, before any fetch
        (
            format!(
                "{host}/v2/ipfs/QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG/manifests/latest"
            ),
            400,
            "NAME_INVALID",
        ),
        (
            format!("{host}/v2/library/busybox/manifests/latest"),
            404,
            "NAME_UNKNOWN",
        ),
    ];
    for (url, status, want) in cases {
        assert_eq!(
            code(get(url.clone()).await).await,
            (status, want.to_string()),
            "{url}"
        );
    }
    // path traversal, sent byte for byte (HTTP clients normalise `..` away before sending)
    let addr = host.trim_start_matches("http://").to_string();
    for path in [
        format!("/v2/ipfs/../{root}/manifests/latest"),
        format!("/v2/ipfs/%2e%2e/{root}/manifests/latest"),
        format!("/v2/ipfs/{root}/../x/blobs/{layer}"),
        format!("/v2/ipfs/{root}//blobs/{layer}"),
    ] {
        let (status, body) = raw_get(&addr, &path).await;
        assert_eq!(status, 400, "{path}");
        assert!(body.contains("NAME_INVALID"), "{path}: {body}");
    }
    // an image CID that names no image here (a block that is not a descriptor)
    let not_image = fx.img.images[0].manifest.layers[0].cid().unwrap();
    let (status, c) = code(get(format!("{host}/v2/ipfs/{not_image}/manifests/latest")).await).await;
    assert_eq!((status, c.as_str()), (404, "NAME_UNKNOWN"));
    // a range past the end: 416 with the size
    let r = fx
        .http
        .get(format!("{}/blobs/{layer}", fx.base))
        .header("Range", format!("bytes={}-", size + 10))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes */{size}").as_str()
    );
    assert_eq!(code(r).await, (416, "SIZE_INVALID".to_string()));
    // writes: 405 UNSUPPORTED
    for (m, p) in [
        (
            reqwest::Method::PUT,
            format!("{}/manifests/latest", fx.base),
        ),
        (reqwest::Method::POST, format!("{}/blobs/uploads/", fx.base)),
        (
            reqwest::Method::DELETE,
            format!("{}/blobs/{layer}", fx.base),
        ),
    ] {
        let r = fx.http.request(m, p).send().await.unwrap();
        assert_eq!(code(r).await, (405, "UNSUPPORTED".to_string()));
    }
    // a TLS ClientHello on the plain port does not take the registry down
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(&[
        0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03,
    ])
    .await
    .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert_eq!(fx.get("/manifests/latest", None).await.status(), 200);
}

/// A GET of `path` exactly as written; status and body.
async fn raw_get(addr: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("answer in time")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// An image whose blocks no peer delivers in time is "try again" (503 `UNAVAILABLE`), not "no
/// such image" (404 `NAME_UNKNOWN`, what an offline node answers for the same CID): clients
/// retry 5xx and give up on 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_the_swarm_does_not_deliver_in_time_is_unavailable_not_unknown() {
    let elsewhere = BlockService::new(Arc::new(MemStore::default()), None);
    let dir = tempfile::tempdir().unwrap();
    write_layout(dir.path(), "v1");
    let root = push_dir(&elsewhere, dir.path(), true).await.unwrap().root;
    let (online, task) = crate::test_utils::lone_node(std::time::Duration::from_secs(1));
    let offline = BlockService::new(Arc::new(MemStore::default()), None);
    for (blocks, want) in [
        (online, (503, "UNAVAILABLE")),
        (offline, (404, "NAME_UNKNOWN")),
    ] {
        let app = router(Registry::new(blocks, Arc::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/v2/ipfs/{root}/manifests/latest",
            listener.local_addr().unwrap()
        );
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let (status, c) = code(reqwest::get(url).await.unwrap()).await;
        assert_eq!((status, c.as_str()), want);
        server.abort();
    }
    task.abort();
}

/// A registry that takes pushes (pushers from `config`), served on loopback with the callers'
/// addresses, over an in-memory node; its base URL.
async fn push_fixture(config: crate::config::RegistryConfig) -> (String, tempfile::TempDir) {
    push_fixture_with(config, None).await
}

/// [`push_fixture`] with the users of an htpasswd file.
async fn push_fixture_with(
    config: crate::config::RegistryConfig,
    htpasswd: Option<super::htpasswd::Htpasswd>,
) -> (String, tempfile::TempDir) {
    let blocks = BlockService::new(Arc::new(MemStore::default()), None);
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().temporary(true).open().unwrap();
    let names = crate::image::names::Names::new(db.open_tree("names").unwrap(), "test");
    let pushes =
        super::push::Pushes::open(&dir.path().join("pushes"), names, &config, htpasswd).unwrap();
    let reg = Registry::with_pushes(blocks, Arc::default(), Some(pushes));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v2", listener.local_addr().unwrap());
    let app = router(reg).into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, dir)
}

/// A registry config whose one pusher is `ci:s3cret` (basic auth).
fn with_ci_pusher() -> crate::config::RegistryConfig {
    let mut config = crate::config::RegistryConfig::default();
    config.pushers.insert(
        "ci".into(),
        crate::config::Pusher {
            auth_secret: "basic:ci:s3cret".into(),
        },
    );
    config
}

fn sha(b: &[u8]) -> String {
    oci::sha256_digest(b)
}

/// The push flow's blob paths: a chunked upload that resumes after a refused chunk, its
/// status, a digest that does not match, a cross-repository mount, unknown uploads.
#[tokio::test]
async fn blob_uploads_follow_the_spec() {
    let (base, _dir) = push_fixture(Default::default()).await;
    let http = reqwest::Client::new();
    let start = http
        .post(format!("{base}/team/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 202);
    let loc = start.headers()["location"].to_str().unwrap().to_string();
    assert!(loc.starts_with("/v2/team/app/blobs/uploads/"), "{loc}");
    let url = format!("{}{}", base.trim_end_matches("/v2"), loc);
    let r = http
        .patch(&url)
        .header("Content-Range", "0-4")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.headers()["range"], "0-4");
    // a chunk that does not start where the upload ends
    let r = http
        .patch(&url)
        .header("Content-Range", "9-11")
        .body("xyz")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(
        (r.status().as_u16(), r.headers()["range"].to_str().unwrap()),
        (204, "0-4")
    );
    let good = sha(b"hello world");
    let r = http
        .put(format!("{url}?digest={good}"))
        .body(" world")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["docker-content-digest"], good.as_str());
    let r = http
        .head(format!("{base}/team/app/blobs/{good}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "11");
    // the upload is gone once finished
    assert_eq!(
        code(http.get(&url).send().await.unwrap()).await,
        (404, "BLOB_UPLOAD_UNKNOWN".into())
    );
    // one request with the wrong digest stages nothing
    let wrong = sha(b"other");
    let r = http
        .post(format!("{base}/team/app/blobs/uploads/?digest={wrong}"))
        .body("not other")
        .send()
        .await
        .unwrap();
    assert_eq!(code(r).await, (400, "DIGEST_INVALID".into()));
    let r = http
        .head(format!("{base}/team/app/blobs/{wrong}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // a blob already here is mounted, not sent
    let r = http
        .post(format!(
            "{base}/team/other/blobs/uploads/?mount={good}&from=team/app"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.headers()["location"],
        format!("/v2/team/other/blobs/{good}").as_str()
    );
    // another repository's upload, and no upload at all
    let start = http
        .post(format!("{base}/team/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let id = start.headers()["docker-upload-uuid"]
        .to_str()
        .unwrap()
        .to_string();
    let r = http
        .get(format!("{base}/team/other/blobs/uploads/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(code(r).await, (404, "BLOB_UPLOAD_UNKNOWN".into()));
    let r = http
        .delete(format!("{base}/team/app/blobs/uploads/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = http
        .get(format!("{base}/team/app/blobs/uploads/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(code(r).await, (404, "BLOB_UPLOAD_UNKNOWN".into()));
}

/// Manifests that cannot be taken: a blob not pushed, a wrong media type, a digest that does
/// not match, one too large; names that are not names, and `ipfs/` which cannot be pushed to.
#[tokio::test]
async fn bad_manifests_and_names_are_refused_with_the_specs_codes() {
    let (base, _dir) = push_fixture(Default::default()).await;
    let http = reqwest::Client::new();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": oci::OCI_MANIFEST,
        "config": {"mediaType": oci::OCI_CONFIG, "digest": sha(b"{}"), "size": 2},
        "layers": []
    })
    .to_string();
    let put = |url: String, ct: &'static str, body: String| {
        http.put(url).header("Content-Type", ct).body(body).send()
    };
    let r = put(
        format!("{base}/team/app/manifests/1.0"),
        oci::OCI_MANIFEST,
        manifest.clone(),
    );
    assert_eq!(
        code(r.await.unwrap()).await,
        (400, "MANIFEST_BLOB_UNKNOWN".into())
    );
    let r = put(
        format!("{base}/team/app/manifests/1.0"),
        "text/plain",
        manifest.clone(),
    );
    assert_eq!(
        code(r.await.unwrap()).await,
        (400, "MANIFEST_INVALID".into())
    );
    let r = put(
        format!("{base}/team/app/manifests/{}", sha(b"x")),
        oci::OCI_MANIFEST,
        manifest.clone(),
    );
    assert_eq!(code(r.await.unwrap()).await, (400, "DIGEST_INVALID".into()));
    let huge = format!("{{\"pad\":\"{}\"}}", "x".repeat(super::push::MAX_MANIFEST));
    let r = put(
        format!("{base}/team/app/manifests/1.0"),
        oci::OCI_MANIFEST,
        huge,
    );
    assert_eq!(
        code(r.await.unwrap()).await,
        (400, "MANIFEST_INVALID".into())
    );
    let r = put(
        format!("{base}/team/app/manifests/1.0"),
        oci::OCI_MANIFEST,
        "{".into(),
    );
    assert_eq!(
        code(r.await.unwrap()).await,
        (400, "MANIFEST_INVALID".into())
    );
    for name in ["Team/App", "team/-app", "team/a..b", "team/app_"] {
        let r = http
            .post(format!("{base}/{name}/blobs/uploads/"))
            .send()
            .await
            .unwrap();
        assert_eq!(code(r).await, (400, "NAME_INVALID".into()), "{name}");
    }
    let cid = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";
    let r = http
        .post(format!("{base}/ipfs/{cid}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(code(r).await, (403, "DENIED".into()));
    // a name nobody pushed, and deleting a tag that names nothing
    let r = http
        .get(format!("{base}/team/none/manifests/1.0"))
        .send()
        .await
        .unwrap();
    assert_eq!(code(r).await.0, 404);
    let r = http
        .delete(format!("{base}/team/app/manifests/1.0"))
        .send()
        .await
        .unwrap();
    assert_eq!(code(r).await, (404, "MANIFEST_UNKNOWN".into()));
}

/// With an htpasswd file (bcrypt, as Apache's `htpasswd -B` writes it) its users may push with
/// basic auth, anyone else gets 401, and the same credentials on every request of a push cost
/// one bcrypt (the answer is remembered).
#[tokio::test]
async fn htpasswd_users_may_push() {
    let file = super::htpasswd::Htpasswd::parse(
        "ci:$2y$05$L/j6bRPAA6ddeIyphRIFIOPBKcFoQGUG6SpVXMk7KQygheaIw5Oiu\n",
    )
    .unwrap();
    let (base, _dir) = push_fixture_with(Default::default(), Some(file)).await;
    let http = reqwest::Client::new();
    let uploads = format!("{base}/team/app/blobs/uploads/");
    for (user, password, want) in [
        ("ci", "s3cret-push", 202),
        ("ci", "s3cret-push", 202),
        ("ci", "wrong", 401),
        ("other", "s3cret-push", 401),
    ] {
        let r = http
            .post(&uploads)
            .basic_auth(user, Some(password))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), want, "{user}:{password}");
    }
    let r = http.post(&uploads).send().await.unwrap();
    assert_eq!(code(r).await, (401, "UNAUTHORIZED".into()));
}

/// Docker's token auth: anyone gets a pull token, a push scope (or a login) needs credentials
/// and gets a push token that then pushes; a token the endpoint did not issue pushes nothing.
#[tokio::test]
async fn push_tokens_come_from_credentials_and_pull_tokens_from_nobody() {
    let (base, _dir) = push_fixture(with_ci_pusher()).await;
    let http = reqwest::Client::new();
    let token = |scope: &'static str| http.get(format!("{base}/token?service=cidfs&scope={scope}"));
    let json = |req: reqwest::RequestBuilder| async move {
        let v: serde_json::Value = req.send().await.unwrap().json().await.unwrap();
        v
    };
    let pull = json(token("repository:team/app:pull")).await;
    assert_eq!(pull["token"], "anonymous");
    let r = token("repository:team/app:pull,push").send().await.unwrap();
    assert_eq!(code(r).await, (401, "UNAUTHORIZED".into()));
    let r = http.get(format!("{base}/token")).send().await.unwrap();
    assert_eq!(r.status(), 401, "a login needs credentials");
    let r = token("repository:team/app:pull,push")
        .basic_auth("ci", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let push = json(token("repository:team/app:pull,push").basic_auth("ci", Some("s3cret"))).await;
    let t = push["token"].as_str().unwrap().to_string();
    assert_eq!(t.len(), 64);
    let uploads = format!("{base}/team/app/blobs/uploads/");
    let r = http.post(&uploads).bearer_auth(&t).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let r = http
        .get(format!("{base}/"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for forged in ["anonymous", "0000"] {
        let r = http
            .post(&uploads)
            .bearer_auth(forged)
            .send()
            .await
            .unwrap();
        assert_eq!(code(r).await, (401, "UNAUTHORIZED".into()), "{forged}");
    }
}

/// With pushers configured every push needs their credentials (401 without or with others);
/// pulls stay anonymous; a request from a web page never pushes.
#[tokio::test]
async fn pushes_need_credentials_when_pushers_are_set() {
    let (base, _dir) = push_fixture(with_ci_pusher()).await;
    let http = reqwest::Client::new();
    let uploads = format!("{base}/team/app/blobs/uploads/");
    let r = http.post(&uploads).send().await.unwrap();
    let host = base.trim_start_matches("http://").trim_end_matches("/v2");
    assert_eq!(
        r.headers()["www-authenticate"],
        format!(
            "Bearer realm=\"http://{host}/v2/token\",service=\"cidfs\",scope=\"repository:team/app:pull,push\""
        )
        .as_str()
    );
    assert_eq!(code(r).await, (401, "UNAUTHORIZED".into()));
    let r = http
        .post(&uploads)
        .basic_auth("ci", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(code(r).await, (401, "UNAUTHORIZED".into()));
    let r = http
        .post(&uploads)
        .basic_auth("ci", Some("s3cret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = http
        .post(&uploads)
        .basic_auth("ci", Some("s3cret"))
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(code(r).await, (403, "DENIED".into()));
    // the ping asks for credentials (docker sends them only then), checks those it gets, and
    // pulls need none
    let r = http.get(format!("{base}/")).send().await.unwrap();
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer realm=\"http://"),
        "{:?}",
        r.headers()
    );
    assert_eq!(code(r).await, (401, "UNAUTHORIZED".into()));
    for (password, want) in [("wrong", 401), ("s3cret", 200)] {
        let r = http
            .get(format!("{base}/"))
            .basic_auth("ci", Some(password))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), want, "{password}");
    }
    let r = http
        .get(format!("{base}/team/app/tags/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(r).await,
        (404, "NAME_UNKNOWN".into()),
        "a pull is not asked for credentials"
    );
}
