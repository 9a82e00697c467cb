//! Scripted pollers: programs an administrator adds for detectors without a built-in
//! integration. The leader runs each on its schedule; the program prints alerts as JSON
//! lines ([`line`]) and Pullback reads them as a stream with bounded memory ([`runner`]).

pub mod line;
pub mod runner;

pub use runner::{Batch, Ending, Report, Sink, run};
