//! Scripted pollers.
