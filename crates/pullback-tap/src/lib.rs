//! The TAP SIEM alert source: it reads Proofpoint TAP SIEM events into alert drafts and polls
//! the API window by window, within its quota and its seven-day limit, without losing events
//! that are indexed late.
//!
//! The parts are layered: [`event`] and [`window`] and [`quota`] are pure; [`client`] does the
//! HTTP; [`poller`] ties them to a [`poller::BatchSink`]; [`simulator`] plays the API's part
//! in tests and the demo.

pub mod client;
pub mod event;
pub mod poller;
pub mod quota;
pub mod simulator;
pub mod window;

pub use client::{ClientBuildError, FetchError, TapClient, TapClientConfig};
pub use event::{Envelope, EnvelopeError, EventError, RejectedEvent, parse_envelope, parse_event};
pub use poller::{Batch, BatchSink, CycleReport, TapPoller};
pub use quota::{Backoff, Quota};
pub use simulator::{SimulatorConfig, TapSimulator};
pub use window::{Gap, GapReason, Plan, Window, WindowConfig, plan};
