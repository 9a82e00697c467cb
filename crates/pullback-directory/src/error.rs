//! The failures that stop a whole run or a write. Problems with single entries are not errors;
//! they are collected as [`Problem`](crate::Problem)s. No message ever carries the password.

use std::path::PathBuf;

/// Why an import or a write could not be done.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The configuration cannot work, whatever the server says.
    #[error("directory configuration: {reason}")]
    Config { reason: String },
    /// The CA bundle could not be read or holds no certificate.
    #[error("CA bundle {}: {reason}", path.display())]
    CaFile { path: PathBuf, reason: String },
    /// The server could not be reached or the connection broke.
    #[error("cannot reach the directory at {url}: {reason}")]
    Connect { url: String, reason: String },
    /// The TLS handshake failed, typically because the server certificate does not verify.
    #[error("TLS with {url} failed: {reason}")]
    Tls { url: String, reason: String },
    /// The server refused the credentials.
    #[error("bind as {dn} to {url} refused: {reason}")]
    Bind {
        url: String,
        dn: String,
        reason: String,
    },
    /// A search failed or was cut short by the server, so the result would be incomplete.
    #[error("search of {base} at {url} failed: {reason}")]
    Search {
        url: String,
        base: String,
        reason: String,
    },
    /// An entry to change does not exist.
    #[error("{dn} does not exist at {url}")]
    NoSuchEntry { url: String, dn: String },
    /// The server refused a change.
    #[error("changing {dn} at {url} failed: {reason}")]
    Write {
        url: String,
        dn: String,
        reason: String,
    },
    /// The server took longer than the configured timeout.
    #[error("{url} did not answer within {secs} s while {what}")]
    Timeout {
        url: String,
        what: String,
        secs: u64,
    },
}
