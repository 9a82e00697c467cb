//! The in-memory index of imported people and groups that alert processing asks: who owns an
//! address, which groups someone is in (nested groups included), who a group or distribution
//! list reaches. Built once from the entries, answered from hash maps and sorted lists; no IO.
//!
//! Group nesting is resolved over the strongly connected components of the "is member of"
//! graph, so groups that contain each other are found and reported, and every group in such a
//! loop counts as containing the members of all of them.

use crate::config::EntryKind;
use crate::dn;
use crate::entry::{DirectoryEntry, Problem, ProblemKind};
use crate::import::ImportResult;
use std::collections::HashMap;

/// People and groups indexed for lookups.
#[derive(Clone, Debug, Default)]
pub struct Directory {
    entries: Vec<DirectoryEntry>,
    /// Normalised DN to entry.
    by_dn: HashMap<String, u32>,
    /// Lower-case address to the first entry that has it.
    by_address: HashMap<String, u32>,
    /// Lower-case group name (first RDN value, display name) to the groups so named.
    group_names: HashMap<String, Vec<u32>>,
    /// Per entry: the groups it is in, directly or through nesting, sorted.
    groups: Vec<Vec<u32>>,
    /// Per group: the people it lists directly, sorted.
    direct_people: Vec<Vec<u32>>,
    /// Per group: the people it reaches through nesting, sorted.
    people: Vec<Vec<u32>>,
    problems: Vec<Problem>,
    unresolved_members: usize,
}

impl Directory {
    /// Indexes the entries, resolving group membership. Each entry's `groups` is filled with the
    /// DNs of the groups it is in, nested ones included.
    pub fn new(entries: Vec<DirectoryEntry>) -> Directory {
        let mut directory = Directory {
            entries,
            ..Directory::default()
        };
        directory.index();
        directory
    }

    /// Folds in the result of an import: a full import replaces everything; an incremental one
    /// replaces the entries it returns and drops the removed DNs.
    pub fn update(&mut self, result: ImportResult) {
        if !result.incremental {
            *self = Directory::new(result.entries);
            return;
        }
        let mut entries = std::mem::take(&mut self.entries);
        let mut gone: std::collections::HashSet<String> = result
            .removed_dns
            .iter()
            .filter_map(|d| dn::normalize(d).ok())
            .collect();
        gone.extend(
            result
                .entries
                .iter()
                .filter_map(|e| dn::normalize(&e.dn).ok()),
        );
        entries.retain(|e| dn::normalize(&e.dn).is_ok_and(|d| !gone.contains(&d)));
        entries.extend(result.entries);
        *self = Directory::new(entries);
    }

    /// Every entry, with `groups` resolved.
    pub fn entries(&self) -> &[DirectoryEntry] {
        &self.entries
    }

