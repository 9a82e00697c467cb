//! The decision engine: which match conditions an alert meets, which incident it belongs to,
//! and what quarantine to plan for it.
//!
//! The engine is synchronous and does no IO. The state machine calls it while applying a Raft
//! entry, so every node reaches the same decision from the same log.

pub mod grouping;
pub mod matching;
pub mod planning;

pub use grouping::{incident_links, incident_title};
pub use matching::{Decision, DirectoryPlanItem, evaluate, evaluate_with};
pub use planning::{DirectoryPlan, JobPlan, plan_directory, plan_quarantine, plan_quarantine_with};
