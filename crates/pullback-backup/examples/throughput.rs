//! Measures a local backup against `cp -r`: writes about 2 GiB of random files shaped like a
//! RocksDB checkpoint (64 MiB tables and many small files), then times `cp -r` + `sync`, a
//! backup write (which syncs every file) and a verify, and prints the ratios.
//!
//! Not part of the test suite. Run it on a quiet machine with
//! `benches/backup_throughput.sh [folder] [GiB]`; it needs twice the size free in the folder
//! (three times with `SFTP=1`, which also times a write and a verify over SFTP to a private
//! sshd) and removes what it wrote. `ROUNDS` sets the number of rounds (5).

use pullback_backup::{MANIFEST_FORMAT, Manifest, NO_PROGRESS, Target, TargetConfig};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const TABLE_BYTES: usize = 64 << 20;
const SMALL_FILES: usize = 200;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let parent = PathBuf::from(args.next().unwrap_or_else(|| "/work".to_owned()));
    let gib: f64 = args
        .next()
        .map_or(2.0, |a| a.parse().expect("GiB is a number"));
    let work = tempfile::Builder::new()
        .prefix("pullback-backup-bench-")
        .tempdir_in(&parent)
        .expect("a folder to work in");
    let source = work.path().join("source");
    let bytes = make_source(&source, (gib * f64::from(1 << 30)) as u64);
    warm(&source);
    println!(
        "source: {} files, {:.2} GiB",
        count(&source),
        bytes as f64 / f64::from(1 << 30)
    );

    let rounds: usize = std::env::var("ROUNDS").map_or(5, |r| r.parse().expect("ROUNDS"));
    let mut rows = Vec::new();
    for round in 0..rounds {
        // Alternating who goes first spreads the effect of a busy neighbour evenly.
        let (cp, write, verify) = if round % 2 == 0 {
            let cp = time_cp(work.path(), &source);
            let (write, verify) = time_backup(work.path(), &source, round).await;
            (cp, write, verify)
        } else {
            let (write, verify) = time_backup(work.path(), &source, round).await;
            (time_cp(work.path(), &source), write, verify)
        };
        rows.push((cp.0, cp.1, write, verify));
    }

    let rate = |d: Duration| bytes as f64 / d.as_secs_f64() / f64::from(1 << 20);
    println!("round  cp -r        cp -r+sync   write        verify       write vs cp+sync");
    for (i, (cp, cp_sync, write, verify)) in rows.iter().enumerate() {
        println!(
            "{:<6} {:>6.0} MiB/s {:>6.0} MiB/s {:>6.0} MiB/s {:>6.0} MiB/s {:>6.2}x",
            i + 1,
            rate(*cp),
            rate(*cp_sync),
            rate(*write),
            rate(*verify),
            cp_sync.as_secs_f64() / write.as_secs_f64(),
        );
    }
    let median = |pick: fn(&(Duration, Duration, Duration, Duration)) -> Duration| {
        let mut values: Vec<Duration> = rows.iter().map(pick).collect();
        values.sort();
        values[values.len() / 2]
    };
    let (cp, cp_sync) = (median(|r| r.0), median(|r| r.1));
    let (write, verify) = (median(|r| r.2), median(|r| r.3));
    println!(
        "median {:>6.0} MiB/s {:>6.0} MiB/s {:>6.0} MiB/s {:>6.0} MiB/s",
        rate(cp),
        rate(cp_sync),
        rate(write),
        rate(verify)
    );
    println!(
        "write (synced) runs at {:.2}x the speed of cp -r + sync and {:.2}x that of cp -r alone; \
         write + verify at {:.2}x cp -r + sync",
        cp_sync.as_secs_f64() / write.as_secs_f64(),
        cp.as_secs_f64() / write.as_secs_f64(),
        cp_sync.as_secs_f64() / (write + verify).as_secs_f64(),
    );
    println!("SHA-256 alone on one core: {:.0} MiB/s", hash_rate());
    if std::env::var_os("SFTP").is_some() {
        time_sftp(&source, bytes).await;
    }
}

/// Times a write and a verify over SFTP to a private sshd on this machine.
async fn time_sftp(source: &Path, bytes: u64) {
    let sshd = pullback_backup::testing::Sshd::start();
    let target = Target::new(&sshd.target_config()).unwrap();
    let started = Instant::now();
    let written = target
        .write(source, manifest(0), NO_PROGRESS)
        .await
        .unwrap();
    let write = started.elapsed();
    let started = Instant::now();
    target.verify(&written.id, NO_PROGRESS).await.unwrap();
    let verify = started.elapsed();
    let rate = |d: Duration| bytes as f64 / d.as_secs_f64() / f64::from(1 << 20);
    println!(
        "SFTP to 127.0.0.1: write {:.0} MiB/s, verify {:.0} MiB/s",
        rate(write),
        rate(verify)
    );
}

