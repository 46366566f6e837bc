//! The docs name every hook of the registry, the tags each logs, and every metric
//! of `analysis::names`, checked from those definitions (as ripgrep builds its docs
//! from its flag definitions): a hook or a tag added or renamed without its
//! documentation fails here.

use sinkscope::analysis::names::{family, METRICS};
use sinkscope::hooks::registry;

fn doc(name: &str) -> String {
    let path = crate::common::root().join("docs").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn hooks_md_has_a_row_for_every_hook_naming_what_it_logs() {
    let md = doc("HOOKS.md");
    for hook in registry() {
        let start = format!("| `{}` |", hook.name());
        let row = md
            .lines()
            .find(|l| l.starts_with(&start))
            .unwrap_or_else(|| {
                panic!(
                    "docs/HOOKS.md has no row for hook `{}` ({})",
                    hook.name(),
                    hook.about()
                )
            });
        assert!(!hook.tags().is_empty(), "{} logs nothing", hook.name());
        for tag in hook.tags() {
            assert!(
                row.contains(&format!("`{tag}/")),
                "docs/HOOKS.md: the row of `{}` does not name `{tag}/`",
                hook.name()
            );
        }
    }
}

#[test]
fn the_docs_name_every_family_and_metric() {
    let docs = doc("METRICS.md") + &doc("HOOKS.md");
    for f in family::ALL {
        assert!(
            docs.contains(&format!("`{f}/")),
            "no doc names the family `{f}/`"
        );
    }
    for m in METRICS {
        assert!(
            docs.contains(&format!("`{m}")),
            "neither docs/METRICS.md nor docs/HOOKS.md names `{m}`"
        );
    }
}

#[test]
fn the_hooks_listing_shows_every_hook_with_its_line_and_tags() {
    let listing = sinkscope::cli::hooks::listing();
    for hook in registry() {
        assert!(
            listing
                .lines()
                .any(|l| l.starts_with(hook.name()) && l.ends_with(hook.about())),
            "{}: {}\nnot in\n{listing}",
            hook.name(),
            hook.about()
        );
        for tag in hook.tags() {
            assert!(listing.contains(&format!("{tag}/…")), "{tag}");
        }
    }
}
