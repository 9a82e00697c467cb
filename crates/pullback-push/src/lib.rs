//! Reading what pushed sources send. Nothing here does IO: the API feeds request bodies in,
//! and gets alert drafts, or errors that name the line or field at fault, back.

pub mod export;
pub mod json_event;
