//! Writes to a private OpenLDAP: membership and attributes, each idempotent and undoable,
//! checked with `ldapsearch`.

use pullback_directory::testing::{Slapd, SlapdOptions};
use pullback_directory::{Changed, DirectoryClient, DirectoryError};

fn small() -> Slapd {
    Slapd::start_with(&SlapdOptions {
        people: 200,
        ..SlapdOptions::default()
    })
}

async fn client(slapd: &Slapd) -> DirectoryClient {
    DirectoryClient::connect(&slapd.config())
        .await
        .unwrap_or_else(|e| panic!("connect: {e}\n{}", slapd.log()))
}

fn values(slapd: &Slapd, dn: &str, attribute: &str) -> Vec<String> {
    let mut found = slapd.search(dn, "(objectClass=*)", &[attribute]);
    let entry = found.pop().unwrap_or_else(|| panic!("{dn} is missing"));
    entry.attributes.get(attribute).cloned().unwrap_or_default()
}

#[tokio::test]
async fn membership_changes_once_and_undoes() {
    let slapd = small();
    let population = slapd.population();
    let mut client = client(&slapd).await;
    let group = population.group_dn("loop-a");
    let person = population.person_dn(150);

    assert_eq!(
        client.add_member(&group, &person).await.expect("add"),
        Changed::Done
    );
    assert!(values(&slapd, &group, "member").contains(&person));
    // A different spelling of the same DN is the same member.
    let shouted = person.to_uppercase().replace("UID=", "uid=");
    assert_eq!(
        client.add_member(&group, &shouted).await.expect("again"),
        Changed::AlreadySo
    );

    assert_eq!(
        client.remove_member(&group, &person).await.expect("remove"),
        Changed::Done
    );
    assert!(!values(&slapd, &group, "member").contains(&person));
    let again = client.remove_member(&group, &person).await.expect("again");
    assert_eq!(again, Changed::AlreadySo);
    assert_eq!(
        values(&slapd, &group, "member").len(),
        2,
        "the original members stay"
    );
}

#[tokio::test]
async fn the_first_configured_class_of_a_group_names_its_member_attribute() {
    let slapd = small();
    let population = slapd.population();
    // odd-list is both a groupOfNames (member) and a pullbackGroup (pullbackListMember).
    let mut config = slapd.config();
    config.classes.reverse();
    let mut client = DirectoryClient::connect(&config).await.expect("connect");
    let list = population.group_dn("odd-list");
    let person = population.person_dn(7);

    assert_eq!(
        client.add_member(&list, &person).await.expect("add"),
        Changed::Done
    );
    assert!(values(&slapd, &list, "pullbackListMember").contains(&person));
    assert!(!values(&slapd, &list, "member").contains(&person));
    assert_eq!(
        client.add_member(&list, &person).await.expect("again"),
        Changed::AlreadySo
    );
}

#[tokio::test]
async fn set_attribute_returns_what_undoes_it() {
    let slapd = small();
    let population = slapd.population();
    let mut client = client(&slapd).await;
    let person = population.person_dn(21);
    let high = vec!["high".to_owned()];

    let previous = client
        .set_attribute(&person, "pullbackRiskTier", &high)
        .await
        .expect("set");
    assert_eq!(previous.changed, Changed::Done);
    assert_eq!(previous.values, [population.risk_tier(21)]);
    assert_eq!(values(&slapd, &person, "pullbackRiskTier"), high);

    let again = client
        .set_attribute(&person, "pullbackRiskTier", &high)
        .await
        .expect("again");
    assert_eq!(
        (again.changed, again.values),
        (Changed::AlreadySo, high.clone())
    );

    let undone = client
        .set_attribute(&person, "pullbackRiskTier", &previous.values)
        .await
        .expect("undo");
    assert_eq!(undone.changed, Changed::Done);
    assert_eq!(
        values(&slapd, &person, "pullbackRiskTier"),
        [population.risk_tier(21)]
    );

    // An absent attribute comes and goes.
    let note = vec!["quarantined phish on 2024-05-01".to_owned()];
    let added = client
        .set_attribute(&person, "description", &note)
        .await
        .expect("add");
    assert!(added.values.is_empty());
    assert_eq!(values(&slapd, &person, "description"), note);
    let removed = client
        .set_attribute(&person, "description", &added.values)
        .await
        .expect("remove");
    assert_eq!(removed.values, note);
    assert!(values(&slapd, &person, "description").is_empty());
}

#[tokio::test]
async fn writes_to_missing_entries_and_refused_values_fail_clearly() {
    let slapd = small();
    let population = slapd.population();
    let mut client = client(&slapd).await;
    let nowhere = "cn=nowhere,ou=groups,dc=example,dc=test";
    let error = client
        .add_member(nowhere, &population.person_dn(1))
        .await
        .expect_err("no group");
    assert!(
        matches!(error, DirectoryError::NoSuchEntry { .. }),
        "{error}"
    );
    assert!(error.to_string().contains(nowhere), "{error}");

    let person = population.person_dn(3);
    let error = client
        .set_attribute(&person, "pullbackVip", &["maybe".to_owned()])
        .await
        .expect_err("not a boolean");
    assert!(matches!(error, DirectoryError::Write { .. }), "{error}");
    assert!(
        error.to_string().contains("invalidAttributeSyntax"),
        "{error}"
    );

    let badge = population.person_dn(pullback_directory::testing::BINARY_BADGE);
    let error = client
        .set_attribute(&badge, "pullbackBadge", &[])
        .await
        .expect_err("binary values cannot be put back");
    assert!(error.to_string().contains("binary"), "{error}");
}
