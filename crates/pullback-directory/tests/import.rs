//! Imports from a private OpenLDAP: every entry through the size limit, enrichment data, group
//! nesting and loops, problems with single entries, and incremental runs.

use pullback_directory::testing::{
    BINARY_BADGE, DL_ADDRESS, NO_ADDRESS, REFERRAL_URL, SUFFIX, Slapd, SlapdOptions,
};
use pullback_directory::{
    ChangeMark, Directory, DirectoryEntry, EntryKind, ImportResult, ProblemKind, import,
};

async fn full_import(slapd: &Slapd) -> ImportResult {
    import(&slapd.config(), None)
        .await
        .unwrap_or_else(|e| panic!("import: {e}\n{}", slapd.log()))
}

fn entry<'a>(result: &'a ImportResult, dn: &str) -> &'a DirectoryEntry {
    result
        .entries
        .iter()
        .find(|e| e.dn == dn)
        .unwrap_or_else(|| panic!("{dn} was not imported"))
}

fn problems_of<'a>(result: &'a ImportResult, dn: &str) -> Vec<&'a ProblemKind> {
    result
        .problems
        .iter()
        .filter(|p| p.dn == dn)
        .map(|p| &p.what)
        .collect()
}

#[tokio::test]
async fn a_full_import_pages_past_the_size_limit() {
    let slapd = Slapd::start();
    let population = slapd.population();
    let (shown, code) = slapd.unpaged_search("(objectClass=inetOrgPerson)");
    assert_eq!(
        (shown, code),
        (500, Some(4)),
        "an unpaged search is cut at the size limit"
    );

    let result = full_import(&slapd).await;
    assert!(!result.incremental);
    assert_eq!(result.entries.len(), population.entries());
    assert_eq!(result.counts.people, population.people);
    assert_eq!(result.counts.groups, population.group_dns().len());
    assert_eq!(result.watermark.dns.len(), population.entries());
    assert!(
        result.counts.pages >= population.people / 500,
        "{:?}",
        result.counts
    );
    assert!(matches!(
        result.watermark.mark,
        Some(ChangeMark::Csn { .. })
    ));
}

#[tokio::test]
async fn people_carry_their_enrichment_data_and_groups() {
    let slapd = Slapd::start();
    let population = slapd.population();
    let result = full_import(&slapd).await;

    for i in [1, 4, 7, 73, 1234, 2999] {
        let person = entry(&result, &population.person_dn(i));
        assert_eq!(person.kind, EntryKind::Person);
        assert_eq!(
            person.display_name.as_deref(),
            Some(population.display_name(i).as_str())
        );
        assert_eq!(person.department.as_deref(), Some(population.department(i)));
        assert_eq!(person.title.as_deref(), Some(population.title(i)));
        assert_eq!(person.manager, population.manager(i));
        assert_eq!(
            person.attributes["pullbackRiskTier"],
            [population.risk_tier(i)]
        );
        let vip = if population.vip(i) { "TRUE" } else { "FALSE" };
        assert_eq!(person.attributes["pullbackVip"], [vip]);
        assert_eq!(person.attributes["employeeNumber"], [i.to_string()]);
        assert!(person.object_classes.iter().any(|c| c == "pullbackPerson"));

        let mut expected = population.proxy_primary(i).into_iter().collect::<Vec<_>>();
        expected.extend(population.address(i));
        assert_eq!(person.addresses, expected, "person {i}");

        let department = population.department_group(population.department(i));
        let all_staff = population.group_dn("all-staff");
        assert!(
            person.groups.contains(&department),
            "{i}: {:?}",
            person.groups
        );
        assert!(
            person.groups.contains(&all_staff),
            "{i} is in all-staff through nesting"
        );
        let in_dl = person.groups.contains(&population.group_dn("sales-team"));
        assert_eq!(
            in_dl,
            population.department(i) == "Sales" || i == 4,
            "person {i}"
        );
    }
    let manager = entry(&result, &population.person_dn(50));
    assert_eq!(manager.manager, None);
}

