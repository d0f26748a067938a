//! The documentation keeps up with the code: every relative link in README.md and docs/
//! resolves (the file, and the heading an `#anchor` names), and every flag that `--help` lists
//! for any subcommand is documented somewhere under docs/.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn pages() -> Vec<PathBuf> {
    let mut out = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    assert!(docs.len() >= 10, "docs/ holds the reference, one page per topic");
    out.extend(docs);
    out
}

/// GitHub's anchor for a heading: lower case, punctuation other than `-` and `_` dropped,
/// spaces to hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a markdown file's headings (outside code blocks).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut fenced = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            out.insert(slug(line.trim_start_matches('#')));
        }
    }
    out
}

/// Every `[text](target)` of a markdown file outside code blocks and inline code.
fn links(text: &str) -> Vec<String> {
    let mut fenced = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Inline code spans hold examples, not links.
        let plain: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        let mut rest = plain.as_str();
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(after[..end].to_string());
            rest = &after[end..];
        }
    }
    out
}

#[test]
fn every_relative_link_resolves() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        let dir = page.parent().unwrap();
        for target in links(&text) {
            if target.starts_with("http://") || target.starts_with("https://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (file, anchor) = target.split_once('#').map_or((target.as_str(), None), |(f, a)| (f, Some(a)));
            let dest: PathBuf = if file.is_empty() { page.clone() } else { dir.join(file) };
            let name = page.strip_prefix(root()).unwrap().display().to_string();
            if !dest.exists() {
                broken.push(format!("{name}: {target} (no such file)"));
                continue;
            }
            if let Some(a) = anchor {
                let heads = anchors(&std::fs::read_to_string(&dest).unwrap_or_default());
                if !heads.contains(a) {
                    broken.push(format!("{name}: {target} (no such heading)"));
                }
            }
        }
    }
    assert!(checked > 20, "only {checked} relative links found: is the parser right?");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// The long flags a subcommand's `--help` lists.
fn flags(sub: &str) -> BTreeSet<String> {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_embgraft")).args([sub, "--help"]).output().unwrap();
    assert!(o.status.success(), "{sub} --help: {}", String::from_utf8_lossy(&o.stderr));
    let help = String::from_utf8_lossy(&o.stdout).into_owned();
    help.lines()
        .map(str::trim_start)
        .filter_map(|l| {
            // Option lines: `-s, --seed <SEED>` or `--seed <SEED>`.
            let l = l.strip_prefix('-').map(|_| l)?;
            let at = l.find("--")?;
            let name: String = l[at + 2..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
            (!name.is_empty() && name != "help" && name != "version").then(|| format!("--{name}"))
        })
        .collect()
}

#[test]
fn every_flag_is_documented() {
    let docs: String = pages().iter().skip(1).map(|p| std::fs::read_to_string(p).unwrap()).collect();
    let mut missing = Vec::new();
    let mut seen = 0;
    for sub in ["compare", "train", "report", "export", "inspect", "bench"] {
        for flag in flags(sub) {
            seen += 1;
            let documented = docs.match_indices(&flag).any(|(i, _)| {
                let next = docs[i + flag.len()..].chars().next();
                !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
            });
            if !documented {
                missing.push(format!("{sub} {flag}"));
            }
        }
    }
    assert!(seen > 60, "only {seen} flags found in --help: is the parser right?");
    assert!(missing.is_empty(), "flags --help lists that no page under docs/ mentions:\n{}", missing.join("\n"));
}

#[test]
fn readme_opens_with_the_two_commands() {
    let text = std::fs::read_to_string(root().join("README.md")).unwrap();
    let code = text.split("```").nth(1).expect("a code block");
    let lines: Vec<&str> = code.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() == 2, "{lines:?}");
    assert!(lines[0].starts_with("cargo run --release -- compare") && lines[1].starts_with("cargo test --release"));
    assert!(Path::new(&root().join("assets/sweep-minilm-shakespeare.png")).is_file());
}

/// Every sentence of the docs that lists the settings a resume may change (a run of backticked
/// flags with `--device` and `--checkpoint-every` in it) lists exactly the engine's own
/// (`embgraft::config::RESUMABLE`), in its order.
#[test]
fn every_list_of_the_resumable_settings_is_the_engines() {
    let want = embgraft::config::resumable_flags();
    assert!(want.len() >= 5 && want.contains(&"--save-weights".to_string()), "{want:?}");
    let mut seen = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap().split_whitespace().collect::<Vec<_>>().join(" ");
        for run in flag_runs(&text) {
            if !(run.contains(&"--device".to_string()) && run.contains(&"--checkpoint-every".to_string())) {
                continue;
            }
            seen += 1;
            assert_eq!(run, want, "{}: a list of the resumable settings that is not the engine's", page.display());
        }
    }
    assert!(seen >= 4, "only {seen} lists of the resumable settings found in the docs");
}

/// Runs of backticked flags joined as a sentence joins them (`` `--a`, `--b` and `--c` ``).
fn flag_runs(text: &str) -> Vec<Vec<String>> {
    let mut runs = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("`--") {
        let mut run = Vec::new();
        let mut at = &rest[i..];
        while let Some(end) = at[1..].find('`') {
            run.push(at[1..1 + end].to_string());
            at = &at[end + 2..];
            let next = [", `", " and `", ", and `"]
                .iter()
                .find(|sep| at.starts_with(**sep) && at[sep.len()..].starts_with("--"));
            match next {
                Some(sep) => at = &at[sep.len() - 1..],
                None => break,
            }
        }
        rest = at;
        runs.push(run);
    }
    runs
}
