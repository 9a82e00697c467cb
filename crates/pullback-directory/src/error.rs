//! The failures that stop a whole run or a write. Problems with single entries are not errors;
//! they are collected as [`Problem`](crate::Problem)s. No message ever carries the password.

use std::path::PathBuf;

/// Why an import or a write could not be done. Every variant names the server's URL (or the
/// file) so that a log line says where to look.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The configuration cannot work, whatever the server says.
    #[error("directory configuration: {reason}")]
    Config {
        /// What is wrong with it.
        reason: String,
    },
    /// The CA bundle could not be read or holds no certificate.
    #[error("CA bundle {}: {reason}", path.display())]
    CaFile {
        /// The configured `ca_file`.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// The server could not be reached or the connection broke.
    #[error("cannot reach the directory at {url}: {reason}")]
    Connect {
        /// The configured URL.
        url: String,
        /// The system's or the library's reason.
        reason: String,
    },
    /// The TLS handshake failed, typically because the server certificate does not verify.
    #[error("TLS with {url} failed: {reason}")]
    Tls {
        /// The configured URL.
        url: String,
        /// What rustls or the server said, and what the certificate was checked against.
        reason: String,
    },
    /// The server refused the credentials.
    #[error("bind as {dn} to {url} refused: {reason}")]
    Bind {
        /// The configured URL.
        url: String,
        /// The bind DN (never the password).
        dn: String,
        /// The result code and the server's text.
        reason: String,
    },
    /// A search failed or was cut short by the server, so the result would be incomplete.
    #[error("search of {base} at {url} failed: {reason}")]
    Search {
        /// The configured URL.
        url: String,
        /// The base DN (or entry) searched.
        base: String,
        /// The result code and the server's text.
        reason: String,
    },
    /// An entry to change does not exist.
    #[error("{dn} does not exist at {url}")]
    NoSuchEntry {
        /// The configured URL.
        url: String,
        /// The entry asked for.
        dn: String,
    },
    /// The server refused a change.
    #[error("changing {dn} at {url} failed: {reason}")]
    Write {
        /// The configured URL.
        url: String,
        /// The entry changed.
        dn: String,
        /// The result code and the server's text.
        reason: String,
    },
    /// The server took longer than the configured timeout.
    #[error("{url} did not answer within {secs} s while {what}")]
    Timeout {
        /// The configured URL.
        url: String,
        /// What the client was doing.
        what: String,
        /// The timeout.
        secs: u64,
    },
}