#[tokio::test]
async fn a_group_loop_is_reported_and_resolution_finishes() {
    let slapd = Slapd::start();
    let population = slapd.population();
    let result = full_import(&slapd).await;
    let (loop_a, loop_b) = (population.group_dn("loop-a"), population.group_dn("loop-b"));

    let loops: Vec<&ProblemKind> = problems_of(&result, &loop_a);
    assert_eq!(
        loops,
        [&ProblemKind::GroupLoop {
            groups: vec![loop_a.clone(), loop_b.clone()]
        }]
    );
    let one = entry(&result, &population.person_dn(1));
    let two = entry(&result, &population.person_dn(2));
    for person in [one, two] {
        assert!(person.groups.contains(&loop_a) && person.groups.contains(&loop_b));
    }
    let directory = Directory::new(result.entries);
    let members: Vec<&str> = directory
        .members_of("loop-a", true)
        .iter()
        .map(|e| e.dn.as_str())
        .collect();
    assert_eq!(members, [population.person_dn(1), population.person_dn(2)]);
}

#[tokio::test]
async fn problems_with_single_entries_are_collected() {
    let slapd = Slapd::start();
    let population = slapd.population();
    let result = full_import(&slapd).await;

    for i in NO_ADDRESS {
        let dn = population.person_dn(i);
        assert_eq!(problems_of(&result, &dn), [&ProblemKind::NoAddress], "{dn}");
        assert!(entry(&result, &dn).addresses.is_empty());
    }
    let badge = population.person_dn(BINARY_BADGE);
    assert_eq!(
        problems_of(&result, &badge),
        [&ProblemKind::NotText {
            attribute: "pullbackBadge".into()
        }]
    );
    assert!(
        !entry(&result, &badge)
            .attributes
            .contains_key("pullbackBadge")
    );

    let odd = population.group_dn("odd-list");
    assert_eq!(
        problems_of(&result, &odd),
        [&ProblemKind::NotADn {
            attribute: "pullbackListMember".into(),
            value: "not a dn".into()
        }]
    );
    let odd_members = &entry(&result, &odd).member_dns;
    assert_eq!(
        odd_members,
        &[population.person_dn(0), population.person_dn(5)]
    );

    let referral = problems_of(&result, "ou=elsewhere,dc=example,dc=test");
    assert_eq!(
        referral,
        [&ProblemKind::Referral {
            urls: vec![format!("{REFERRAL_URL}??sub")]
        }]
    );
    // The rest: the badge, the odd list, the referral and the group loop.
    let expected = NO_ADDRESS.len() + 4;
    assert_eq!(result.problems.len(), expected, "{:#?}", result.problems);
}

#[tokio::test]
async fn a_distribution_list_expands_to_its_people() {
    let slapd = Slapd::start();
    let population = slapd.population();
    let directory = Directory::new(full_import(&slapd).await.entries);

    let list = directory.by_address(DL_ADDRESS).expect("the list");
    assert_eq!(list.kind, EntryKind::Group);
    let people = directory.expand(DL_ADDRESS);
    let sales = (0..population.people).filter(|&i| population.department(i) == "Sales");
    let mut expected: Vec<String> = sales.map(|i| population.person_dn(i)).collect();
    expected.push(population.person_dn(4));
    let mut found: Vec<String> = people.iter().map(|e| e.dn.clone()).collect();
    found.sort();
    expected.sort();
    assert_eq!(found, expected);

    let someone = population.address(5).expect("an address");
    assert!(directory.is_member(&someone, "all-staff"));
    assert!(directory.is_member(&someone, &population.department_group("Sales")));
    assert!(!directory.is_member(&someone, DL_ADDRESS) || population.department(5) == "Sales");
    let members = directory.members_of(&population.group_dn("all-staff"), true);
    assert_eq!(members.len(), population.people);
    assert!(
        directory.members_of("all-staff", false).is_empty(),
        "only groups directly"
    );
}

