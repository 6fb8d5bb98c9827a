//! The HTTP client of the daemon's kubo-style API, used by every networked subcommand.

use anyhow::{bail, Context};
use std::net::SocketAddr;

use crate::repo::Repo;

pub struct ApiClient {
    http: reqwest::Client,
    /// `http://HOST[:PORT]`: the TCP address, or `localhost` over the API socket.
    origin: String,
    /// Where the daemon was looked for, for errors: the socket's path or the TCP address.
    at: String,
    /// The `Authorization` sent: `--api-auth`, else the daemon's API token when this user can
    /// read it (privileged commands need it).
    authorization: Option<String>,
}

/// The `Authorization` header for `bearer:TOKEN` or `basic:USER:PASSWORD`.
fn authorization(secret: &str) -> anyhow::Result<String> {
    match crate::config::AuthSecret::parse(secret) {
        Some(s) => Ok(s.header()),
        None => bail!("--api-auth must be bearer:TOKEN or basic:USER:PASSWORD"),
    }
}

impl ApiClient {
    /// Finds the daemon: `--api` if given, else the repo's API socket when this user can
    /// connect to it (the daemon's own user: it is 0600), else the repo's api file.
    pub fn connect(
        repo: &Repo,
        api: Option<SocketAddr>,
        auth: Option<&str>,
    ) -> anyhow::Result<Self> {
        // the API is plain HTTP on this machine: no TLS roots to load (reading and parsing the
        // system's ~150 certificate files took 25-30 ms of every command with a cold page cache)
        let http = reqwest::Client::builder().tls_built_in_root_certs(false);
        let socket = repo.api_socket();
        let (http, origin, at) = match api {
            Some(a) => (http, format!("http://{a}"), a.to_string()),
            // a socket that refuses (its daemon is gone, or it is another user's) is skipped
            None if std::os::unix::net::UnixStream::connect(&socket).is_ok() => {
                let at = socket.display().to_string();
                (http.unix_socket(socket), "http://localhost".to_string(), at)
            }
            None => {
                let a = repo
                    .read_api_addr()
                    .context("cannot find the cidfs daemon (start it with `cidfs daemon`)")?;
                (http, format!("http://{a}"), a.to_string())
            }
        };
        Ok(ApiClient {
            http: http.build().context("building the API's HTTP client")?,
            origin,
            at,
            authorization: match auth {
                Some(secret) => Some(authorization(secret)?),
                None => repo.read_api_token().map(|t| format!("Bearer {t}")),
            },
        })
    }

    /// POSTs `cmd` with query `params`; a non-2xx answer becomes an error carrying kubo's `Message`.
    pub async fn post(
        &self,
        cmd: &str,
        params: &[(&str, String)],
        form: Option<reqwest::multipart::Form>,
    ) -> anyhow::Result<reqwest::Response> {
        let mut req = self
            .http
            .post(format!("{}/api/v0/{cmd}", self.origin))
            .query(params);
        if let Some(a) = &self.authorization {
            req = req.header(reqwest::header::AUTHORIZATION, a);
        }
        if let Some(f) = form {
            req = req.multipart(f);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach the cidfs daemon at {}", self.at))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        match serde_json::from_str::<serde_json::Value>(&body) {
            Ok(v) if v.get("Message").is_some() => {
                bail!("{}", v["Message"].as_str().unwrap_or_default())
            }
            _ => bail!("daemon answered {status}: {body}"),
        }
    }

    /// POSTs `cmd` and reads its NDJSON answer (kubo's streaming commands), one value per
    /// non-empty line.
    pub async fn ndjson(
        &self,
        cmd: &str,
        params: &[(&str, String)],
        form: Option<reqwest::multipart::Form>,
    ) -> anyhow::Result<Vec<serde_json::Value>> {
        let text = self.post(cmd, params, form).await?.text().await?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).context("daemon sent invalid JSON"))
            .collect()
    }

    /// The daemon's Prometheus page (`GET /metrics`).
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let url = format!("{}/metrics", self.origin);
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .with_context(|| format!("cannot reach the cidfs daemon at {}", self.at))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            bail!(
                "the daemon serves no /metrics: set `enabled = true` under [metrics] in its config"
            );
        }
        let resp = resp.error_for_status()?;
        Ok(resp.text().await?)
    }

    pub async fn json(
        &self,
        cmd: &str,
        params: &[(&str, String)],
    ) -> anyhow::Result<serde_json::Value> {
        self.post(cmd, params, None)
            .await?
            .json()
            .await
            .context("daemon sent invalid JSON")
    }
}
