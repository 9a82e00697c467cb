//! The Pullback appliance: what turns a Debian root filesystem with the `pullback` binary into
//! an appliance that installs itself on first boot and upgrades itself in place.
//!
//! The disk has an EFI system partition with systemd-boot, two root slots (A and B) and a
//! data partition. A slot holds one release and is replaced whole by an upgrade; the data
//! partition holds everything the node owns (its RocksDB, configuration, settings, snapshots)
//! and outlives both slots. See docs/appliance.md.
//!
//! - [`release`]: which release a slot holds (version and data formats).
//! - [`keys`]: the release keys an upgrade image must be signed with.
//! - [`img`]: reading and verifying an upgrade image before anything is written.
//! - [`boot`]: systemd-boot entries for the slots, with boot counting for a trial.
//! - [`slots`]: the appliance's slot state on the data partition.
//! - [`upgrade`]: apply, confirm, roll back, and settle after a failed trial.
//! - [`snapshot`]: the copy of the node's data taken before an upgrade.
//! - [`inbox`]: upgrade images uploaded through the API, handed from the node to root.
//! - [`answers`], [`wizard`], [`settings`], [`userdata`]: first boot and the node's system
//!   settings.
//! - [`layout`]: where all of this lives, so tests can point it at a folder.

#![warn(missing_docs)]

pub mod answers;
pub mod boot;
pub mod img;
pub mod inbox;
pub mod keys;
pub mod layout;
pub mod release;
pub mod settings;
pub mod slots;
pub mod snapshot;
pub mod upgrade;
pub mod userdata;
pub mod wizard;

pub use layout::Layout;
pub use release::Release;