/// Times `cp -r` and, from the same start, its `sync`; removes the copy.
fn time_cp(work: &Path, source: &Path) -> (Duration, Duration) {
    let copy = work.join("copy");
    let started = Instant::now();
    let cpu = cpu_seconds();
    run(Command::new("cp").arg("-r").arg(source).arg(&copy));
    let cp = started.elapsed();
    println!(
        "  cp -r: {cp:.2?}, {:.2} s of processor",
        cpu_seconds() - cpu
    );
    run(Command::new("sync").arg("-f").arg(&copy));
    let cp_sync = started.elapsed();
    fs::remove_dir_all(&copy).unwrap();
    run(Command::new("sync").arg("-f").arg(work));
    (cp, cp_sync)
}

/// Times a backup write and its verify; removes the backup.
async fn time_backup(work: &Path, source: &Path, round: usize) -> (Duration, Duration) {
    let root = work.join("backups");
    fs::create_dir_all(&root).unwrap();
    let target = Target::new(&TargetConfig::Local { path: root.clone() }).unwrap();
    let started = Instant::now();
    let cpu = cpu_seconds();
    let written = target
        .write(source, manifest(round), NO_PROGRESS)
        .await
        .unwrap();
    let write = started.elapsed();
    let cpu = cpu_seconds() - cpu;
    println!("  write: {write:.2?}, {cpu:.2} s of processor");
    let started = Instant::now();
    target.verify(&written.id, NO_PROGRESS).await.unwrap();
    let verify = started.elapsed();
    fs::remove_dir_all(&root).unwrap();
    run(Command::new("sync").arg("-f").arg(work));
    (write, verify)
}

/// Processor seconds used so far by this process and the children it waited for, from
/// /proc/self/stat (in ticks of 1/100 s).
fn cpu_seconds() -> f64 {
    let stat = fs::read_to_string("/proc/self/stat").unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    // utime, stime, cutime and cstime are fields 14 to 17, 12 to 15 after the name.
    fields[11..15]
        .iter()
        .map(|f| f.parse::<f64>().unwrap())
        .sum::<f64>()
        / 100.0
}

/// SHA-256 of 256 MiB in memory, in MiB/s.
fn hash_rate() -> f64 {
    use sha2::Digest;
    let buf = vec![7u8; 256 << 20];
    let started = Instant::now();
    let digest = sha2::Sha256::digest(&buf);
    std::hint::black_box(digest);
    256.0 / started.elapsed().as_secs_f64()
}

fn manifest(round: usize) -> Manifest {
    Manifest {
        manifest_format: MANIFEST_FORMAT,
        id: format!("bench-{round}"),
        pullback_version: env!("CARGO_PKG_VERSION").to_owned(),
        data_format: 1,
        cluster: "bench".to_owned(),
        node_id: 1,
        created_at: chrono::Utc::now(),
        applied_index: 0,
        counts: Default::default(),
        files: Vec::new(),
    }
}

/// Writes tables of 64 MiB up to `total` bytes, plus small files; returns the bytes written.
fn make_source(dir: &Path, total: u64) -> u64 {
    fs::create_dir_all(dir.join("small")).unwrap();
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut buf = vec![0u8; TABLE_BYTES];
    let mut written = 0u64;
    let mut n = 0;
    while written + (TABLE_BYTES as u64) <= total {
        fill_random(&mut buf, &mut rng);
        write_file(&dir.join(format!("{:06}.sst", n + 10)), &buf);
        written += TABLE_BYTES as u64;
        n += 1;
    }
    for i in 0..SMALL_FILES {
        let size = 4096 + (i * 997) % 60_000;
        fill_random(&mut buf[..size], &mut rng);
        write_file(&dir.join(format!("small/{i:04}.log")), &buf[..size]);
        written += size as u64;
    }
    run(Command::new("sync").arg("-f").arg(dir));
    written
}

fn fill_random(buf: &mut [u8], state: &mut u64) {
    for chunk in buf.chunks_mut(8) {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        let bytes = state.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

fn write_file(path: &Path, bytes: &[u8]) {
    File::create(path).unwrap().write_all(bytes).unwrap();
}

/// Reads every file once so that both contenders start from the page cache.
fn warm(dir: &Path) {
    let mut buf = vec![0u8; 4 << 20];
    for entry in walk(dir) {
        let mut file = File::open(entry).unwrap();
        while file.read(&mut buf).unwrap() > 0 {}
    }
}

fn count(dir: &Path) -> usize {
    walk(dir).len()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut folders = vec![dir.to_owned()];
    while let Some(folder) = folders.pop() {
        for entry in fs::read_dir(folder).unwrap() {
            let path = entry.unwrap().path();
            match path.is_dir() {
                true => folders.push(path),
                false => files.push(path),
            }
        }
    }
    files
}

fn run(command: &mut Command) {
    let status = command.status().unwrap();
    assert!(status.success(), "{command:?} failed: {status}");
}
