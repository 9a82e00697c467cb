//! Tokens: secrets and certificates (PS256 and RS256), every national cloud, and the refusals
//! of the token endpoint and of Graph when the client asks wrongly.

mod support;

use pullback_domain::RecipientStatus;
use pullback_graph::testing::{LocalGraphConfig, rsa_certificate};
use pullback_graph::{
    AssertionAlgorithm, CertificateCredential, Credential, GraphClient, GraphError, NationalCloud,
    TokenError,
};
use pullback_mailbox::MailboxBackend;
use support::*;

/// Quarantines one phish in Alice's mailbox with `backend`; the outcome.
async fn quarantine_one(
    graph: &pullback_graph::testing::LocalGraph,
    config: pullback_graph::GraphConfig,
) -> pullback_domain::RecipientOutcome {
    graph.deliver(ALICE, "inbox", &phish("<token@evil.example>"));
    backend_with(config)
        .quarantine(ALICE, &target("token@evil.example"))
        .await
}

#[tokio::test]
async fn every_national_cloud_gets_a_token_for_its_own_graph() {
    for cloud in NationalCloud::NAMED {
        let graph = graph_with(LocalGraphConfig {
            cloud,
            ..LocalGraphConfig::default()
        })
        .await;
        let config = graph.secret_config();
        assert_eq!(
            config.endpoints.scope(),
            format!("{}/.default", cloud.graph().expect("a named cloud"))
        );
        let outcome = quarantine_one(&graph, config).await;
        assert_eq!(
            outcome.status,
            RecipientStatus::Quarantined,
            "{cloud}: {outcome:?}"
        );
    }
}

#[tokio::test]
async fn certificates_sign_assertions_in_both_documented_forms() {
    let (cert, pkcs8, pkcs1) = rsa_certificate();
    for (key, algorithm) in [
        (&pkcs8, AssertionAlgorithm::Ps256),
        (&pkcs1, AssertionAlgorithm::Rs256),
    ] {
        let graph = graph().await;
        graph.add_certificate(&cert);
        let credential =
            CertificateCredential::from_pem(cert.as_bytes(), key.as_bytes(), algorithm)
                .expect("a certificate credential");
        let shown = format!("{credential:?}");
        assert!(!shown.contains("PRIVATE"), "{shown}");
        let outcome = quarantine_one(
            &graph,
            graph.client_config(Credential::Certificate(credential)),
        )
        .await;
        assert_eq!(
            outcome.status,
            RecipientStatus::Quarantined,
            "{algorithm:?}: {outcome:?}"
        );
    }
}

#[tokio::test]
async fn an_unregistered_certificate_is_refused_as_invalid_client() {
    let graph = graph().await;
    let (cert, key, _) = rsa_certificate();
    let credential =
        CertificateCredential::from_pem(cert.as_bytes(), key.as_bytes(), Default::default())
            .expect("a certificate credential");
    let client = GraphClient::new(graph.client_config(Credential::Certificate(credential)))
        .expect("a client");
    let err = client.check_token().await.expect_err("not registered");
    assert!(
        matches!(&err, GraphError::Token(TokenError::Refused { status: 401, error, .. }) if error == "invalid_client"),
        "{err}"
    );
    assert!(err.to_string().contains("AADSTS700027"), "{err}");
}

#[tokio::test]
async fn a_wrong_secret_fails_the_recipient_without_showing_the_secret() {
    let graph = graph().await;
    let outcome = quarantine_one(
        &graph,
        graph.client_config(Credential::Secret("wrong-s3cret".into())),
    )
    .await;
    assert_eq!(outcome.status, RecipientStatus::Failed, "{outcome:?}");
    assert!(
        outcome.details.contains("invalid_client"),
        "{}",
        outcome.details
    );
    assert!(
        outcome.details.contains("AADSTS7000215"),
        "{}",
        outcome.details
    );
    assert!(
        !outcome.details.contains("wrong-s3cret"),
        "{}",
        outcome.details
    );
}

#[tokio::test]
async fn a_scope_of_another_cloud_is_refused_by_the_token_endpoint() {
    let graph = graph_with(LocalGraphConfig {
        cloud: NationalCloud::UsGov,
        ..LocalGraphConfig::default()
    })
    .await;
    // A client configured for the global cloud but sent to the US Government authority.
    let mut config = graph.secret_config();
    config.endpoints = graph.endpoints(NationalCloud::Global);
    let err = GraphClient::new(config)
        .expect("a client")
        .check_token()
        .await
        .expect_err("another cloud");
    assert!(err.to_string().contains("invalid_resource"), "{err}");
    assert!(
        err.to_string().contains("https://graph.microsoft.com"),
        "{err}"
    );
}

#[tokio::test]
async fn graph_refuses_a_token_issued_for_another_clouds_graph() {
    let graph = graph_with(LocalGraphConfig {
        cloud: NationalCloud::UsGovDod,
        extra_resources: vec!["https://graph.microsoft.us".into()],
        ..LocalGraphConfig::default()
    })
    .await;
    let mut config = graph.secret_config();
    config.endpoints = graph.endpoints(NationalCloud::UsGov);
    let outcome = quarantine_one(&graph, config).await;
    assert_eq!(outcome.status, RecipientStatus::Failed, "{outcome:?}");
    assert!(
        outcome.details.contains("Invalid audience"),
        "{}",
        outcome.details
    );
}

#[tokio::test]
async fn tokens_are_cached_and_renewed_when_graph_says_they_expired() {
    let graph = graph().await;
    let backend = backend(&graph);
    for i in 0..3 {
        let id = format!("<cached{i}@evil.example>");
        graph.deliver(ALICE, "inbox", &phish(&id));
        let outcome = backend.quarantine(ALICE, &target(&id)).await;
        assert_eq!(outcome.status, RecipientStatus::Quarantined, "{outcome:?}");
    }
    assert_eq!(graph.stats().tokens_issued, 1);

    graph.expire_tokens();
    graph.deliver(ALICE, "inbox", &phish("<renewed@evil.example>"));
    let outcome = backend
        .quarantine(ALICE, &target("renewed@evil.example"))
        .await;
    assert_eq!(outcome.status, RecipientStatus::Quarantined, "{outcome:?}");
    assert_eq!(graph.stats().tokens_issued, 2);
}

#[tokio::test]
async fn short_lived_tokens_are_renewed_before_they_expire() {
    let graph = graph_with(LocalGraphConfig {
        token_lifetime: std::time::Duration::from_secs(2),
        ..LocalGraphConfig::default()
    })
    .await;
    let client = GraphClient::new(graph.secret_config()).expect("a client");
    client.check_token().await.expect("a token");
    client.check_token().await.expect("the cached token");
    assert_eq!(graph.stats().tokens_issued, 1);
    tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
    client.check_token().await.expect("a renewed token");
    assert_eq!(
        graph.stats().tokens_issued,
        2,
        "renewed a quarter of its life before expiry"
    );
}
