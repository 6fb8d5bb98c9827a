//! [`Client`] against an in-process registry (axum on 127.0.0.1:0) that can require nothing,
//! Basic auth, or Bearer tokens from its own token endpoint.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine as _;

use super::{Client, Credentials, Error, Reference};
use crate::image::oci::{self, Descriptor};

const REPO: &str = "test/img";
const USER: &str = "alice";
const PASS: &str = "s3cret";
const TOKEN: &str = "tok-123";
const SERVICE: &str = "test-registry";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Open,
    Basic,
    Bearer,
}

/// The fake registry. Tests put inconsistent entries into the maps to provoke errors.
struct Reg {
    mode: Mode,
    /// `127.0.0.1:PORT` of the registry and of the same app on a second port (another "host"
    /// for reqwest's redirect rules).
    addr: String,
    other: String,
    manifests: Mutex<HashMap<String, (String, Vec<u8>)>>,
    blobs: Mutex<HashMap<String, Vec<u8>>>,
    redirect_blobs: AtomicBool,
    hang_blobs: AtomicBool,
    token_requests: AtomicUsize,
    /// The `Authorization` header each redirected blob request carried.
    redirected_auth: Mutex<Vec<Option<String>>>,
}

fn basic_value(user: &str, pass: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    format!("Basic {b64}")
}

fn oci_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"errors":[{"code":code,"message":message,"detail":null}]});
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn auth_header(h: &HeaderMap) -> Option<String> {
    h.get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn v2(State(st): State<Arc<Reg>>, Path(rest): Path<String>, h: HeaderMap) -> Response {
    let auth = auth_header(&h);
    let ok = match st.mode {
        Mode::Open => true,
        Mode::Basic => auth.as_deref() == Some(basic_value(USER, PASS).as_str()),
        Mode::Bearer => auth.as_deref() == Some(format!("Bearer {TOKEN}").as_str()),
    };
    if !ok {
        let challenge = match st.mode {
            Mode::Basic => r#"Basic realm="fake""#.to_string(),
            _ => format!(
                r#"Bearer realm="http://{}/token",service="{SERVICE}",scope="repository:{REPO}:pull""#,
                st.addr
            ),
        };
        let mut r = oci_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "authentication required",
        );
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, challenge.parse().unwrap());
        return r;
    }
    if let Some(reference) = rest.strip_prefix(&format!("{REPO}/manifests/")) {
        return match st.manifests.lock().unwrap().get(reference) {
            Some((mt, body)) => {
                ([(header::CONTENT_TYPE, mt.clone())], body.clone()).into_response()
            }
            None => oci_error(
                StatusCode::NOT_FOUND,
                "MANIFEST_UNKNOWN",
                "manifest unknown",
            ),
        };
    }
    if let Some(digest) = rest.strip_prefix(&format!("{REPO}/blobs/")) {
        if st.redirect_blobs.load(Ordering::SeqCst) {
            let to = format!("http://{}/redirected/{digest}", st.other);
            return (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, to)]).into_response();
        }
        return serve_blob(&st, digest);
    }
    oci_error(
        StatusCode::NOT_FOUND,
        "NAME_UNKNOWN",
        "repository name not known",
    )
}

fn serve_blob(st: &Reg, digest: &str) -> Response {
    if st.hang_blobs.load(Ordering::SeqCst) {
        let pending = futures::stream::pending::<Result<bytes::Bytes, std::io::Error>>();
        return Body::from_stream(pending).into_response();
    }
    match st.blobs.lock().unwrap().get(digest) {
        Some(b) => b.clone().into_response(),
        None => oci_error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", "blob unknown"),
    }
}

async fn redirected(
    State(st): State<Arc<Reg>>,
    Path(digest): Path<String>,
    h: HeaderMap,
) -> Response {
    st.redirected_auth.lock().unwrap().push(auth_header(&h));
    serve_blob(&st, &digest)
}

