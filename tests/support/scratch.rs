//! Scratch directories of tests, shared by the crates' test helpers, which
//! include this file by path. Two kinds: one test's own, removed when
//! dropped (also when the test fails), and one per test process, for what
//! its tests build once and share; the next process of the same kind
//! removes those of processes that have ended.

#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// A directory of one test's, `hutch-<what>-<pid>-<n>` in the temporary
/// directory; removed with everything in it when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Makes a new one with permissions `mode` (the rootless suites run
    /// programs as other users, who must reach it).
    pub fn new(what: &str, mode: u32) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        sweep(what);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("hutch-{what}-{}-{n}", std::process::id()));
        make(&dir, mode);
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The path as text, for tests that build paths with `format!`.
    pub fn text(&self) -> &str {
        self.0
            .to_str()
            .expect("the temporary directory's path is UTF-8")
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// This process's directory `hutch-<what>-<pid>` in the temporary
/// directory, made with permissions `mode` if it is not there, after
/// removing those of `what` left by processes that have ended.
pub fn process_dir(what: &str, mode: u32) -> PathBuf {
    sweep(what);
    let dir = std::env::temp_dir().join(format!("hutch-{what}-{}", std::process::id()));
    make(&dir, mode);
    dir
}

fn make(dir: &Path, mode: u32) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot make {}: {e}", dir.display()));
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("cannot set the mode of {}: {e}", dir.display()));
}

/// Removes the directories `hutch-<what>-<pid>` and `hutch-<what>-<pid>-<n>`
/// whose process `pid` is gone.
fn sweep(what: &str) {
    let prefix = format!("hutch-{what}-");
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let (pid, n) = rest.split_once('-').unwrap_or((rest, "0"));
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(pid) || !digits(n) || pid == std::process::id().to_string() {
            continue;
        }
        if !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
