//! Measures an import from a private OpenLDAP holding many people (100,000 by default): the
//! full paged import, an incremental run with nothing changed, one after a single change, and
//! indexing the result for lookups.
//!
//! Not part of the test suite. Run it with
//! `cargo run --release -p pullback-directory --example import_bench [people] [page size]`.

use pullback_directory::testing::{Slapd, SlapdOptions};
use pullback_directory::{Directory, import};
use std::time::Instant;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let people: usize = args
        .next()
        .map_or(100_000, |a| a.parse().expect("people is a number"));
    let page_size: u32 = args
        .next()
        .map_or(500, |a| a.parse().expect("page size is a number"));

    let started = Instant::now();
    let slapd = Slapd::start_with(&SlapdOptions {
        people,
        ..SlapdOptions::default()
    });
    let population = slapd.population();
    println!(
        "slapd: {} entries loaded by slapadd in {:.2} s, serving after {:.2} s",
        population.entries(),
        slapd.load_time().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    let mut config = slapd.config();
    config.page_size = page_size;

    let started = Instant::now();
    let full = import(&config, None).await.expect("full import");
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "full import: {} entries ({} people, {} groups) in {seconds:.2} s, {:.0} entries/s, \
         {} requests of up to {page_size}, {} problems",
        full.entries.len(),
        full.counts.people,
        full.counts.groups,
        full.entries.len() as f64 / seconds,
        full.counts.pages,
        full.counts.problems
    );
    assert_eq!(
        full.entries.len(),
        population.entries(),
        "every entry imported"
    );

    let started = Instant::now();
    let quiet = import(&config, Some(full.watermark.clone()))
        .await
        .expect("incremental import");
    println!(
        "incremental, nothing changed: {} entries, {} removed in {:.2} s",
        quiet.entries.len(),
        quiet.removed_dns.len(),
        started.elapsed().as_secs_f64()
    );

    let changed = population.person_dn(people / 2);
    slapd.modify(&format!(
        "dn: {changed}\nchangetype: modify\nreplace: title\ntitle: Benchmarked\n"
    ));
    let started = Instant::now();
    let one = import(&config, Some(quiet.watermark.clone()))
        .await
        .expect("incremental import");
    println!(
        "incremental, one change: {} entries in {:.2} s",
        one.entries.len(),
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let directory = Directory::new(full.entries);
    let indexed = started.elapsed().as_secs_f64();
    let address = population.address(people / 3).expect("an address");
    let started = Instant::now();
    let rounds = 100_000;
    let mut hits = 0;
    for _ in 0..rounds {
        if directory.is_member(&address, "all-staff") {
            hits += 1;
        }
    }
    let per_lookup = started.elapsed().as_secs_f64() / f64::from(rounds) * 1e9;
    println!(
        "index: built in {indexed:.2} s; is_member by address and group name {per_lookup:.0} ns \
         ({hits} of {rounds} true)"
    );
}
