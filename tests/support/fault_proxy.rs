//! A TCP proxy that cuts chosen links between cluster nodes, on loopback, so that fault tests
//! can partition a group of real processes without touching the host's firewall.
//!
//! The addressing scheme carries the node ids. Node K serves Raft on `127.0.K.1` and makes its
//! outgoing connections from that address too; its peers reach it through a proxy on
//! `127.0.K.2`, which forwards to `127.0.K.1`. A proxy therefore knows both ends of every
//! connection it carries: the node behind it from its upstream address, and the calling node
//! from the connection's source address. Linux routes all of `127.0.0.0/8` to the loopback
//! interface, so no set-up is needed. The proxy forwards bytes only: the mutual TLS between
//! nodes passes through untouched.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// How many connections one proxy carries at once. A group of five nodes needs a handful per
/// peer; the bound only keeps a misbehaving test from exhausting file descriptors. Callers
/// beyond it wait in the listen backlog rather than being refused.
const MAX_CONNECTIONS: usize = 256;

/// How long the proxy waits for its upstream node to accept. A node being restarted by the
/// test is simply unreachable for that long, as it would be without the proxy.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The address node `node` serves Raft on and makes its outgoing connections from.
///
/// # Panics
/// When `node` does not fit the third octet of an address (1 to 254).
pub fn node_ip(node: u64) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, octet(node), 1))
}

/// The address of the proxy in front of node `node`, where its peers call it.
///
/// # Panics
/// When `node` does not fit the third octet of an address (1 to 254).
pub fn proxy_ip(node: u64) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, octet(node), 2))
}

/// The node behind a node address `127.0.K.1`; `None` for any other address.
pub fn node_of(ip: IpAddr) -> Option<u64> {
    match ip {
        IpAddr::V4(v4) => match v4.octets() {
            [127, 0, k, 1] if k != 0 => Some(u64::from(k)),
            _ => None,
        },
        IpAddr::V6(_) => None,
    }
}

fn octet(node: u64) -> u8 {
    match u8::try_from(node) {
        Ok(k @ 1..=254) => k,
        _ => panic!("node id {node} cannot be encoded in a loopback address (1 to 254)"),
    }
}

/// Connects to `to` from node `node`'s address, as that node's Raft client would; for tests
/// that play a node's part themselves.
pub async fn connect_from(node: u64, to: SocketAddr) -> io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(node_ip(node), 0))?;
    socket.connect(to).await
}

/// The links currently cut, shared by every proxy of a test.
///
/// A pair `(from, to)` is directed by who opens the connection: blocking it stops node
/// `from` from calling node `to`, and with it the answers to those calls, while `to` may still
/// call `from`. Raft's leader calls its followers and candidates call voters, so a one-way
/// block models a link that fails for one side's requests only.
///
/// Cloning gives another handle on the same set. Changes reach the proxies at once: a
/// connection whose pair becomes blocked is closed with a reset, so that a node cannot go on
/// using an HTTP/2 or keep-alive connection it opened before the fault.
#[derive(Clone, Debug)]
pub struct Faults {
    blocked: Arc<watch::Sender<BTreeSet<(u64, u64)>>>,
}

impl Default for Faults {
    fn default() -> Faults {
        Faults::new()
    }
}

impl Faults {
    /// No link is cut.
    pub fn new() -> Faults {
        Faults {
            blocked: Arc::new(watch::Sender::new(BTreeSet::new())),
        }
    }

    /// Cuts the connections node `from` opens to node `to`.
    pub fn block(&self, from: u64, to: u64) {
        self.blocked.send_modify(|set| {
            set.insert((from, to));
        });
    }

    /// Restores the connections node `from` opens to node `to`.
    pub fn unblock(&self, from: u64, to: u64) {
        self.blocked.send_modify(|set| {
            set.remove(&(from, to));
        });
    }

    /// Cuts every link between the two groups, both ways, in one change: a network partition.
    pub fn partition(&self, one: &[u64], other: &[u64]) {
        self.blocked.send_modify(|set| {
            for &a in one {
                for &b in other.iter().filter(|&&b| b != a) {
                    set.insert((a, b));
                    set.insert((b, a));
                }
            }
        });
    }

    /// Cuts `node` off from every other node of `all_nodes`, both ways.
    pub fn isolate(&self, node: u64, all_nodes: &[u64]) {
        self.partition(&[node], all_nodes);
    }

    /// Restores every link.
    pub fn heal(&self) {
        self.blocked.send_modify(BTreeSet::clear);
    }

    pub fn is_blocked(&self, from: u64, to: u64) -> bool {
        self.blocked.borrow().contains(&(from, to))
    }

    /// The cut links, for failure messages.
    pub fn blocked(&self) -> Vec<(u64, u64)> {
        self.blocked.borrow().iter().copied().collect()
    }

    fn subscribe(&self) -> watch::Receiver<BTreeSet<(u64, u64)>> {
        self.blocked.subscribe()
    }
}

/// What a proxy did so far, so that a test can tell that a fault really took effect.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Connections relayed to the node.
    pub relayed: u64,
    /// Connections reset on accept because their link was cut.
    pub refused: u64,
    /// Open connections reset because their link was cut while they were in use.
    pub cut: u64,
    /// Connections reset on accept because they did not come from a node address.
    pub strangers: u64,
}

