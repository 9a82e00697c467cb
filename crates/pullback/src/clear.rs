//! `pullback clear analyze` and `pullback clear eval`: CLEAR analysis of `.eml` files offline.

use clap::Subcommand;
use pullback_clear::verdict::{self, Disposition, NoIntelligence, Verdict};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Subcommand)]
pub enum ClearCommand {
    /// Analyses messages and prints, for each, the disposition, the score and the reasons.
    Analyze {
        /// `.eml` files (or folders of them), each analysed as the suspicious message itself.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Read each file as a user's report instead, and analyse the message it carries
        /// (attached, as `.eml`, `.msg` or `winmail.dat`, or forwarded inline).
        #[arg(long)]
        report: bool,
        /// One JSON object per file, one a line.
        #[arg(long)]
        json: bool,
    },
    /// Scores the analysis on labelled folders: confusion matrix, precision, recall, F1 and
    /// the false-positive rate (malicious or suspicious counts as positive).
    Eval {
        /// Folders (or files) of malicious messages.
        #[arg(long, required = true)]
        malicious: Vec<PathBuf>,
        /// Folders (or files) of clean messages.
        #[arg(long, required = true)]
        clean: Vec<PathBuf>,
        /// Files to count as clean even though they sit in a malicious folder.
        #[arg(long)]
        treat_as_clean: Vec<PathBuf>,
        /// Print each file's disposition too.
        #[arg(long)]
        verbose: bool,
        /// Analyse the files this many more times, from memory, to time the analysis alone.
        #[arg(long, default_value_t = 0)]
        repeat: u32,
    },
}

pub fn run(command: ClearCommand) -> anyhow::Result<()> {
    match command {
        ClearCommand::Analyze {
            files,
            json,
            report,
        } => analyze(&files, json, report),
        ClearCommand::Eval {
            malicious,
            clean,
            treat_as_clean,
            verbose,
            repeat,
        } => eval(&malicious, &clean, &treat_as_clean, verbose, repeat),
    }
}

/// Every file under `paths` (folders are walked, sorted), skipping hidden files.
fn files_of(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
                })
                .collect();
            entries.sort();
            out.extend(files_of(&entries)?);
        } else {
            out.push(path.clone());
        }
    }
    Ok(out)
}

/// Analyses one file, as the message itself or, with `as_report`, through the message the
/// report carries.
fn analyse_file(path: &Path, as_report: bool) -> anyhow::Result<Verdict> {
    let bytes =
        std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    if !as_report {
        let facts = pullback_clear::message::read(&bytes);
        return Ok(verdict::analyse(&facts, &NoIntelligence));
    }
    let report = pullback_clear::report::read_report(&bytes);
    let Some(original) = report.original else {
        anyhow::bail!(
            "{}: no reported message found: {}",
            path.display(),
            report.problems.join("; ")
        );
    };
    let mut verdict = verdict::analyse(&original, &NoIntelligence);
    verdict.problems.extend(report.problems);
    Ok(verdict)
}

fn name(disposition: Disposition) -> &'static str {
    disposition.as_str()
}

fn analyze(paths: &[PathBuf], json: bool, as_report: bool) -> anyhow::Result<()> {
    let mut failed = 0;
    for path in files_of(paths)? {
        match analyse_file(&path, as_report) {
            Ok(verdict) if json => {
                let line = serde_json::json!({ "file": path, "verdict": verdict });
                println!("{line}");
            }
            Ok(verdict) => {
                println!(
                    "{}: {} (score {})",
                    path.display(),
                    name(verdict.disposition),
                    verdict.score
                );
                for reason in &verdict.reasons {
                    println!("  {:+4} {}: {}", reason.weight, reason.item, reason.text);
                }
                for problem in &verdict.problems {
                    println!("  note: {problem}");
                }
            }
            Err(e) => {
                failed += 1;
                eprintln!("{e}");
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} file(s) could not be read");
    }
    Ok(())
}

fn eval(
    malicious: &[PathBuf],
    clean: &[PathBuf],
    treat_as_clean: &[PathBuf],
    verbose: bool,
    repeat: u32,
) -> anyhow::Result<()> {
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    let exceptions: Vec<PathBuf> = treat_as_clean.iter().map(|p| canonical(p)).collect();
    let mut labelled = Vec::new();
    for path in files_of(malicious)? {
        let truly_malicious = !exceptions.contains(&canonical(&path));
        labelled.push((path, truly_malicious));
    }
    for path in files_of(clean)? {
        labelled.push((path, false));
    }
    let started = Instant::now();
    let mut results = Vec::with_capacity(labelled.len());
    for (path, truly_malicious) in &labelled {
        let verdict = analyse_file(path, false)?;
        if verbose {
            println!(
                "{} {:>10} {:>4} {}",
                if *truly_malicious { "M" } else { "C" },
                name(verdict.disposition),
                verdict.score,
                path.display()
            );
        }
        results.push((*truly_malicious, verdict.disposition));
    }
    let elapsed = started.elapsed();
    let c = verdict::confusion(&results);
    println!(
        "messages: {} ({} malicious, {} clean)",
        results.len(),
        c.tp + c.fn_,
        c.tn + c.fp
    );
    println!("                 predicted positive  predicted negative");
    println!("truly malicious  {:>18}  {:>18}", c.tp, c.fn_);
    println!("truly clean      {:>18}  {:>18}", c.fp, c.tn);
    println!(
        "precision {:.3}  recall {:.3}  F1 {:.3}  false-positive rate {:.3}",
        c.precision, c.recall, c.f1, c.false_positive_rate
    );
    println!(
        "time: {:.1} ms for {} messages ({:.0} messages/s, reading files included)",
        elapsed.as_secs_f64() * 1000.0,
        results.len(),
        results.len() as f64 / elapsed.as_secs_f64()
    );
    if repeat > 0 {
        time_analysis(&labelled, repeat)?;
    }
    Ok(())
}

/// Times reading and analysing messages already in memory, on this thread only.
fn time_analysis(labelled: &[(PathBuf, bool)], repeat: u32) -> anyhow::Result<()> {
    let mut messages = Vec::with_capacity(labelled.len());
    for (path, _) in labelled {
        messages.push(std::fs::read(path)?);
    }
    let started = Instant::now();
    let mut analysed = 0u64;
    for _ in 0..repeat {
        for bytes in &messages {
            let facts = pullback_clear::message::read(bytes);
            std::hint::black_box(verdict::analyse(&facts, &NoIntelligence));
            analysed += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "analysis alone: {analysed} messages in {:.2} s on one thread: {:.0} messages/s",
        elapsed,
        analysed as f64 / elapsed
    );
    Ok(())
}
