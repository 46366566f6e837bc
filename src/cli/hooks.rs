//! `sinkscope hooks`: the hooks a recipe can name in `[hooks] run`, what each logs
//! and what it needs captured, from the registry itself (so it cannot go stale).

use clap::Args;

use crate::hooks::{registry, Needs};

/// Arguments of `sinkscope hooks` (none).
#[derive(Args, Debug)]
pub struct HooksArgs {}

/// What a hook needs captured besides the attention maps, in words.
fn needs(n: Needs) -> String {
    let words: Vec<&str> = [
        (n.residuals, "residual stream"),
        (n.weights, "2-D weights"),
        (n.gradients, "gradients"),
    ]
    .into_iter()
    .filter_map(|(on, word)| on.then_some(word))
    .collect();
    if words.is_empty() {
        "attention".into()
    } else {
        words.join(", ")
    }
}

/// Two lines per hook: its name and what it measures, then the tags it logs and
/// what it reads.
pub fn listing() -> String {
    let hooks = registry();
    let width = hooks.iter().map(|h| h.name().len()).max().unwrap_or(0);
    let mut s = String::new();
    for h in &hooks {
        let tags: Vec<String> = h.tags().iter().map(|t| format!("{t}/…")).collect();
        s.push_str(&format!("{:width$}  {}\n", h.name(), h.about()));
        s.push_str(&format!(
            "{:width$}  logs {}; reads {}\n",
            "",
            tags.join(", "),
            needs(h.needs())
        ));
    }
    s
}

/// Prints [`listing`].
pub fn run(_args: &HooksArgs) -> anyhow::Result<()> {
    print!("{}", listing());
    Ok(())
}
