//! Prometheus metrics of one node. Names start with `pullback_`; counters end in `_total`.

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGaugeVec, Opts, Registry};

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub alerts_accepted: IntCounterVec,
    pub alerts_duplicate: IntCounterVec,
    pub events_rejected: IntCounterVec,
    pub source_calls: IntCounterVec,
    pub source_errors: IntCounterVec,
    pub recipient_outcomes: IntCounterVec,
    pub proposals: IntCounterVec,
    pub oidc_sign_ins: IntCounterVec,
    pub raft: IntGaugeVec,
    pub store_memory: IntGaugeVec,
    /// On the leader: from handing a group of commands to Raft until it was committed and
    /// applied here.
    pub commit_seconds: Histogram,
    /// On the leader: how many commands each log entry grouped.
    pub group_commands: Histogram,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("metric registered once");
            c
        };
        let alerts_accepted = counter(
            "pullback_alerts_accepted_total",
            "Alerts committed.",
            &["source"],
        );
        let alerts_duplicate = counter(
            "pullback_alerts_duplicate_total",
            "Events dropped because an alert with the same key was committed.",
            &["source"],
        );
        let events_rejected = counter(
            "pullback_events_rejected_total",
            "Events that could not be read.",
            &["source"],
        );
        let source_calls = counter(
            "pullback_source_calls_total",
            "Calls made to alert sources.",
            &["source"],
        );
        let source_errors = counter(
            "pullback_source_errors_total",
            "Failed source cycles.",
            &["source"],
        );
        let recipient_outcomes = counter(
            "pullback_recipient_outcomes_total",
            "Per-recipient results recorded by quarantine workers.",
            &["action", "status"],
        );
        let proposals = counter(
            "pullback_raft_proposals_total",
            "Commands proposed to the Raft log, by command and result.",
            &["command", "result"],
        );
        let oidc_sign_ins = counter(
            "pullback_oidc_sign_ins_total",
            "Sign-ins with Azure AD on this node, by outcome (ok, or why they failed).",
            &["outcome"],
        );
        let raft = IntGaugeVec::new(
            Opts::new(
                "pullback_raft",
                "Raft state of this node (term, indexes, leadership).",
            ),
            &["field"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(raft.clone()))
            .expect("metric registered once");
        let store_memory = IntGaugeVec::new(
            Opts::new(
                "pullback_store_memory_bytes",
                "Memory RocksDB holds, by use (memtables, table_readers, block_cache).",
            ),
            &["use"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(store_memory.clone()))
            .expect("metric registered once");
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("metric registered once");
            h
        };
        let commit_seconds = histogram(
            "pullback_commit_seconds",
            "On the leader, the time from handing a group of commands to Raft until it was \
             committed and applied.",
            prometheus::exponential_buckets(0.0005, 2.0, 14).expect("valid buckets"),
        );
        let group_commands = histogram(
            "pullback_group_commands",
            "On the leader, the commands each log entry grouped.",
            prometheus::exponential_buckets(1.0, 2.0, 10).expect("valid buckets"),
        );
        Metrics {
            registry,
            commit_seconds,
            group_commands,
            store_memory,
            alerts_accepted,
            alerts_duplicate,
            events_rejected,
            source_calls,
            source_errors,
            recipient_outcomes,
            proposals,
            oidc_sign_ins,
            raft,
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let encoder = prometheus::TextEncoder::new();
        encoder
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}
