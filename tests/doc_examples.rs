//! Every code example in README.md, CONTRIBUTING.md and docs/ is a file the tests build and
//! run, shown as printed: each fenced block of code (Rust, TOML, JavaScript, Python) is
//! preceded by `<!-- example: PATH -->` or `<!-- example: PATH#NAME -->`, and its text must be
//! that file, or the part of it between the lines marked `ANCHOR: NAME` and `ANCHOR_END:
//! NAME` (taken out of a doc comment when it is one: a doc test); or by `<!-- example: built
//! by TEST -->`, where TEST is a test that reads the doc itself and builds its blocks; or its
//! info string names the file (```` ```python file=PATH ````) and a test compares the two. The files themselves are
//! compiled and run elsewhere: doc tests by `cargo test --doc`, the embedding examples by
//! tests/embed.rs, the other-language examples by tests/other_languages.rs.
//!
//! Shell commands and program output (`sh`, `text`, `wit` blocks) are not checked here.

use std::fs;
use std::path::{Path, PathBuf};

/// The languages whose blocks must name the file they come from.
const CODE: &[&str] = &["rust", "toml", "js", "javascript", "python", "py"];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ lives in the workspace")
        .to_owned()
}

/// The Markdown files whose examples are checked.
fn documents() -> Vec<PathBuf> {
    let root = workspace();
    let mut docs = vec![root.join("README.md"), root.join("CONTRIBUTING.md")];
    for entry in fs::read_dir(root.join("docs")).expect("docs/ exists") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            docs.push(path);
        }
    }
    docs.retain(|p| p.exists());
    docs.sort();
    docs
}

/// One fenced block: its language, its text, the `example:` reference before it, its line.
struct Block {
    lang: String,
    text: String,
    source: Option<String>,
    line: usize,
}

fn blocks(markdown: &str) -> Vec<Block> {
    let mut found = Vec::new();
    let mut lines = markdown.lines().enumerate();
    let mut last_marker: Option<String> = None;
    while let Some((n, line)) = lines.next() {
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix("<!-- example:") {
            last_marker = Some(rest.trim_end_matches("-->").trim().to_owned());
            continue;
        }
        if let Some(lang) = trimmed.strip_prefix("```") {
            let indent = line.len() - line.trim_start().len();
            let mut text = String::new();
            for (_, inner) in lines.by_ref() {
                if inner.trim() == "```" {
                    break;
                }
                text.push_str(inner.get(indent..).unwrap_or(inner.trim_start()));
                text.push('\n');
            }
            // `python file=PATH`: a block some test compares with that file itself.
            let mut info = lang.split_whitespace();
            let lang = info.next().unwrap_or("").to_owned();
            let marker = info
                .find_map(|w| w.strip_prefix("file="))
                .map(|_| "compared by a test".to_owned());
            found.push(Block {
                lang,
                text,
                source: last_marker.take().or(marker),
                line: n + 1,
            });
            continue;
        }
        if !trimmed.is_empty() {
            last_marker = None;
        }
    }
    found
}

/// The text `reference` (`PATH` or `PATH#NAME`, PATH relative to the workspace) stands for.
fn referenced(reference: &str) -> Result<String, String> {
    let (path, anchor) = match reference.split_once('#') {
        Some((path, anchor)) => (path, Some(anchor)),
        None => (reference, None),
    };
    let file = workspace().join(path);
    let text = fs::read_to_string(&file).map_err(|e| format!("cannot read {path}: {e}"))?;
    let Some(anchor) = anchor else {
        return Ok(text);
    };
    let start = format!("ANCHOR: {anchor}");
    let end = format!("ANCHOR_END: {anchor}");
    let mut region: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.contains(&start))
        .skip(1)
        .take_while(|l| !l.contains(&end))
        .filter(|l| !l.contains("ANCHOR"))
        .collect();
    if region.is_empty() {
        return Err(format!("{path} has no lines between `{start}` and `{end}`"));
    }
    // A doc comment: take its text, leave out rustdoc's hidden lines and the fences.
    let doc_prefix = ["//! ", "/// ", "//!", "///"];
    let in_doc = region
        .iter()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with("//"));
    let mut owned: Vec<String> = region.iter().map(|l| l.to_string()).collect();
    if in_doc {
        owned = region
            .iter()
            .map(|l| {
                let l = l.trim_start();
                doc_prefix
                    .iter()
                    .find_map(|p| l.strip_prefix(p))
                    .unwrap_or(l)
                    .to_owned()
            })
            .filter(|l| !(l == "#" || l.starts_with("# ")))
            .collect();
        if owned.first().is_some_and(|l| l.starts_with("```")) {
            owned.remove(0);
        }
        if owned.last().is_some_and(|l| l.starts_with("```")) {
            owned.pop();
        }
    }
    region = owned.iter().map(String::as_str).collect();
    let indent = region
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    Ok(region
        .iter()
        .map(|l| format!("{}\n", l.get(indent..).unwrap_or("")))
        .collect())
}