#[derive(Debug, Default)]
struct Counters {
    relayed: AtomicU64,
    refused: AtomicU64,
    cut: AtomicU64,
    strangers: AtomicU64,
}

/// A proxy in front of one node, listening on its `127.0.K.2` address; stops with every
/// connection it carries when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    address: SocketAddr,
    node: u64,
    counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on `listen` and relays to `upstream`, a node's `127.0.K.1` address, subject to
    /// `faults`. Port 0 in `listen` picks a free port; see [`FaultProxy::address`].
    ///
    /// # Panics
    /// When either address is not on loopback, when `upstream` is not a node address, or when
    /// `listen` cannot be bound.
    pub async fn start(listen: SocketAddr, upstream: SocketAddr, faults: &Faults) -> FaultProxy {
        assert!(
            listen.ip().is_loopback() && upstream.ip().is_loopback(),
            "the fault proxy runs on loopback only ({listen} to {upstream})"
        );
        let node = node_of(upstream.ip())
            .unwrap_or_else(|| panic!("{upstream} is not a node address of the form 127.0.K.1"));
        let listener = TcpListener::bind(listen)
            .await
            .unwrap_or_else(|e| panic!("cannot bind the fault proxy on {listen}: {e}"));
        let address = listener.local_addr().expect("fault proxy address");
        let counters = Arc::new(Counters::default());
        let relay = Relay {
            node,
            upstream,
            faults: faults.clone(),
            counters: counters.clone(),
        };
        let task = tokio::spawn(relay.serve(listener));
        FaultProxy {
            address,
            node,
            counters,
            task,
        }
    }

    /// Where peers reach the node through this proxy.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The node behind this proxy.
    pub fn node(&self) -> u64 {
        self.node
    }

    pub fn stats(&self) -> ProxyStats {
        ProxyStats {
            relayed: self.counters.relayed.load(Ordering::Relaxed),
            refused: self.counters.refused.load(Ordering::Relaxed),
            cut: self.counters.cut.load(Ordering::Relaxed),
            strangers: self.counters.strangers.load(Ordering::Relaxed),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // Aborting the accept loop drops its set of connection tasks, which aborts them too.
        self.task.abort();
    }
}

/// The part of a proxy that runs in its tasks.
#[derive(Clone)]
struct Relay {
    node: u64,
    upstream: SocketAddr,
    faults: Faults,
    counters: Arc<Counters>,
}

impl Relay {
    async fn serve(self, listener: TcpListener) {
        let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let mut connections = JoinSet::new();
        loop {
            // Reap finished connections so the set does not grow with the test's length.
            while connections.try_join_next().is_some() {}
            let Ok(permit) = limit.clone().acquire_owned().await else {
                return;
            };
            let Ok((inbound, peer)) = listener.accept().await else {
                // Accept fails on descriptor exhaustion; waiting lets connections close.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let relay = self.clone();
            connections.spawn(async move {
                relay.carry(inbound, peer).await;
                drop(permit);
            });
        }
    }

    /// Relays one connection until either side closes it or its link is cut.
    async fn carry(&self, mut inbound: TcpStream, peer: SocketAddr) {
        // A node that does not bind its outgoing connections to its own address would pass
        // every fault unnoticed, and the test would prove nothing; it is refused instead.
        let Some(from) = node_of(peer.ip()) else {
            self.counters.strangers.fetch_add(1, Ordering::Relaxed);
            eprintln!(
                "fault proxy for node {}: refused {peer}, which is not a node address \
                 127.0.K.1 (does the node bind its outgoing connections?)",
                self.node
            );
            reset(inbound);
            return;
        };
        let pair_blocked = |set: &BTreeSet<(u64, u64)>| set.contains(&(from, self.node));
        // Subscribe before looking, so that a fault arriving from now on is seen below.
        let mut faults = self.faults.subscribe();
        if pair_blocked(&faults.borrow_and_update()) {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            reset(inbound);
            return;
        }
        let connect =
            tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, TcpStream::connect(self.upstream));
        let Ok(Ok(mut outbound)) = connect.await else {
            // The node is down: the caller sees its connection fail, much as it would be
            // refused without the proxy.
            reset(inbound);
            return;
        };
        self.counters.relayed.fetch_add(1, Ordering::Relaxed);

        let was_cut = {
            let relay = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
            tokio::pin!(relay);
            loop {
                tokio::select! {
                    _ = &mut relay => break false,
                    changed = faults.changed() => {
                        if changed.is_err() || pair_blocked(&faults.borrow_and_update()) {
                            break true;
                        }
                    }
                }
            }
        };
        if was_cut {
            self.counters.cut.fetch_add(1, Ordering::Relaxed);
            reset(inbound);
            reset(outbound);
        }
    }
}

/// Closes a connection with a reset rather than an orderly close, so that both nodes see the
/// link fail at once instead of reading a clean end of stream that TLS would report as a
/// truncation only on the next read.
fn reset(stream: TcpStream) {
    // A stream the peer already closed can refuse the option; it is closing anyway.
    let _ = stream.set_zero_linger();
    drop(stream);
}
