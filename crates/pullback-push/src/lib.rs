//! Reading what pushed sources send. Nothing here does IO: the API feeds request bodies in,
//! and gets alert drafts, or errors that name the line or field at fault, back.

/// Search-export results (CSV or JSON): one alert per recipient of each row.
pub mod export;
/// The Threat-Response-compatible JSON alert source: one alert per event.
pub mod json_event;

mod shared;