async fn token(
    State(st): State<Arc<Reg>>,
    Query(q): Query<HashMap<String, String>>,
    h: HeaderMap,
) -> Response {
    st.token_requests.fetch_add(1, Ordering::SeqCst);
    let want_scope = format!("repository:{REPO}:pull");
    if q.get("service").map(String::as_str) != Some(SERVICE) || q.get("scope") != Some(&want_scope)
    {
        return oci_error(StatusCode::BAD_REQUEST, "DENIED", "bad service or scope");
    }
    match auth_header(&h) {
        Some(a) if a == basic_value(USER, PASS) => {
            axum::Json(serde_json::json!({ "token": TOKEN, "expires_in": 300 })).into_response()
        }
        Some(_) => oci_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "bad credentials"),
        // Anonymous tokens exist but grant nothing here.
        None => axum::Json(serde_json::json!({ "access_token": "anonymous" })).into_response(),
    }
}

/// A tiny image: a config and one layer.
struct Image {
    manifest: Vec<u8>,
    manifest_digest: String,
    config: Descriptor,
    layer: Descriptor,
    layer_bytes: Vec<u8>,
}

fn image() -> (Image, Vec<u8>) {
    let config_bytes =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec();
    let layer_bytes: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let config = Descriptor::of(oci::OCI_CONFIG, &config_bytes);
    let layer = Descriptor::of(oci::OCI_LAYER, &layer_bytes);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": oci::OCI_MANIFEST,
        "config": config,
        "layers": [layer],
    }))
    .unwrap();
    let manifest_digest = oci::sha256_digest(&manifest);
    (
        Image {
            manifest,
            manifest_digest,
            config,
            layer,
            layer_bytes,
        },
        config_bytes,
    )
}

async fn start(mode: Mode) -> (Arc<Reg>, Image) {
    let l1 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let l2 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (img, config_bytes) = image();
    let st = Arc::new(Reg {
        mode,
        addr: l1.local_addr().unwrap().to_string(),
        other: l2.local_addr().unwrap().to_string(),
        manifests: Mutex::new(HashMap::from([
            (
                "1".to_string(),
                (oci::OCI_MANIFEST.to_string(), img.manifest.clone()),
            ),
            (
                img.manifest_digest.clone(),
                (oci::OCI_MANIFEST.to_string(), img.manifest.clone()),
            ),
        ])),
        blobs: Mutex::new(HashMap::from([
            (img.config.digest.clone(), config_bytes),
            (img.layer.digest.clone(), img.layer_bytes.clone()),
        ])),
        redirect_blobs: AtomicBool::new(false),
        hang_blobs: AtomicBool::new(false),
        token_requests: AtomicUsize::new(0),
        redirected_auth: Mutex::new(Vec::new()),
    });
    let app = Router::new()
        .route("/v2/{*rest}", get(v2))
        .route("/token", get(token))
        .route("/redirected/{digest}", get(redirected))
        .with_state(st.clone());
    for l in [l1, l2] {
        let app = app.clone();
        tokio::spawn(async move { axum::serve(l, app).await });
    }
    (st, img)
}

fn creds(user: &str, pass: &str) -> Option<Credentials> {
    Some(Credentials {
        username: user.into(),
        password: pass.into(),
    })
}

fn client(st: &Reg, creds: Option<Credentials>) -> Client {
    let r: Reference = format!("{}/{REPO}:1", st.addr).parse().unwrap();
    let t = Duration::from_secs(10);
    Client::with_timeouts(&r, true, creds, t, t).unwrap()
}

/// Every test body runs under this bound.
async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("test took more than 30 s")
}

fn registry_error(e: &anyhow::Error) -> &Error {
    e.downcast_ref::<Error>()
        .unwrap_or_else(|| panic!("not a registry::Error: {e:#}"))
}

