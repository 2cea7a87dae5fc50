//! Names the build for `damon --version`: the target triple and the commit it was built from.
//!
//! Sets DAMON_BUILD_TARGET (cargo's TARGET) and DAMON_BUILD_COMMIT for the crate's code. The
//! commit is, in this order: the DAMON_BUILD_COMMIT variable (a build from a tarball, or a
//! release script marking a dirty tree), `git rev-parse --short HEAD` when the package is a git
//! checkout (its own `.git`, so that a copy vendored inside another repository does not take
//! that repository's commit), else "unknown". Standard library only: the Windows cross build
//! runs on vendored dependencies with Rust 1.63.

use std::path::{Path, PathBuf};
use std::process::Command;

const COMMIT_VAR: &str = "DAMON_BUILD_COMMIT";

fn main() {
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown-target".to_string());
    println!("cargo:rustc-env=DAMON_BUILD_TARGET={}", target);
    // Any rerun-if line replaces cargo's default (rerun on any change in the package): from
    // here on the script reruns only for the variable and the git files named below.
    println!("cargo:rerun-if-env-changed={}", COMMIT_VAR);
    let commit = match std::env::var(COMMIT_VAR) {
        Ok(commit) if !commit.trim().is_empty() => commit.trim().to_string(),
        _ => git_commit().unwrap_or_else(|| "unknown".to_string()),
    };
    println!("cargo:rustc-env=DAMON_BUILD_COMMIT={}", commit);
}

/// The short hash of HEAD, and rerun-if-changed lines for the files that move when HEAD does.
fn git_commit() -> Option<String> {
    let package = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
    // A file in a worktree, a directory in a plain clone.
    if !package.join(".git").exists() {
        return None;
    }
    let commit = git(&package, &["rev-parse", "--short", "HEAD"])?;
    // HEAD names a branch; a commit on it rewrites the branch's ref file, or packed-refs once
    // git has packed it. Only existing files are named: cargo reruns the script on every build
    // for a missing one, and would then rebuild damon every time.
    let mut watched = vec![git(&package, &["rev-parse", "--git-path", "HEAD"])?];
    if let Some(branch) = git(&package, &["symbolic-ref", "--quiet", "HEAD"]) {
        watched.extend(git(&package, &["rev-parse", "--git-path", &branch]));
    }
    watched.extend(git(&package, &["rev-parse", "--git-path", "packed-refs"]));
    for file in watched {
        let path = package.join(file);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    Some(commit)
}

/// One line of git's output, or `None` when git is missing or fails.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).current_dir(dir).output().ok()?;
    let line = String::from_utf8(output.stdout).ok()?.trim().to_string();
    if output.status.success() && !line.is_empty() {
        Some(line)
    } else {
        None
    }
}