    /// The entries, with `groups` resolved.
    pub fn into_entries(self) -> Vec<DirectoryEntry> {
        self.entries
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Group loops and addresses claimed twice, found while indexing.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// Member DNs that name no entry here (outside the base DNs, or of a class not imported).
    pub fn unresolved_members(&self) -> usize {
        self.unresolved_members
    }

    /// The person, contact or distribution list with this address (any case).
    pub fn by_address(&self, address: &str) -> Option<&DirectoryEntry> {
        let index = *self.by_address.get(&address.trim().to_lowercase())?;
        Some(&self.entries[index as usize])
    }

    /// The entry with this DN, however it is spelled.
    pub fn by_dn(&self, dn: &str) -> Option<&DirectoryEntry> {
        self.find(dn).map(|i| &self.entries[i as usize])
    }

    /// The groups an entry (by DN or address) is in, nested ones included.
    pub fn groups_of(&self, dn_or_address: &str) -> Vec<&DirectoryEntry> {
        let Some(index) = self.find(dn_or_address) else {
            return Vec::new();
        };
        self.groups[index as usize]
            .iter()
            .map(|&g| &self.entries[g as usize])
            .collect()
    }

    /// The people a group (by DN, address or name) reaches: its direct members, or with
    /// `nested` also those of the groups inside it. A name several groups share means all of
    /// them.
    pub fn members_of(&self, group: &str, nested: bool) -> Vec<&DirectoryEntry> {
        let lists = if nested {
            &self.people
        } else {
            &self.direct_people
        };
        let mut people: Vec<u32> = self
            .find_groups(group)
            .into_iter()
            .flat_map(|g| lists[g as usize].iter().copied())
            .collect();
        people.sort_unstable();
        people.dedup();
        people
            .into_iter()
            .map(|p| &self.entries[p as usize])
            .collect()
    }

    /// Whether a person (by DN or address) is in a group (by DN, address or name), directly
    /// or through nesting.
    pub fn is_member(&self, person: &str, group: &str) -> bool {
        let Some(person) = self.find(person) else {
            return false;
        };
        let groups = &self.groups[person as usize];
        self.find_groups(group)
            .into_iter()
            .any(|g| groups.binary_search(&g).is_ok())
    }

    /// The people an address reaches: the person, or every person a distribution list
    /// reaches through nesting; empty for an unknown address.
    pub fn expand(&self, address: &str) -> Vec<&DirectoryEntry> {
        match self.by_address(address) {
            Some(entry) if entry.kind == EntryKind::Group => self.members_of(&entry.dn, true),
            Some(entry) => vec![entry],
            None => Vec::new(),
        }
    }

    /// An entry by DN, else by address.
    fn find(&self, key: &str) -> Option<u32> {
        if let Ok(normal) = dn::normalize(key)
            && let Some(&index) = self.by_dn.get(&normal)
        {
            return Some(index);
        }
        self.by_address.get(&key.trim().to_lowercase()).copied()
    }

    fn find_groups(&self, key: &str) -> Vec<u32> {
        if let Some(index) = self.find(key) {
            let is_group = self.entries[index as usize].kind == EntryKind::Group;
            return if is_group { vec![index] } else { Vec::new() };
        }
        self.group_names
            .get(&key.trim().to_lowercase())
            .cloned()
            .unwrap_or_default()
    }

    fn index(&mut self) {
        let count = self.entries.len();
        self.index_names();
        let direct = self.direct_groups();
        let group_of_groups: Vec<Vec<u32>> = (0..count)
            .map(|i| match self.entries[i].kind {
                EntryKind::Group => direct[i].clone(),
                EntryKind::Person => Vec::new(),
            })
            .collect();
        let components = strongly_connected(&group_of_groups);
        let closure = self.closures(&components, &group_of_groups);

        self.groups = (0..count)
            .map(|i| {
                let mut all: Vec<u32> = direct[i]
                    .iter()
                    .flat_map(|&g| closure[components.of[g as usize] as usize].iter().copied())
                    .filter(|&g| g as usize != i)
                    .collect();
                all.sort_unstable();
                all.dedup();
                all
            })
            .collect();
        self.direct_people = vec![Vec::new(); count];
        self.people = vec![Vec::new(); count];
        for person in (0..count).filter(|&i| self.entries[i].kind == EntryKind::Person) {
            for &group in &direct[person] {
                self.direct_people[group as usize].push(person as u32);
            }
            for &group in &self.groups[person] {
                self.people[group as usize].push(person as u32);
            }
        }
        for i in 0..count {
            let dns = self.groups[i]
                .iter()
                .map(|&g| self.entries[g as usize].dn.clone())
                .collect();
            self.entries[i].groups = dns;
        }
    }

    fn index_names(&mut self) {
        for (i, entry) in self.entries.iter().enumerate() {
            let index = i as u32;
            if let Ok(normal) = dn::normalize(&entry.dn) {
                self.by_dn.entry(normal).or_insert(index);
            }
            for address in &entry.addresses {
                match self.by_address.get(address) {
                    Some(&other) => self.problems.push(Problem {
                        dn: entry.dn.clone(),
                        what: ProblemKind::SharedAddress {
                            address: address.clone(),
                            other_dn: self.entries[other as usize].dn.clone(),
                        },
                    }),
                    None => {
                        self.by_address.insert(address.clone(), index);
                    }
                }
            }
            if entry.kind == EntryKind::Group {
                let names = dn::first_value(&entry.dn)
                    .into_iter()
                    .chain(entry.display_name.clone());
                for name in names {
                    let list = self.group_names.entry(name.to_lowercase()).or_default();
                    if !list.contains(&index) {
                        list.push(index);
                    }
                }
            }
        }
    }

    /// Per entry, the groups that list it directly.
    fn direct_groups(&mut self) -> Vec<Vec<u32>> {
        let mut direct = vec![Vec::new(); self.entries.len()];
        for (group, entry) in self.entries.iter().enumerate() {
            if entry.kind != EntryKind::Group {
                continue;
            }
            for member in &entry.member_dns {
                let found = dn::normalize(member)
                    .ok()
                    .and_then(|m| self.by_dn.get(&m).copied());
                match found {
                    Some(m) => direct[m as usize].push(group as u32),
                    None => self.unresolved_members += 1,
                }
            }
        }
        for groups in &mut direct {
            groups.sort_unstable();
            groups.dedup();
        }
        direct
    }

    /// Per component, every group it is inside: its own groups and all their parents.
    fn closures(&mut self, components: &Components, parents: &[Vec<u32>]) -> Vec<Vec<u32>> {
        let mut closure: Vec<Vec<u32>> = vec![Vec::new(); components.members.len()];
        // Components come out of Tarjan's algorithm parents first, so each parent's closure
        // is complete when a child needs it.
        for (c, members) in components.members.iter().enumerate() {
            let mut all: Vec<u32> = members.clone();
            for &member in members {
                for &parent in &parents[member as usize] {
                    let pc = components.of[parent as usize] as usize;
                    if pc != c {
                        all.extend_from_slice(&closure[pc]);
                    }
                }
            }
            all.sort_unstable();
            all.dedup();
            closure[c] = all;
            let self_loop =
                members.len() == 1 && parents[members[0] as usize].contains(&members[0]);
            if members.len() > 1 || self_loop {
                self.report_loop(members);
            }
        }
        closure
    }

    fn report_loop(&mut self, members: &[u32]) {
        let mut dns: Vec<String> = members
            .iter()
            .map(|&m| self.entries[m as usize].dn.clone())
            .collect();
        dns.sort();
        self.problems.push(Problem {
            dn: dns[0].clone(),
            what: ProblemKind::GroupLoop { groups: dns },
        });
    }
}

/// The strongly connected components of a graph given as adjacency lists.
struct Components {
    /// Each node's component.
    of: Vec<u32>,
    /// Each component's nodes, components in the order Tarjan's algorithm completes them
    /// (every component after all the components it reaches).
    members: Vec<Vec<u32>>,
}

/// Tarjan's algorithm without recursion, so deep nesting cannot overflow the stack.
fn strongly_connected(edges: &[Vec<u32>]) -> Components {
    const UNSEEN: u32 = u32::MAX;
    let count = edges.len();
    let mut order = vec![UNSEEN; count];
    let mut low = vec![0u32; count];
    let mut on_stack = vec![false; count];
    let mut stack: Vec<u32> = Vec::new();
    let mut of = vec![0u32; count];
    let mut members: Vec<Vec<u32>> = Vec::new();
    let mut next = 0u32;
    // (node, index of the next edge to follow)
    let mut path: Vec<(u32, usize)> = Vec::new();

    for root in 0..count as u32 {
        if order[root as usize] != UNSEEN {
            continue;
        }
        path.push((root, 0));
        while let Some(&mut (node, ref mut edge)) = path.last_mut() {
            let n = node as usize;
            if *edge == 0 && order[n] == UNSEEN {
                order[n] = next;
                low[n] = next;
                next += 1;
                stack.push(node);
                on_stack[n] = true;
            }
            if let Some(&to) = edges[n].get(*edge) {
                *edge += 1;
                let t = to as usize;
                if order[t] == UNSEEN {
                    path.push((to, 0));
                } else if on_stack[t] {
                    low[n] = low[n].min(order[t]);
                }
                continue;
            }
            path.pop();
            if let Some(&(parent, _)) = path.last() {
                low[parent as usize] = low[parent as usize].min(low[n]);
            }
            if low[n] == order[n] {
                let component = members.len() as u32;
                let mut nodes = Vec::new();
                while let Some(m) = stack.pop() {
                    on_stack[m as usize] = false;
                    of[m as usize] = component;
                    nodes.push(m);
                    if m == node {
                        break;
                    }
                }
                members.push(nodes);
            }
        }
    }
    Components { of, members }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn person(name: &str) -> DirectoryEntry {
        DirectoryEntry {
            dn: format!("uid={name},ou=people,dc=x"),
            object_classes: vec!["inetOrgPerson".into()],
            kind: EntryKind::Person,
            addresses: vec![format!("{name}@example.test")],
            display_name: Some(name.to_uppercase()),
            department: None,
            title: None,
            manager: None,
            attributes: BTreeMap::new(),
            member_dns: Vec::new(),
            groups: Vec::new(),
        }
    }

    fn group(name: &str, members: &[&str]) -> DirectoryEntry {
        DirectoryEntry {
            dn: format!("cn={name},ou=groups,dc=x"),
            kind: EntryKind::Group,
            addresses: Vec::new(),
            member_dns: members
                .iter()
                .map(|m| match m.strip_prefix('@') {
                    Some(g) => format!("CN={g}, OU=Groups,DC=x"),
                    None => format!("uid={m},ou=people,dc=x"),
                })
                .collect(),
            ..person(name)
        }
    }

    fn names(entries: Vec<&DirectoryEntry>) -> Vec<String> {
        entries
            .iter()
            .map(|e| dn::first_value(&e.dn).unwrap_or_default())
            .collect()
    }

    fn sample() -> Directory {
        let mut list = group("list", &["@sales", "carol", "nobody"]);
        list.addresses = vec!["list@example.test".into()];
        Directory::new(vec![
            person("alice"),
            person("bob"),
            person("carol"),
            group("sales", &["alice", "@emea"]),
            group("emea", &["bob"]),
            group("loop-a", &["@loop-b"]),
            group("loop-b", &["@loop-a", "alice"]),
            group("self", &["@self"]),
            list,
        ])
    }

    #[test]
    fn nested_groups_resolve_both_ways() {
        let directory = sample();
        assert_eq!(
            names(directory.groups_of("uid=bob,ou=people,dc=x")),
            ["sales", "emea", "list"]
        );
        assert_eq!(
            names(directory.groups_of("ALICE@example.test")),
            ["sales", "loop-a", "loop-b", "list"]
        );
        assert_eq!(names(directory.members_of("sales", true)), ["alice", "bob"]);
        assert_eq!(names(directory.members_of("sales", false)), ["alice"]);
        assert_eq!(
            names(directory.expand("list@example.test")),
            ["alice", "bob", "carol"]
        );
        assert_eq!(names(directory.expand("carol@example.test")), ["carol"]);
        assert!(directory.expand("nobody@example.test").is_empty());
        assert!(directory.is_member("bob@example.test", "cn=sales,ou=groups,dc=x"));
        assert!(directory.is_member("uid=bob,ou=people,dc=x", "SALES"));
        assert!(!directory.is_member("carol@example.test", "sales"));
        assert!(!directory.is_member("bob@example.test", "uid=alice,ou=people,dc=x"));
        assert_eq!(directory.unresolved_members(), 1);
        let bob = directory.by_address("bob@example.test").expect("bob");
        assert_eq!(bob.groups.len(), 3);
    }

    #[test]
    fn loops_are_reported_once_and_still_resolve() {
        let directory = sample();
        let loops: Vec<&Problem> = directory
            .problems()
            .iter()
            .filter(|p| matches!(p.what, ProblemKind::GroupLoop { .. }))
            .collect();
        assert_eq!(loops.len(), 2, "{loops:?}");
        assert_eq!(loops[0].dn, "cn=loop-a,ou=groups,dc=x");
        assert_eq!(names(directory.members_of("loop-a", true)), ["alice"]);
        assert_eq!(
            names(directory.groups_of("cn=loop-a,ou=groups,dc=x")),
            ["loop-b"]
        );
    }

    #[test]
    fn a_shared_address_is_reported_and_the_first_owner_kept() {
        let mut twin = person("twin");
        twin.addresses = vec!["alice@example.test".into()];
        let directory = Directory::new(vec![person("alice"), twin]);
        assert_eq!(directory.problems().len(), 1);
        let owner = directory.by_address("alice@example.test").expect("owner");
        assert_eq!(owner.dn, "uid=alice,ou=people,dc=x");
    }

    #[test]
    fn deep_nesting_resolves_without_recursion() {
        let depth = 1_000;
        let mut entries: Vec<DirectoryEntry> = (0..depth)
            .map(|i| group(&format!("g{i}"), &[&format!("@g{}", i + 1)]))
            .collect();
        entries.push(person("leaf"));
        entries.last_mut().expect("leaf").dn = format!("cn=g{depth},ou=groups,dc=x");
        let directory = Directory::new(entries);
        assert_eq!(directory.members_of("g0", true).len(), 1);
        assert!(directory.problems().is_empty());
    }

    #[test]
    fn updates_replace_changed_entries_and_drop_removed_ones() {
        let mut directory = sample();
        let mut carol = person("carol");
        carol.title = Some("Boss".into());
        let result = ImportResult {
            entries: vec![carol],
            removed_dns: vec!["UID=bob,ou=people,dc=x".into()],
            incremental: true,
            ..ImportResult::default()
        };
        directory.update(result);
        assert!(directory.by_address("bob@example.test").is_none());
        let carol = directory.by_address("carol@example.test").expect("carol");
        assert_eq!(carol.title.as_deref(), Some("Boss"));
        assert_eq!(names(directory.members_of("sales", true)), ["alice"]);
        assert_eq!(directory.len(), 8);
    }
}
