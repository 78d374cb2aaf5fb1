//! What a program that failed said: the one line worth showing, and what a log gained.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::Output;

/// One line on why a program failed, from its output.
pub(crate) fn failure_detail(program: &str, out: &Output) -> String {
    let text = [&out.stdout[..], b"\n", &out.stderr[..]].concat();
    last_meaningful_line(&String::from_utf8_lossy(&text))
        .unwrap_or_else(|| format!("{program} exited with {}", out.status))
}

/// The line that best explains a failure: the last error-like line, else the last line,
/// skipping pg_ctl's generic ones.
pub(crate) fn last_meaningful_line(text: &str) -> Option<String> {
    const GENERIC: [&str; 3] = [
        "waiting for server",
        "Examine the log output",
        "could not start server",
    ];
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !GENERIC.iter().any(|g| l.contains(g)))
        .collect();
    let error_like = |l: &&&str| {
        ["FATAL:", "PANIC:", "ERROR:", "error:"]
            .iter()
            .any(|m| l.contains(m))
    };
    let line = lines.iter().rev().find(error_like).or(lines.last())?;
    let flat: String = line
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    Some(flat.chars().take(300).collect())
}

/// The text a log gained since `offset` (its last 16 KiB at most).
pub(crate) fn read_from(path: &Path, offset: u64) -> String {
    let mut text = String::new();
    if let Ok(mut file) = File::open(path) {
        let len = file.metadata().map_or(0, |m| m.len());
        let from = offset.max(len.saturating_sub(16 * 1024));
        if file.seek(SeekFrom::Start(from)).is_ok() {
            let mut bytes = Vec::new();
            let _ = file.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meaningful_line_prefers_errors_and_skips_pg_ctl_noise() {
        let log = "LOG:  starting\nFATAL:  lock file \"postmaster.pid\" already exists\nHINT:  Is another postmaster running?\n";
        assert_eq!(
            last_meaningful_line(log).as_deref(),
            Some("FATAL:  lock file \"postmaster.pid\" already exists")
        );
        let pg_ctl = "waiting for server to start.... stopped waiting\npg_ctl: could not start server\nExamine the log output.\n";
        assert_eq!(last_meaningful_line(pg_ctl), None);
        assert_eq!(last_meaningful_line("a\nb\n\n").as_deref(), Some("b"));
    }
}