/// Manifest by tag and digest, config into memory, layer into a file.
async fn pull(c: &Client, img: &Image) {
    let (mt, body) = c.manifest("1").await.unwrap();
    assert_eq!((mt.as_str(), &body), (oci::OCI_MANIFEST, &img.manifest));
    let (mt, body) = c.manifest(&img.manifest_digest).await.unwrap();
    assert_eq!((mt.as_str(), &body), (oci::OCI_MANIFEST, &img.manifest));
    let config = c.blob_bytes(&img.config).await.unwrap();
    assert_eq!(oci::sha256_digest(&config), img.config.digest);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("layer");
    let seen = AtomicUsize::new(0);
    let progress = |n: u64| {
        seen.fetch_add(n as usize, Ordering::SeqCst);
    };
    c.blob_to_file(&img.layer, &path, &progress).await.unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), img.layer_bytes);
    assert_eq!(seen.load(Ordering::SeqCst), img.layer_bytes.len());
}

#[tokio::test]
async fn pulls_anonymously() {
    bounded(async {
        let (st, img) = start(Mode::Open).await;
        pull(&client(&st, None), &img).await;
    })
    .await
}

#[tokio::test]
async fn pulls_with_basic_auth() {
    bounded(async {
        let (st, img) = start(Mode::Basic).await;
        pull(&client(&st, creds(USER, PASS)), &img).await;
    })
    .await
}

#[tokio::test]
async fn pulls_with_a_bearer_token_fetched_once() {
    bounded(async {
        let (st, img) = start(Mode::Bearer).await;
        pull(&client(&st, creds(USER, PASS)), &img).await;
        // The token is cached across the five requests.
        assert_eq!(st.token_requests.load(Ordering::SeqCst), 1);
    })
    .await
}

#[tokio::test]
async fn wrong_credentials_are_reported() {
    bounded(async {
        for mode in [Mode::Basic, Mode::Bearer] {
            let (st, _) = start(mode).await;
            let e = client(&st, creds(USER, "wrong"))
                .manifest("1")
                .await
                .unwrap_err();
            assert!(
                matches!(registry_error(&e), Error::AuthRejected { user, .. } if user == USER),
                "{mode:?}: {e:#}"
            );
            assert!(e.to_string().contains("rejected the credentials"), "{e}");
        }
    })
    .await
}

#[tokio::test]
async fn missing_credentials_say_how_to_pass_them() {
    bounded(async {
        for mode in [Mode::Basic, Mode::Bearer] {
            let (st, _) = start(mode).await;
            let e = client(&st, None).manifest("1").await.unwrap_err();
            assert!(
                matches!(registry_error(&e), Error::AuthRequired { .. }),
                "{mode:?}: {e:#}"
            );
            let msg = e.to_string();
            assert!(
                msg.contains("requires authentication")
                    && msg.contains("--creds USER:PASS")
                    && msg.contains("--authfile"),
                "{msg}"
            );
        }
    })
    .await
}

#[tokio::test]
async fn manifest_by_digest_is_verified() {
    bounded(async {
        let (st, img) = start(Mode::Open).await;
        let fake = oci::sha256_digest(b"something else");
        st.manifests.lock().unwrap().insert(
            fake.clone(),
            (oci::OCI_MANIFEST.into(), img.manifest.clone()),
        );
        let e = client(&st, None).manifest(&fake).await.unwrap_err();
        match registry_error(&e) {
            Error::DigestMismatch {
                expected, actual, ..
            } => assert_eq!((expected, actual), (&fake, &img.manifest_digest)),
            other => panic!("{other}"),
        }
    })
    .await
}

#[tokio::test]
async fn manifest_over_4_mib_is_refused() {
    bounded(async {
        let (st, _) = start(Mode::Open).await;
        st.manifests.lock().unwrap().insert(
            "big".into(),
            (oci::OCI_MANIFEST.into(), vec![b' '; (4 << 20) + 1]),
        );
        let e = client(&st, None).manifest("big").await.unwrap_err();
        assert!(
            matches!(registry_error(&e), Error::ManifestTooLarge { .. }),
            "{e:#}"
        );
    })
    .await
}