#[tokio::test]
async fn an_incremental_run_returns_only_what_changed_and_names_what_was_deleted() {
    let slapd = Slapd::start_with(&SlapdOptions {
        people: 2_000,
        ..SlapdOptions::default()
    });
    let population = slapd.population();
    let first = full_import(&slapd).await;
    let config = slapd.config();

    let quiet = import(&config, Some(first.watermark.clone()))
        .await
        .expect("quiet run");
    assert!(quiet.incremental);
    assert!(
        quiet.entries.iter().all(|e| e.kind == EntryKind::Group),
        "only groups, unchanged"
    );
    assert!(
        quiet.entries.is_empty(),
        "{:?}",
        quiet.entries.iter().map(|e| &e.dn).collect::<Vec<_>>()
    );
    assert!(quiet.removed_dns.is_empty());

    let changed = population.person_dn(42);
    slapd.modify(&format!(
        "dn: {changed}\nchangetype: modify\nreplace: title\ntitle: Chief Risk Officer\n"
    ));
    let second = import(&config, Some(quiet.watermark.clone()))
        .await
        .expect("second run");
    assert!(second.incremental);
    let dns: Vec<&str> = second.entries.iter().map(|e| e.dn.as_str()).collect();
    assert_eq!(dns, [changed.as_str()]);
    let person = &second.entries[0];
    assert_eq!(person.title.as_deref(), Some("Chief Risk Officer"));
    let department = population.department_group(population.department(42));
    assert!(
        person.groups.contains(&department),
        "groups resolved in an incremental run"
    );
    assert!(second.removed_dns.is_empty());

    let deleted = population.person_dn(77);
    slapd.delete(&deleted);
    let third = import(&config, Some(second.watermark.clone()))
        .await
        .expect("third run");
    assert!(third.entries.is_empty());
    assert_eq!(third.removed_dns, std::slice::from_ref(&deleted));
    assert_eq!(third.watermark.dns.len(), population.entries() - 1);

    let mut directory = Directory::new(first.entries);
    for result in [second, third] {
        directory.update(result);
    }
    assert!(directory.by_dn(&deleted).is_none());
    let updated = directory.by_dn(&changed).expect("changed person");
    assert_eq!(updated.title.as_deref(), Some("Chief Risk Officer"));
    assert_eq!(directory.len(), population.entries() - 1);
}

#[tokio::test]
async fn without_a_context_csn_the_newest_entry_csn_seen_is_the_mark() {
    let slapd = Slapd::start_with(&SlapdOptions {
        people: 1_000,
        context_csn: false,
        ..SlapdOptions::default()
    });
    let population = slapd.population();
    let first = full_import(&slapd).await;
    let Some(ChangeMark::Csn { csn }) = &first.watermark.mark else {
        panic!("no CSN mark: {:?}", first.watermark.mark);
    };
    let newest = slapd.search(SUFFIX, "(objectClass=*)", &["entryCSN"]);
    let newest = newest
        .iter()
        .flat_map(|e| e.attributes.get("entryCSN"))
        .flatten()
        .max();
    assert_eq!(
        Some(csn),
        newest,
        "the newest entryCSN of the tree is the suffix's"
    );

    let changed = population.person_dn(500);
    slapd.modify(&format!(
        "dn: {changed}\nchangetype: modify\nreplace: title\ntitle: Intern\n"
    ));
    let config = slapd.config();
    let second = import(&config, Some(first.watermark.clone()))
        .await
        .expect("second run");
    let dns: Vec<&str> = second.entries.iter().map(|e| e.dn.as_str()).collect();
    assert_eq!(dns, [changed.as_str()]);
    let third = import(&config, Some(second.watermark))
        .await
        .expect("third run");
    assert!(third.entries.is_empty(), "the mark moved past the change");
}

#[tokio::test]
async fn a_changed_scope_makes_the_next_run_full() {
    let slapd = Slapd::start_with(&SlapdOptions {
        people: 1_000,
        ..SlapdOptions::default()
    });
    let first = full_import(&slapd).await;
    let mut config = slapd.config();
    config.base_dns = vec![format!("ou=people,{SUFFIX}")];
    let second = import(&config, Some(first.watermark))
        .await
        .expect("second run");
    assert!(!second.incremental);
    assert_eq!(second.entries.len(), 1_000);
    assert_eq!(
        second.removed_dns.len(),
        slapd.population().group_dns().len()
    );
}
