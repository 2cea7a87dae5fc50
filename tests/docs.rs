//! The documentation against itself and against the binary: every relative link in README.md
//! and docs/*.md leads to a file that exists and, with a `#fragment`, to a heading that
//! exists (GitHub's anchors); and docs/configuration.md's table holds exactly the settings
//! `damon --help` lists, so that the two cannot drift apart; the man page (examples/man.rs)
//! names every flag and variable and is roff that groff formats without a warning.
#![cfg(target_os = "linux")]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Component, Path, PathBuf};

const DAMON: &str = env!("CARGO_BIN_EXE_damon");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every docs/*.md, as paths relative to the repository's root.
fn documents() -> Vec<PathBuf> {
    let mut docs = vec![PathBuf::from("README.md")];
    let mut under: Vec<PathBuf> = fs::read_dir(root().join("docs"))
        .expect("read docs/")
        .map(|entry| entry.expect("read docs/").path())
        .filter(|path| path.extension().map_or(false, |ext| ext == "md"))
        .map(|path| PathBuf::from("docs").join(path.file_name().expect("file name")))
        .collect();
    under.sort();
    docs.extend(under);
    docs
}

fn read(relative: &Path) -> String {
    let path = root().join(relative);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {}", path.display(), e))
}

/// The lines of a Markdown text outside fenced code blocks, with their numbers (from 1).
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut fence: Option<&str> = None;
    let mut lines = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let marker = if trimmed.starts_with("```") {
            Some("```")
        } else if trimmed.starts_with("~~~") {
            Some("~~~")
        } else {
            None
        };
        match (fence, marker) {
            (None, Some(m)) => fence = Some(m),
            (Some(open), Some(m)) if open == m => fence = None,
            (None, None) => lines.push((i + 1, line)),
            _ => {}
        }
    }
    lines
}

/// A line with its inline code spans (`...`) blanked out: a link written as code is no link.
fn without_code_spans(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_code = false;
    for c in line.chars() {
        if c == '`' {
            in_code = !in_code;
            out.push(' ');
        } else if in_code {
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out
}

/// The targets of the inline links `[text](target)` and of reference definitions `[x]: target`.
fn link_targets(line: &str) -> Vec<String> {
    let line = without_code_spans(line);
    let mut targets = Vec::new();
    let trimmed = line.trim_start();
    if trimmed.starts_with('[') {
        if let Some(end) = trimmed.find("]:") {
            let target = trimmed[end + 2..].split_whitespace().next().unwrap_or("");
            targets.push(target.trim_matches(&['<', '>'][..]).to_string());
        }
    }
    let bytes = line.as_bytes();
    let mut i = 0;
    while let Some(found) = line[i..].find("](") {
        let start = i + found + 2;
        let mut depth = 0usize;
        let mut end = start;
        while end < bytes.len() {
            match bytes[end] {
                b'(' => depth += 1,
                b')' if depth == 0 => break,
                b')' => depth -= 1,
                _ => {}
            }
            end += 1;
        }
        let inside = &line[start..end];
        // `(target "title")`: the title is not part of the target.
        let target = inside.split_whitespace().next().unwrap_or("");
        targets.push(target.trim_matches(&['<', '>'][..]).to_string());
        i = end.min(line.len());
        if i >= line.len() {
            break;
        }
    }
    targets
}

/// GitHub's anchor for a heading: lowercase, punctuation other than '-' and '_' removed,
/// spaces become '-'.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| {
            if c == ' ' {
                Some('-')
            } else if c.is_alphanumeric() || c == '-' || c == '_' {
                Some(c)
            } else {
                None
            }
        })
        .collect()
}

/// Every anchor of a document's headings; a repeated heading gets -1, -2, ... as on GitHub.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut anchors = BTreeSet::new();
    for (_, line) in prose_lines(text) {
        let level = line.chars().take_while(|&c| c == '#').count();
        if level == 0 || level > 6 || !line[level..].starts_with(' ') {
            continue;
        }
        let base = slug(line[level..].trim().trim_end_matches('#'));
        let count = seen.entry(base.clone()).or_insert(0);
        let anchor = if *count == 0 { base.clone() } else { format!("{}-{}", base, count) };
        *count += 1;
        anchors.insert(anchor);
    }
    anchors
}

/// `a/b/../c` as `a/c`, without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn is_external(target: &str) -> bool {
    let scheme = target.split(':').next().unwrap_or("");
    target.contains(':')
        && !scheme.is_empty()
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.')
}

#[test]
fn the_slug_is_githubs() {
    assert_eq!(slug("What damon.exe does on Windows"), "what-damonexe-does-on-windows");
    assert_eq!(slug("The original Damon's families"), "the-original-damons-families");
    assert_eq!(slug("Exit 125: `cannot create the container`"), "exit-125-cannot-create-the-container");
    assert_eq!(slug("Rust 1.63"), "rust-163");
    assert_eq!(slug("DAMON_CPU_LIMIT, --cpu-limit"), "damon_cpu_limit---cpu-limit");
    let repeated = anchors("# A\n## Notes\n```\n# not a heading\n```\n## Notes\n");
    assert_eq!(repeated, ["a", "notes", "notes-1"].iter().map(|s| s.to_string()).collect());
}

#[test]
fn the_link_parser_finds_inline_and_reference_links() {
    assert_eq!(link_targets("see [a](docs/a.md#b) and [c](#d \"title\")"), vec!["docs/a.md#b", "#d"]);
    assert_eq!(link_targets("[ref]: docs/x.md"), vec!["docs/x.md"]);
    assert!(link_targets("code: `[a](b)` only").is_empty());
    assert_eq!(link_targets("[f(x)](a.md)"), vec!["a.md"]);
}

#[test]
fn every_relative_link_and_anchor_exists() {
    let docs = documents();
    assert!(docs.len() > 1, "no docs/*.md found");
    let mut anchor_cache: BTreeMap<PathBuf, BTreeSet<String>> = BTreeMap::new();
    let mut broken = Vec::new();
    let mut checked = 0;
    for doc in &docs {
        let text = read(doc);
        let dir = doc.parent().unwrap_or_else(|| Path::new(""));
        for (number, line) in prose_lines(&text) {
            for target in link_targets(line) {
                if target.is_empty() || is_external(&target) {
                    continue;
                }
                checked += 1;
                let (file, fragment) = match target.split_once('#') {
                    Some((file, fragment)) => (file, Some(fragment)),
                    None => (target.as_str(), None),
                };
                let linked = if file.is_empty() { doc.clone() } else { normalize(&dir.join(file)) };
                let where_ = format!("{}:{}: {}", doc.display(), number, target);
                if linked.as_os_str().is_empty() || !root().join(&linked).exists() {
                    broken.push(format!("{}: no file {}", where_, linked.display()));
                    continue;
                }
                if let Some(fragment) = fragment {
                    if linked.extension().map_or(true, |ext| ext != "md") {
                        broken.push(format!("{}: an anchor into a file that is not Markdown", where_));
                        continue;
                    }
                    let known = anchor_cache.entry(linked.clone()).or_insert_with(|| anchors(&read(&linked)));
                    if !known.contains(fragment) {
                        broken.push(format!(
                            "{}: no heading with the anchor #{} in {}",
                            where_,
                            fragment,
                            linked.display()
                        ));
                    }
                }
            }
        }
    }
    assert!(checked > 20, "only {} relative links found: is the parser broken?", checked);
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// What `damon --help` lists: every flag, and for each setting its variable, its flag and
/// the Nomad variable it falls back on.
struct Help {
    flags: BTreeSet<String>,
    settings: Vec<(String, String, Option<String>)>,
}

fn help() -> Help {
    let output = std::process::Command::new(DAMON).arg("--help").output().expect("run damon --help");
    assert!(output.status.success(), "damon --help failed: {:?}", output);
    let text = String::from_utf8(output.stdout).expect("--help is UTF-8");
    let mut flags = BTreeSet::new();
    let mut settings = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if !trimmed.starts_with('-') {
            continue;
        }
        let flag = trimmed
            .split(&[' ', ','][..])
            .find(|word| word.starts_with("--"))
            .unwrap_or_else(|| panic!("no long flag on the option line {:?}", line))
            .to_string();
        flags.insert(flag.clone());
        if let Some(start) = line.find("[env: ") {
            let env = &line[start + 6..];
            let env = &env[..env.find(']').expect("[env: ...] closed")];
            let mut names = env.split(", then ");
            let variable = names.next().expect("a variable").trim().to_string();
            let nomad = names.next().map(|n| n.trim().to_string());
            settings.push((variable, flag, nomad));
        }
    }
    assert!(settings.len() > 20, "only {} settings found in --help:\n{}", settings.len(), text);
    Help { flags, settings }
}

fn variables_in(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("DAMON_") {
        let tail = &rest[at..];
        let end =
            tail.find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')).unwrap_or(tail.len());
        // DAMON_IO_*_BANDWIDTH names a family: keep the star so it is matched as a pattern.
        let name = if tail[end..].starts_with('*') { format!("{}*", &tail[..end]) } else { tail[..end].to_string() };
        found.insert(name);
        rest = &tail[end..];
    }
    found
}

fn mentions_flag(text: &str, flag: &str) -> bool {
    text.match_indices(flag).any(|(at, _)| {
        let next = text[at + flag.len()..].chars().next();
        !matches!(next, Some(c) if c.is_ascii_alphanumeric() || c == '-')
    })
}

#[test]
fn the_configuration_reference_holds_every_setting_of_help_and_no_other() {
    let help = help();
    let text = read(Path::new("docs/configuration.md"));
    let rows: Vec<&str> = prose_lines(&text).into_iter().map(|(_, l)| l).filter(|l| l.starts_with('|')).collect();
    let mut missing = Vec::new();
    for flag in &help.flags {
        if !mentions_flag(&text, flag) {
            missing.push(format!("the flag {} is not in docs/configuration.md", flag));
        }
    }
    for (variable, flag, nomad) in &help.settings {
        let first_cell =
            |row: &&&str| row.trim_start_matches('|').split('|').next().map(str::trim) == Some(variable.as_str());
        match rows.iter().find(first_cell) {
            None => missing.push(format!("{} has no row of its own in docs/configuration.md's table", variable)),
            Some(row) => {
                if !mentions_flag(row, flag) {
                    missing.push(format!("the row of {} does not name its flag {}", variable, flag));
                }
                if let Some(nomad) = nomad {
                    if !row.contains(nomad.as_str()) {
                        missing.push(format!("the row of {} does not name {}, which --help gives", variable, nomad));
                    }
                }
            }
        }
    }
    let known: BTreeSet<&str> = help.settings.iter().map(|(v, _, _)| v.as_str()).collect();
    for row in &rows {
        for name in variables_in(row) {
            let exists = match name.strip_suffix('*') {
                Some(prefix) => known.iter().any(|k| k.starts_with(prefix)),
                None => known.contains(name.as_str()),
            };
            if !exists {
                missing.push(format!("docs/configuration.md's table names {}, which damon --help does not list", name));
            }
        }
    }
    assert!(missing.is_empty(), "docs/configuration.md and damon --help differ:\n{}", missing.join("\n"));
}

/// The man page examples/man.rs writes, built by cargo beside the tests.
fn man_page() -> String {
    let exe = std::env::current_exe().expect("current_exe");
    let generator = exe.parent().and_then(Path::parent).expect("target dir").join("examples").join("man");
    let output = std::process::Command::new(&generator)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {}", generator.display(), e));
    assert!(output.status.success(), "{} failed: {:?}", generator.display(), output);
    String::from_utf8(output.stdout).expect("the man page is UTF-8")
}

#[test]
fn the_man_page_names_every_flag_every_variable_and_every_nomad_variable_damon_reads() {
    let page = man_page();
    // The text a reader sees, near enough: roff writes a dash as \- and a quote as \(aq.
    let text = page.replace("\\-", "-").replace("\\(aq", "'");
    let help = help();
    let mut missing = Vec::new();
    for flag in &help.flags {
        if !mentions_flag(&text, flag) {
            missing.push(flag.clone());
        }
    }
    for (variable, _, nomad) in &help.settings {
        missing.extend(std::iter::once(variable).chain(nomad).filter(|v| !text.contains(v.as_str())).cloned());
    }
    // Every Nomad variable damon's own source reads (the fuzzer's list of them aside).
    let sources = ["src/config.rs", "src/config/cli.rs", "src/logging/mod.rs", "src/supervisor.rs"];
    for source in sources.iter().map(|s| read(Path::new(s))) {
        for (at, _) in source.match_indices("\"NOMAD_") {
            let name = &source[at + 1..];
            let name = &name[..name.find('"').expect("a closed string")];
            if !text.contains(name) && !missing.iter().any(|m| m == name) {
                missing.push(name.to_string());
            }
        }
    }
    assert!(missing.is_empty(), "the man page does not name {:?}:\n{}", missing, page);
    for section in ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "ENVIRONMENT", "FILES", "SEE ALSO"] {
        assert!(
            page.contains(&format!(".SH {}\n", section)) || page.contains(&format!(".SH \"{}\"\n", section)),
            "no {} section:\n{}",
            section,
            page
        );
    }
}

/// groff (scripts/test installs it; the VM has none) formats the page without a warning.
#[test]
fn the_man_page_is_well_formed_roff() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    if Command::new("groff").arg("--version").output().is_err() {
        // /vm holds the VM's test list (tests/vm/init); only there may groff be missing.
        assert!(Path::new("/vm").exists(), "groff is missing: scripts/test installs groff-base");
        println!("no groff here (the VM): the page's text is checked by the test beside this one");
        return;
    }
    let page = man_page();
    let mut groff = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run groff");
    groff.stdin.take().expect("stdin").write_all(page.as_bytes()).expect("write to groff");
    let output = groff.wait_with_output().expect("groff");
    let warnings = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && warnings.trim().is_empty(),
        "groff on the man page: {:?}\n{}",
        output.status,
        warnings
    );
}
