//! The configuration snippets of the README and the guide (`docs/`) are
//! the files the tests run, and every rules file they show loads.
//!
//! - A fenced block right after a `<!-- fixture: PATH -->` line must be
//!   the file `PATH` exactly (the nginx and Traefik configurations that
//!   tests/nginx.rs and tests/traefik.rs run, the rules file of the
//!   gateway tests).
//! - Every `toml` block holding a `[[rule]]` must load as a rules file
//!   (`Rules::parse_toml`), as `keygate serve --rules` would load it.
//! - Every `json` block must be JSON.
//!
//! The Rust blocks are doc tests (src/lib.rs includes each page).

use std::path::{Path, PathBuf};

use keygate::gateway::Rules;

/// A fenced block: the file and line it starts on, its info string, the
/// fixture named just before it, its text.
struct Block {
    at: String,
    lang: String,
    fixture: Option<String>,
    text: String,
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every Markdown file of docs/.
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![root().join("README.md")];
    for entry in std::fs::read_dir(root().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.push(path);
        }
    }
    pages.sort();
    pages
}

fn blocks(page: &Path) -> Vec<Block> {
    let text = std::fs::read_to_string(page).unwrap();
    let name = page.strip_prefix(root()).unwrap().display().to_string();
    let mut blocks = Vec::new();
    let mut fixture = None;
    let mut open: Option<Block> = None;
    for (n, line) in text.lines().enumerate() {
        if let Some(block) = open.as_mut() {
            if line.trim_start().starts_with("```") {
                blocks.push(open.take().unwrap());
            } else {
                block.text.push_str(line);
                block.text.push('\n');
            }
        } else if let Some(info) = line.trim_start().strip_prefix("```") {
            open = Some(Block {
                at: format!("{name}:{}", n + 1),
                lang: info.trim().to_owned(),
                fixture: fixture.take(),
                text: String::new(),
            });
        } else if let Some(path) = line
            .trim()
            .strip_prefix("<!-- fixture:")
            .and_then(|rest| rest.strip_suffix("-->"))
        {
            fixture = Some(path.trim().to_owned());
        } else if !line.trim().is_empty() {
            fixture = None;
        }
    }
    assert!(open.is_none(), "{name}: a fenced block is not closed");
    blocks
}

fn every_block() -> Vec<Block> {
    pages().iter().flat_map(|page| blocks(page)).collect()
}

#[test]
fn blocks_marked_as_fixtures_are_the_files_the_tests_run() {
    let marked: Vec<Block> = every_block()
        .into_iter()
        .filter(|b| b.fixture.is_some())
        .collect();
    // The nginx, Traefik and rules files of docs/gateway-*.md at least.
    assert!(marked.len() >= 3, "{} fixture blocks", marked.len());
    for block in &marked {
        let path = block.fixture.as_deref().unwrap();
        let file = std::fs::read_to_string(root().join(path))
            .unwrap_or_else(|e| panic!("{}: cannot read {path}: {e}", block.at));
        assert!(
            block.text == file,
            "{}: the block is not {path} as the tests run it; copy the file in",
            block.at
        );
    }
}

#[test]
fn every_rules_file_shown_loads() {
    let rules: Vec<Block> = every_block()
        .into_iter()
        .filter(|b| b.lang == "toml" && b.text.contains("[[rule]]"))
        .collect();
    assert!(rules.len() >= 3, "{} rules blocks", rules.len());
    for block in &rules {
        // A rules file names each rule's path, so a block that loads is
        // one that `keygate serve --rules` would start with.
        let loaded = Rules::parse_toml(&block.text);
        assert!(loaded.is_ok(), "{}: {}", block.at, loaded.unwrap_err());
    }
}

#[test]
fn every_json_block_is_json() {
    let json: Vec<Block> = every_block()
        .into_iter()
        .filter(|b| b.lang == "json")
        .collect();
    assert!(!json.is_empty());
    for block in &json {
        let parsed = serde_json::from_str::<serde_json::Value>(&block.text);
        assert!(parsed.is_ok(), "{}: {}", block.at, parsed.unwrap_err());
    }
}
