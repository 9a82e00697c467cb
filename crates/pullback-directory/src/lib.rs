//! People and groups from LDAP and Active Directory, for enriching alerts (who received the
//! message, their department, title, manager, groups) and for acting on the directory
//! (taking someone out of a group, marking them), every write undoable.
//!
//! - [`import`] reads every configured class under every base DN with paged searches, so
//!   directories larger than the server's size limit import whole, and with a [`Watermark`]
//!   reads only what changed and names what was deleted.
//! - [`Directory`] indexes the entries for lookups by address, DN and group name, with nested
//!   groups resolved and loops among them reported.
//! - [`DirectoryClient`] makes idempotent writes: [`DirectoryClient::add_member`],
//!   [`DirectoryClient::remove_member`] and [`DirectoryClient::set_attribute`].
//!
//! This crate does no storage; what it returns is plain data.

#![warn(missing_docs)]

mod client;
mod config;
mod directory;
pub mod dn;
mod entry;
mod error;
mod import;
#[cfg(feature = "testing")]
pub mod testing;

pub use client::{Changed, DirectoryClient, Previous};
pub use config::{ClassConfig, DirectoryConfig, EntryKind};
pub use directory::Directory;
pub use entry::{DirectoryEntry, Problem, ProblemKind};
pub use error::DirectoryError;
pub use import::{ChangeMark, ImportCounts, ImportResult, Watermark, import};
