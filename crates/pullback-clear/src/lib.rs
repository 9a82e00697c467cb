//! CLEAR analysis of reported messages. Pure functions, no IO: bytes in, facts and a verdict
//! with reasons out.
//!
//! - [`report`] finds the original message inside a user's report (attached, as `.eml`,
//!   `.msg`, `winmail.dat`, or forwarded inline) and [`message`] reads a message into
//!   [`facts::MessageFacts`], decoding each part once.
//! - [`urls`] and [`header_checks`] turn facts into evidence (attachments are judged from
//!   their facts); [`verdict`] weighs the evidence into a disposition, a score and reasons
//!   that name what triggered them.

pub mod facts;
pub mod header_checks;
pub mod message;
pub mod report;
pub mod urls;
pub mod verdict;
