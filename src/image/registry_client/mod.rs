//! A pull-only client of the OCI distribution API (REFERENCE §7): `GET` of manifests and blobs
//! from one repository, with Basic and Bearer-token auth.
//!
//! - [`reference`]: `HOST[:PORT]/REPO[:TAG][@sha256:…]` parsed and checked (pure).
//! - [`auth`]: [`Credentials`] from `--creds` or an auth file; `WWW-Authenticate` and token
//!   responses parsed (pure apart from reading the auth file).
//! - [`client`]: [`Client`]: requests, the auth dance, size and digest checks, streaming to files.
//! - [`error`]: [`Error`], one variant per case a caller may want to tell apart (the API returns
//!   `anyhow::Error`; `downcast_ref::<Error>()` recovers it).
//!
//! Everything handed out is verified: manifests fetched by digest against the digest (by tag
//! against `Docker-Content-Digest` when sent), blobs against their descriptor's size and sha256.

pub mod auth;
pub mod client;
pub mod error;
pub mod reference;
#[cfg(test)]
mod tests;

pub use auth::{credentials_for, Credentials};
pub use client::Client;
pub use error::Error;
pub use reference::Reference;
