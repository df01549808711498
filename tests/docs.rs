//! The documentation keeps up with the binary: `docs/commands.md` names
//! every command and every flag that `--help` shows, and every link in
//! the README leads somewhere.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_dedup"))
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The subcommands a help text lists (its `Commands:` section).
fn commands(text: &str) -> Vec<String> {
    text.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

/// The long flags a help text lists (its `Options:` section).
fn flags(text: &str) -> BTreeSet<String> {
    text.lines()
        .skip_while(|l| !l.starts_with("Options:"))
        .filter_map(|l| {
            let l = l.trim_start();
            let l = l
                .strip_prefix('-')
                .filter(|r| r.len() > 2 && r.as_bytes()[1] == b',')
                .map_or(l, |r| r[2..].trim_start());
            let flag = l.strip_prefix("--")?;
            let name: String = flag
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            (!name.is_empty() && name != "help" && name != "version").then(|| format!("--{name}"))
        })
        .collect()
}

#[test]
fn the_command_reference_names_every_command_and_flag_that_help_shows() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let reference = std::fs::read_to_string(root.join("docs/commands.md")).unwrap();
    let top = help(&[]);
    let mut missing = Vec::new();
    let mut seen = 0;
    for flag in flags(&top) {
        if !reference.contains(&flag) {
            missing.push(format!("dedup {flag}"));
        }
    }
    for command in commands(&top) {
        seen += 1;
        if !reference.contains(&format!("\n{command} ")) {
            missing.push(format!("the command {command}"));
        }
        let text = help(&[&command]);
        let mut texts = vec![(command.clone(), text.clone())];
        for sub in commands(&text) {
            if !reference.contains(&sub) {
                missing.push(format!("{command} {sub}"));
            }
            texts.push((format!("{command} {sub}"), help(&[&command, &sub])));
        }
        for (name, text) in texts {
            for flag in flags(&text) {
                if !reference.contains(&flag) {
                    missing.push(format!("{name} {flag}"));
                }
            }
        }
    }
    assert!(seen > 15, "only {seen} commands in --help:\n{top}");
    let init = flags(&help(&["init"]));
    assert!(
        init.contains("--encryption") && init.contains("--copy-chunker-params-from"),
        "{init:?}"
    );
    assert!(flags(&top).contains("--repo"), "{top}");
    assert!(missing.is_empty(), "docs/commands.md lacks: {missing:#?}");
}

#[test]
fn every_link_in_the_readme_leads_to_a_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut links = 0;
    for part in readme.split("](").skip(1) {
        let target = part.split(')').next().unwrap();
        let path = target.split('#').next().unwrap();
        if path.is_empty() || path.starts_with("http") {
            continue;
        }
        links += 1;
        assert!(
            root.join(path).exists(),
            "README links to {target}, which is not there"
        );
    }
    assert!(links >= 10, "{links} links");
    assert!(
        readme.lines().count() <= 250,
        "the README is {} lines",
        readme.lines().count()
    );
}
