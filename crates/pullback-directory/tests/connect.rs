//! Reaching the directory: LDAPS and StartTLS verified against the CA bundle, and the failures
//! of a whole run (wrong CA, wrong password, nobody listening) named clearly, without the
//! password.

use pullback_directory::testing::{SERVICE_DN, Slapd, SlapdOptions};
use pullback_directory::{DirectoryConfig, DirectoryError, import};
use pullback_domain::Secret;
use std::net::TcpListener;

fn small() -> Slapd {
    Slapd::start_with(&SlapdOptions {
        people: 600,
        ..SlapdOptions::default()
    })
}

async fn refused(config: &DirectoryConfig) -> DirectoryError {
    match import(config, None).await {
        Ok(result) => panic!("imported {} entries", result.entries.len()),
        Err(error) => error,
    }
}

#[tokio::test]
async fn ldaps_and_starttls_import_with_the_ca_bundle() {
    let slapd = small();
    for config in [slapd.ldaps_config(), slapd.starttls_config()] {
        let result = import(&config, None)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", config.url, slapd.log()));
        assert_eq!(
            result.entries.len(),
            slapd.population().entries(),
            "{}",
            config.url
        );
    }
}

#[tokio::test]
async fn a_wrong_ca_fails_the_run_clearly() {
    let slapd = small();
    for mut config in [slapd.ldaps_config(), slapd.starttls_config()] {
        config.ca_file = Some(slapd.other_ca_file());
        let error = refused(&config).await;
        let message = error.to_string();
        assert!(matches!(error, DirectoryError::Tls { .. }), "{message}");
        assert!(message.contains(&config.url), "{message}");
        assert!(
            message.contains("does not verify against the CA bundle"),
            "{message}"
        );
        assert!(message.contains("other-ca.pem"), "{message}");
    }
}

#[tokio::test]
async fn a_missing_or_empty_ca_bundle_is_named() {
    let slapd = small();
    let mut config = slapd.ldaps_config();
    let empty = slapd.ca_file().with_file_name("slapd.conf");
    config.ca_file = Some(empty.clone());
    let error = refused(&config).await;
    assert!(matches!(error, DirectoryError::CaFile { .. }), "{error}");
    assert!(error.to_string().contains("slapd.conf"), "{error}");
}

#[tokio::test]
async fn a_bad_bind_fails_without_the_password() {
    let slapd = small();
    let mut config = slapd.config();
    let password = "Wr0ng-but-Secret-Passw0rd";
    config.bind_password = Some(Secret(password.to_owned()));
    let error = refused(&config).await;
    let message = error.to_string();
    assert!(matches!(error, DirectoryError::Bind { .. }), "{message}");
    assert!(
        message.contains(SERVICE_DN) && message.contains(&config.url),
        "{message}"
    );
    assert!(message.contains("invalidCredentials (49)"), "{message}");
    assert!(!message.contains(password), "{message}");
    assert!(!format!("{error:?}").contains(password));
    assert!(!format!("{config:?}").contains(password));
}

#[tokio::test]
async fn an_unreachable_server_fails_without_the_password() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
        listener.local_addr().expect("address").port()
    };
    let mut config = DirectoryConfig::new(&format!("ldap://127.0.0.1:{port}/"), &["dc=x"]);
    config.bind_dn = Some("cn=svc,dc=x".to_owned());
    config.bind_password = Some(Secret("Very-Secret-123".to_owned()));
    config.classes = vec![pullback_directory::ClassConfig::people("person")];
    config.timeout_secs = 5;
    let error = refused(&config).await;
    let message = error.to_string();
    assert!(matches!(error, DirectoryError::Connect { .. }), "{message}");
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    assert!(!message.contains("Very-Secret-123"), "{message}");
}

#[tokio::test]
async fn a_missing_base_dn_fails_the_run() {
    let slapd = small();
    let mut config = slapd.config();
    config
        .base_dns
        .push("ou=nowhere,dc=example,dc=test".to_owned());
    let error = refused(&config).await;
    let message = error.to_string();
    assert!(matches!(error, DirectoryError::Search { .. }), "{message}");
    assert!(
        message.contains("ou=nowhere") && message.contains("noSuchObject"),
        "{message}"
    );
}