/// Whether a test in tests/ names `doc_file` (and so reads it).
fn tests_reading(doc_file: &str) -> bool {
    fs::read_dir(workspace().join("tests"))
        .unwrap()
        .filter_map(|e| fs::read_to_string(e.unwrap().path()).ok())
        .any(|code| code.contains(doc_file))
}

#[test]
fn every_code_example_in_the_docs_is_a_file_the_tests_build() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for doc in documents() {
        let name = doc.strip_prefix(workspace()).unwrap().display().to_string();
        let markdown = fs::read_to_string(&doc).unwrap();
        for block in blocks(&markdown) {
            let is_code = CODE.contains(&block.lang.as_str());
            match (&block.source, is_code) {
                (None, false) => {}
                (None, true) => problems.push(format!(
                    "{name}:{}: a {} example names no file (`<!-- example: PATH#NAME -->` \
                     before it): it would not be compiled or run",
                    block.line, block.lang
                )),
                (Some(reference), _) if reference == "compared by a test" => {
                    let doc_file = doc.file_name().unwrap().to_string_lossy().into_owned();
                    if tests_reading(&doc_file) {
                        checked += 1;
                    } else {
                        problems.push(format!(
                            "{name}:{}: a `file=` block, but no test in tests/ reads {doc_file}",
                            block.line
                        ));
                    }
                }
                (Some(reference), _) if reference.starts_with("built by ") => {
                    // A test of its own extracts this block from the doc and builds it.
                    let test = reference.trim_start_matches("built by ");
                    let doc_file = doc.file_name().unwrap().to_string_lossy().into_owned();
                    match fs::read_to_string(workspace().join(test)) {
                        Ok(code) if code.contains(&doc_file) => checked += 1,
                        Ok(_) => problems.push(format!(
                            "{name}:{}: {test} does not read {doc_file}",
                            block.line
                        )),
                        Err(e) => problems.push(format!("{name}:{}: {test}: {e}", block.line)),
                    }
                }
                (Some(reference), _) => match referenced(reference) {
                    Err(why) => problems.push(format!("{name}:{}: {why}", block.line)),
                    Ok(expected) if expected != block.text => {
                        let differs = block
                            .text
                            .lines()
                            .zip(expected.lines())
                            .position(|(a, b)| a != b)
                            .unwrap_or(block.text.lines().count().min(expected.lines().count()));
                        problems.push(format!(
                            "{name}:{}: the example differs from {reference} at its line {}: \
                             the doc shows {:?}, the file has {:?}",
                            block.line,
                            differs + 1,
                            block.text.lines().nth(differs).unwrap_or("<end>"),
                            expected.lines().nth(differs).unwrap_or("<end>"),
                        ))
                    }
                    Ok(_) => checked += 1,
                },
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(checked > 0, "no example was checked: are the docs there?");
}

#[test]
fn the_checker_catches_an_example_that_drifted() {
    let doc =
        "<!-- example: examples/embed/src/bin/embed-sync.rs -->\n```rust\nfn main() {}\n```\n";
    let block = blocks(doc).pop().unwrap();
    let expected = referenced(block.source.as_deref().unwrap()).unwrap();
    assert_ne!(expected, block.text);
    assert!(referenced("examples/embed/Cargo.toml#no-such-anchor").is_err());
    let cargo = referenced("examples/embed/Cargo.toml#dependencies").unwrap();
    assert!(cargo.starts_with("[dependencies]\n"), "{cargo}");
}

/// Every relative link in README, CONTRIBUTING and docs/ names a file that exists.
#[test]
fn every_link_between_the_docs_leads_somewhere() {
    let mut broken = Vec::new();
    for doc in documents() {
        let markdown = fs::read_to_string(&doc).unwrap();
        let dir = doc.parent().unwrap();
        for (n, line) in markdown.lines().enumerate() {
            let mut rest = line;
            while let Some(at) = rest.find("](") {
                let after = &rest[at + 2..];
                let Some(end) = after.find(')') else { break };
                let target = &after[..end];
                rest = &after[end..];
                if target.contains("://") || target.starts_with('#') {
                    continue;
                }
                let file = target.split('#').next().unwrap();
                if !dir.join(file).exists() {
                    broken.push(format!("{}:{}: {target}", doc.display(), n + 1));
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "links to nothing:\n{}",
        broken.join("\n")
    );
}
