//! docs/json.md and the types `sipwall` prints its `--json` documents from
//! (`sipwall::ops::json`) say the same thing. Every JSON example of the
//! page is read into its command's type, which refuses unknown keys, and
//! written back: the result must equal the example, so a key the type has
//! and the page does not show fails too (each example is complete). Every
//! subcommand with `--json` must have its section, and every section its
//! examples. Needs no root.
use std::collections::BTreeMap;

use clap::CommandFactory as _;
use serde_json::Value;
use sipwall::{cli::args::Cli, ops::json};

/// Reads a documented example into `T` and writes it back.
fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(
    doc: &Value,
) -> Result<Value, String> {
    let typed: T = serde_json::from_value(doc.clone())
        .map_err(|e| format!("does not read as {}: {e}", std::any::type_name::<T>()))?;
    Ok(serde_json::to_value(&typed).unwrap())
}

type RoundTrip = fn(&Value) -> Result<Value, String>;

/// The type of each section's documents, by the section's heading.
fn sections() -> BTreeMap<&'static str, RoundTrip> {
    BTreeMap::from([
        ("`stats --json`", round_trip::<json::Stats> as RoundTrip),
        ("`check --json`", round_trip::<json::Check>),
        ("`top --json`", round_trip::<json::Top>),
        ("`ban list --json`", round_trip::<json::BanList>),
        ("`allow list --json`", round_trip::<json::AllowList>),
        ("`status --json`", round_trip::<json::Status>),
        ("`doctor --json`", round_trip::<json::Doctor>),
        ("`explain --json`", round_trip::<json::Explain>),
        ("`pinhole list --json`", round_trip::<Vec<json::Pinhole>>),
    ])
}

/// The page's JSON examples, by the heading (`## `) they stand under.
fn examples(page: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let (mut heading, mut block): (String, Option<String>) = (String::new(), None);
    for line in page.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            heading = h.trim().to_string();
        } else if line.trim() == "```json" {
            block = Some(String::new());
        } else if line.trim() == "```" {
            if let Some(b) = block.take() {
                out.entry(heading.clone()).or_default().push(b);
            }
        } else if let Some(b) = &mut block {
            b.push_str(line);
            b.push('\n');
        }
    }
    out
}

/// The page, built into the test (it runs as `nobody` too).
fn page() -> &'static str {
    include_str!("../../docs/json.md")
}

#[test]
fn every_example_is_exactly_its_commands_type() {
    let sections = sections();
    for (heading, blocks) in examples(page()) {
        let check = sections.get(heading.as_str()).unwrap_or_else(|| {
            panic!("docs/json.md: section {heading} has JSON examples but no type in this test")
        });
        for block in blocks {
            let doc: Value = serde_json::from_str(&block)
                .unwrap_or_else(|e| panic!("docs/json.md, {heading}: not JSON ({e}):\n{block}"));
            let back =
                check(&doc).unwrap_or_else(|e| panic!("docs/json.md, {heading}: {e}:\n{block}"));
            assert_eq!(
                back, doc,
                "docs/json.md, {heading}: the type writes the example back differently (a key the page lacks, or a different value)"
            );
        }
    }
}

#[test]
fn every_json_flag_has_its_section_with_examples() {
    let documented = examples(page());
    let sections = sections();
    let mut commands = Vec::new();
    fn walk(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        for sub in cmd.get_subcommands() {
            let path = format!(
                "{path}{}{}",
                if path.is_empty() { "" } else { " " },
                sub.get_name()
            );
            if sub.get_arguments().any(|a| a.get_long() == Some("json")) {
                out.push(path.clone());
            }
            walk(sub, &path, out);
        }
    }
    walk(&Cli::command(), "", &mut commands);
    assert!(commands.len() >= 7, "found only {commands:?}");
    for command in &commands {
        let heading = format!("`{command} --json`");
        assert!(
            sections.contains_key(heading.as_str()),
            "`sipwall {command}` has --json but this test knows no type for it"
        );
        assert!(
            documented.get(&heading).is_some_and(|b| !b.is_empty()),
            "docs/json.md has no JSON example under ## {heading}"
        );
    }
    for heading in sections.keys() {
        assert!(
            commands.iter().any(|c| format!("`{c} --json`") == *heading),
            "{heading}: no subcommand has this --json"
        );
    }
}

#[test]
fn a_counter_missing_from_a_document_is_refused() {
    // The counters maps are checked name by name (not by serde's derive).
    let doc: Value = serde_json::from_str(&examples(page())["`stats --json`"][0]).unwrap();
    assert!(serde_json::from_value::<json::Stats>(doc.clone()).is_ok());
    let mut missing = doc.clone();
    missing["interfaces"][0]["counters"]
        .as_object_mut()
        .unwrap()
        .remove("denied");
    assert!(serde_json::from_value::<json::Stats>(missing).is_err());
    let mut unknown = doc;
    unknown["interfaces"][0]["egress"]["counters"]["out_no_such_reason"] =
        serde_json::json!({"packets": 0, "bytes": 0});
    assert!(serde_json::from_value::<json::Stats>(unknown).is_err());
}
