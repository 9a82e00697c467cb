//! The proxy the cluster tests partition nodes with: it relays bytes, cuts an open link the
//! moment it is told to, refuses the link while it is cut, and relays again once healed.
//!
//! Echo servers stand in for the nodes' Raft listeners, on the same loopback addresses a
//! cluster test gives its nodes.

mod support;

use std::net::SocketAddr;
use std::time::Duration;
use support::fault_proxy::{
    FaultProxy, Faults, ProxyStats, connect_from, node_ip, node_of, proxy_ip,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Node ids of their own, so that these addresses never meet a cluster test's nodes.
const NODES: [u64; 3] = [11, 12, 13];

/// How long any one network step may take on loopback before it counts as not happening.
const STEP: Duration = Duration::from_secs(2);

/// An echo server on node `node`'s address, behind its proxy.
async fn node_behind_proxy(node: u64, faults: &Faults) -> FaultProxy {
    let listener = TcpListener::bind(SocketAddr::new(node_ip(node), 0))
        .await
        .expect("bind the echo server");
    let upstream = listener.local_addr().expect("echo server address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut from, mut to) = stream.split();
                let _ = tokio::io::copy(&mut from, &mut to).await;
            });
        }
    });
    FaultProxy::start(SocketAddr::new(proxy_ip(node), 0), upstream, faults).await
}

/// Whether `payload` comes back through the connection in time.
async fn echoes(stream: &mut TcpStream, payload: &[u8]) -> bool {
    let round_trip = async {
        stream.write_all(payload).await?;
        let mut back = vec![0; payload.len()];
        stream.read_exact(&mut back).await?;
        Ok::<_, std::io::Error>(back == payload)
    };
    matches!(tokio::time::timeout(STEP, round_trip).await, Ok(Ok(true)))
}

/// Whether the connection ends, closed or reset, in time and without being written to.
async fn ends(stream: &mut TcpStream) -> bool {
    let mut byte = [0; 1];
    let read = tokio::time::timeout(STEP, stream.read(&mut byte)).await;
    matches!(read, Ok(Ok(0) | Err(_)))
}

/// Whether a new connection from node `from` through `proxy` carries data.
async fn new_link_works(from: u64, proxy: &FaultProxy) -> bool {
    match tokio::time::timeout(STEP, connect_from(from, proxy.address())).await {
        Ok(Ok(mut stream)) => echoes(&mut stream, b"ping").await,
        _ => false,
    }
}

#[tokio::test]
async fn data_flows_both_ways_through_the_proxy() {
    let faults = Faults::new();
    let proxy = node_behind_proxy(NODES[0], &faults).await;
    assert_eq!(proxy.address().ip(), proxy_ip(NODES[0]));
    assert_eq!(proxy.node(), NODES[0]);

    let mut stream = connect_from(NODES[1], proxy.address())
        .await
        .expect("connect");
    let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
    for payload in [&b"hello"[..], &big] {
        assert!(
            echoes(&mut stream, payload).await,
            "{} bytes",
            payload.len()
        );
    }
}

#[tokio::test]
async fn isolation_cuts_open_links_refuses_new_ones_and_heals() {
    let [a, b, c] = NODES;
    let faults = Faults::new();
    let proxy_a = node_behind_proxy(a, &faults).await;
    let proxy_b = node_behind_proxy(b, &faults).await;
    let mut b_to_a = connect_from(b, proxy_a.address()).await.expect("b to a");
    let mut c_to_a = connect_from(c, proxy_a.address()).await.expect("c to a");
    assert!(echoes(&mut b_to_a, b"before").await);
    assert!(echoes(&mut c_to_a, b"before").await);

    faults.isolate(b, &NODES);
    assert!(
        ends(&mut b_to_a).await,
        "the open link from b to a was not cut"
    );
    assert!(
        echoes(&mut c_to_a, b"during").await,
        "the open link from c to a was cut too"
    );
    assert!(!new_link_works(b, &proxy_a).await, "b reached a");
    assert!(!new_link_works(a, &proxy_b).await, "a reached b");
    assert!(!new_link_works(c, &proxy_b).await, "c reached b");
    assert!(new_link_works(c, &proxy_a).await, "c could not reach a");

    faults.heal();
    assert!(
        new_link_works(b, &proxy_a).await,
        "b cannot reach a after healing"
    );
    assert!(
        new_link_works(a, &proxy_b).await,
        "a cannot reach b after healing"
    );
    assert!(echoes(&mut c_to_a, b"after").await);

    let expected = ProxyStats {
        relayed: 4,
        refused: 1,
        cut: 1,
        strangers: 0,
    };
    assert_eq!(proxy_a.stats(), expected);
}

#[tokio::test]
async fn a_one_way_block_leaves_the_other_direction_open() {
    let [a, b, _] = NODES;
    let faults = Faults::new();
    let proxy_a = node_behind_proxy(a, &faults).await;
    let proxy_b = node_behind_proxy(b, &faults).await;

    faults.block(a, b);
    assert!(!new_link_works(a, &proxy_b).await, "a reached b");
    assert!(new_link_works(b, &proxy_a).await, "b could not reach a");
    faults.unblock(a, b);
    assert!(
        new_link_works(a, &proxy_b).await,
        "a cannot reach b after unblocking"
    );
}

#[tokio::test]
async fn connections_not_from_a_node_address_are_refused() {
    let faults = Faults::new();
    let proxy = node_behind_proxy(NODES[0], &faults).await;
    let mut stream = TcpStream::connect(proxy.address()).await.expect("connect");
    assert!(!echoes(&mut stream, b"ping").await);
    assert_eq!(proxy.stats().strangers, 1);
}

#[test]
fn links_are_directed_and_isolation_cuts_both_ways() {
    let [a, b, c] = NODES;
    let faults = Faults::new();
    let check = |blocked: &[(u64, u64)]| assert_eq!(faults.blocked(), blocked);

    faults.block(a, b);
    check(&[(a, b)]);
    assert!(faults.is_blocked(a, b) && !faults.is_blocked(b, a));
    faults.unblock(a, b);
    check(&[]);
    faults.isolate(b, &NODES);
    check(&[(a, b), (b, a), (b, c), (c, b)]);
    faults.heal();
    check(&[]);
    faults.partition(&[a], &[b, c]);
    check(&[(a, b), (a, c), (b, a), (c, a)]);
}

#[test]
fn node_ids_come_from_the_third_octet_of_node_addresses() {
    let cases = [
        ("127.0.1.1", Some(1)),
        ("127.0.13.1", Some(13)),
        ("127.0.254.1", Some(254)),
        ("127.0.3.2", None),
        ("127.0.0.1", None),
        ("10.0.3.1", None),
        ("::1", None),
    ];
    for (ip, node) in cases {
        assert_eq!(node_of(ip.parse().unwrap()), node, "{ip}");
    }
    assert_eq!(node_ip(7).to_string(), "127.0.7.1");
    assert_eq!(proxy_ip(7).to_string(), "127.0.7.2");
}
