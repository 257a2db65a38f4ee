//! Checks that a crate's metrics table (`leasehold_web::metrics::Description`s) names every
//! metric its source records with `counter!`, `gauge!` or `histogram!`, and nothing else.

use std::collections::BTreeSet;
use std::path::Path;

/// Names of the metrics the `.rs` files under `dir` record (the first argument of each
/// `counter!`, `gauge!` and `histogram!` when it is a string literal).
pub fn names_in_source(dir: &Path) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                names.extend(names_in_text(&std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    names
}

fn names_in_text(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for macro_call in ["counter!(", "gauge!(", "histogram!("] {
        for (at, _) in text.match_indices(macro_call) {
            let rest = text[at + macro_call.len()..].trim_start();
            if let Some(name) = rest.strip_prefix('"').and_then(|r| r.split('"').next()) {
                names.push(name.to_owned());
            }
        }
    }
    names
}

/// Fails naming every metric recorded under `crate_dir/src` without a description, and
/// every description of a metric the source does not record. `described`: the names in the
/// crate's table of `leasehold_web::metrics::Description`s.
pub fn assert_described<'a>(crate_dir: &str, described: impl IntoIterator<Item = &'a str>) {
    let src = Path::new(crate_dir).join("src");
    let used = names_in_source(&src);
    assert!(!used.is_empty(), "no metric found under {}", src.display());
    let listed: Vec<String> = described.into_iter().map(str::to_owned).collect();
    let described: BTreeSet<String> = listed.iter().cloned().collect();
    assert_eq!(described.len(), listed.len(), "a metric is described twice");
    let missing: Vec<_> = used.difference(&described).collect();
    let unused: Vec<_> = described.difference(&used).collect();
    assert!(
        missing.is_empty() && unused.is_empty(),
        "recorded without a description (add it to the crate's metrics table): {missing:?}; \
         described but never recorded: {unused:?}"
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_read_from_every_kind_of_macro_call() {
        let text = r#"
            metrics::counter!("a_total", "l" => v).increment(1);
            ::metrics::gauge!(
                "b"
            ).set(1.0);
            metrics::histogram!("c_seconds").record(0.1);
            metrics::describe_counter!(d.name, d.help);
        "#;
        let mut names = super::names_in_text(text);
        names.sort();
        assert_eq!(names, ["a_total", "b", "c_seconds"]);
    }
}
