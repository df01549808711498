//! Path globs as restic reads them, for what `ingest` leaves out and what
//! `restore` takes: a glob starting with `/` is matched against the whole
//! path; any other against the path's last components (`*.o` against
//! names, `build/*.o` against a folder and a name anywhere). `*`, `?` and
//! `[...]` stay within one component, `**` spans folders, and a trailing
//! `/` is ignored.

use std::path::Path;

use glob::{MatchOptions, Pattern};

use crate::error::{Error, Result};

/// How globs match: `*`, `?` and `[...]` stay within one path component.
pub(crate) const MATCH: MatchOptions = MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

/// A list of globs; a path matches the list when it matches any of them.
#[derive(Clone, Debug, Default)]
pub struct PathGlobs {
    patterns: Vec<Pattern>,
}

impl PathGlobs {
    /// Whether the list holds no glob.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// How many globs the list holds.
    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    /// Adds a glob; `what` names the option in errors (`exclude pattern`).
    pub fn add(&mut self, glob: &str, what: &'static str) -> Result<()> {
        let body = glob.trim().trim_end_matches('/');
        if body.is_empty() {
            return Err(Error::invalid(what, format!("{glob:?} matches nothing")));
        }
        let anchored = if body.starts_with('/') {
            body.to_string()
        } else {
            format!("/**/{body}")
        };
        let pattern = Pattern::new(&anchored)
            .map_err(|e| Error::invalid(what, format!("{glob:?}: {}", e.msg)))?;
        self.patterns.push(pattern);
        Ok(())
    }

    /// Whether `path` (absolute, or from a snapshot's root) matches.
    pub fn matches(&self, path: &Path) -> bool {
        self.patterns
            .iter()
            .any(|p| p.matches_path_with(path, MATCH))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(globs: &[&str], path: &str) -> bool {
        let mut list = PathGlobs::default();
        for g in globs {
            list.add(g, "pattern").unwrap();
        }
        list.matches(Path::new(path))
    }

    #[test]
    fn globs_match_names_tails_and_anchored_paths() {
        assert!(matches(&["*.o"], "/src/main.o"));
        assert!(matches(&["*.o"], "/main.o"));
        assert!(!matches(&["*.o"], "/src/main.c"));
        // `*` stays within a component.
        assert!(!matches(&["/src/*.o"], "/src/deep/main.o"));
        assert!(matches(&["/src/**/*.o"], "/src/deep/main.o"));
        assert!(matches(&["build/*.o"], "/home/me/build/x.o"));
        assert!(!matches(&["build/*.o"], "/home/me/rebuild/x.o"));
        assert!(matches(&["node_modules/"], "/a/b/node_modules"));
        assert!(matches(&["/home/*/.cache"], "/home/me/.cache"));
        assert!(!matches(&["/home/*/.cache"], "/srv/home/me/.cache"));
        assert!(matches(&[".git"], "/x/.git"));
        assert!(matches(&["nothing", "*.c"], "/a.c"));
        assert!(!matches(&[], "/a.c"));
    }

    #[test]
    fn bad_globs_are_errors_naming_the_option() {
        let mut list = PathGlobs::default();
        let e = list.add("a/[", "include pattern").unwrap_err().to_string();
        assert_eq!(e, "invalid include pattern: \"a/[\": invalid range pattern");
        assert!(list.add("  ", "include pattern").is_err());
        assert!(list.is_empty());
    }
}
