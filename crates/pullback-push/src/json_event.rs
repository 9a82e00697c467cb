//! The Threat-Response-compatible JSON alert source.