#[tokio::test]
async fn blob_with_wrong_bytes_leaves_no_file() {
    bounded(async {
        let (st, img) = start(Mode::Open).await;
        let mut wrong = img.layer_bytes.clone();
        wrong[500] ^= 1;
        st.blobs
            .lock()
            .unwrap()
            .insert(img.layer.digest.clone(), wrong);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("layer");
        let e = client(&st, None)
            .blob_to_file(&img.layer, &path, &|_| {})
            .await
            .unwrap_err();
        assert!(
            matches!(registry_error(&e), Error::DigestMismatch { .. }),
            "{e:#}"
        );
        assert!(e.to_string().contains("digest mismatch"), "{e}");
        assert!(!path.exists());
    })
    .await
}

#[tokio::test]
async fn blob_of_the_wrong_size_is_refused() {
    bounded(async {
        let (st, img) = start(Mode::Open).await;
        let c = client(&st, None);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("layer");
        for delta in [10i64, -10] {
            let mut desc = img.layer.clone();
            desc.size += delta;
            let e = c.blob_to_file(&desc, &path, &|_| {}).await.unwrap_err();
            assert!(
                matches!(registry_error(&e), Error::SizeMismatch { expected, actual, .. }
                    if *expected == desc.size as u64 && *actual == img.layer_bytes.len() as u64),
                "{e:#}"
            );
            assert!(e.to_string().contains("size mismatch"), "{e}");
            assert!(!path.exists());
            assert!(c.blob_bytes(&desc).await.is_err());
        }
    })
    .await
}

#[tokio::test]
async fn stalled_blob_times_out_and_leaves_no_file() {
    bounded(async {
        let (st, img) = start(Mode::Open).await;
        st.hang_blobs.store(true, Ordering::SeqCst);
        let r: Reference = format!("{}/{REPO}:1", st.addr).parse().unwrap();
        let c = Client::with_timeouts(
            &r,
            true,
            None,
            Duration::from_secs(10),
            Duration::from_millis(200),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("layer");
        let e = c
            .blob_to_file(&img.layer, &path, &|_| {})
            .await
            .unwrap_err();
        assert!(
            matches!(registry_error(&e), Error::Transport { .. }),
            "{e:#}"
        );
        assert!(format!("{e:#}").contains("timed out"), "{e:#}");
        assert!(!path.exists());
    })
    .await
}

#[tokio::test]
async fn not_found_carries_the_oci_error_code_and_url() {
    bounded(async {
        let (st, img) = start(Mode::Open).await;
        let c = client(&st, None);
        let e = c.manifest("nope").await.unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("HTTP 404")
                && msg.contains("MANIFEST_UNKNOWN")
                && msg.contains(&format!("http://{}/v2/{REPO}/manifests/nope", st.addr)),
            "{msg}"
        );
        st.blobs.lock().unwrap().clear();
        let e = c.blob_bytes(&img.config).await.unwrap_err();
        assert!(
            matches!(registry_error(&e), Error::Status { status: 404, code: Some(c), .. } if c == "BLOB_UNKNOWN"),
            "{e:#}"
        );
    })
    .await
}

#[tokio::test]
async fn redirect_to_another_host_drops_authorization() {
    bounded(async {
        let (st, img) = start(Mode::Basic).await;
        st.redirect_blobs.store(true, Ordering::SeqCst);
        let c = client(&st, creds(USER, PASS));
        let config = c.blob_bytes(&img.config).await.unwrap();
        assert_eq!(oci::sha256_digest(&config), img.config.digest);
        assert_eq!(*st.redirected_auth.lock().unwrap(), vec![None]);
    })
    .await
}

#[tokio::test]
async fn bad_references_are_refused_before_any_request() {
    bounded(async {
        let (st, _) = start(Mode::Open).await;
        let c = client(&st, None);
        assert!(c.manifest("../../etc").await.is_err());
        assert!(c.manifest("sha256:abc").await.is_err());
        let mut desc = Descriptor::of(oci::OCI_CONFIG, b"x");
        desc.digest = "sha256:../x".into();
        assert!(c.blob_bytes(&desc).await.is_err());
    })
    .await
}
