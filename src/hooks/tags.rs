//! The custom-scalars layout of a run: one category per hook, one chart per
//! metric whose lines are the layers (`^sink/rate/layer_\d+$`), built from the
//! tags an evaluation actually wrote to TensorBoard, so it never names a tag
//! that is not there and needs no update when a hook gains a metric.

use std::collections::HashSet;

use crate::analysis::names;
use crate::hooks::hook::HookOutput;
use crate::log::{Category, Chart, Layout, TagFilter};

/// Training scalars logged outside the hooks (`runner.rs`) besides the losses,
/// one chart each after the chart of training and held-out loss.
pub const TRAIN_TAGS: [&str; 3] = [
    names::TRAIN_LR,
    names::TRAIN_GRAD_NORM,
    names::TRAIN_TOKENS_PER_SEC,
];

/// Hooks whose category is open when the page loads (and `train`); the rest
/// start closed, so the page opens on the sink curves, not a hundred charts.
const OPEN_HOOKS: [&str; 1] = ["sinks"];

/// The layout of a run, grown with each evaluation: a tag that first appears
/// later (the Fisher trace has no value before the first step) still gets its
/// chart.
#[derive(Debug, Default)]
pub struct LayoutBuilder {
    /// Hook name → the TensorBoard tags it logged, in first-seen order.
    hooks: Vec<(&'static str, Vec<String>)>,
    seen: HashSet<String>,
}

impl LayoutBuilder {
    /// Adds the scalars of `out` that `filter` lets through; true if any is new.
    pub fn add(&mut self, out: &HookOutput, filter: TagFilter) -> bool {
        let mut grew = false;
        let mut start = 0;
        for &(hook, end) in &out.sections {
            for (tag, _) in &out.scalars[start..end] {
                if !filter.keeps(tag) || !self.seen.insert(tag.clone()) {
                    continue;
                }
                let i = match self.hooks.iter().position(|(h, _)| *h == hook) {
                    Some(i) => i,
                    None => {
                        self.hooks.push((hook, Vec::new()));
                        self.hooks.len() - 1
                    }
                };
                self.hooks[i].1.push(tag.clone());
                grew = true;
            }
            start = end;
        }
        grew
    }

    /// One category per hook in the hooks' order, then, when `training`, a
    /// `train` category (training and held-out loss in one chart, then
    /// [`TRAIN_TAGS`]). The sink curves come first because they are what the
    /// page is opened for.
    pub fn layout(&self, training: bool) -> Layout {
        let mut categories: Vec<Category> = self
            .hooks
            .iter()
            .map(|(hook, tags)| Category::of_series(hook, !OPEN_HOOKS.contains(hook), tags))
            .collect();
        if training {
            let mut train = Category::of_series(names::family::TRAIN, false, &TRAIN_TAGS);
            let exactly = |tag: &str| format!("^{tag}$");
            train.chart.insert(
                0,
                Chart::multiline(
                    "loss (train, held-out)",
                    vec![
                        exactly(names::TRAIN_LOSS),
                        exactly(names::TRAIN_HELDOUT_LOSS),
                    ],
                ),
            );
            categories.push(train);
        }
        Layout::new(categories)
    }
}

/// The layout of one evaluation's output (see [`LayoutBuilder`]).
pub fn layout(out: &HookOutput, filter: TagFilter, training: bool) -> Layout {
    let mut b = LayoutBuilder::default();
    b.add(out, filter);
    b.layout(training)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_category_per_hook_with_what_tensorboard_gets() {
        let mut out = HookOutput::default();
        for tag in ["sink/rate", "sink/rate/layer_0", "sink/rate/layer_0/std"] {
            out.scalars.push((tag.into(), 0.5));
        }
        out.sections.push(("sinks", 3));
        out.sections.push(("heatmaps", 3)); // images only: no category
        out.scalars.push(("graph/fiedler_0.1/layer_1".into(), 1.0));
        out.sections.push(("graph", 4));

        let l = layout(&out, TagFilter::default(), true);
        let titles: Vec<(&str, bool, usize)> = l
            .category
            .iter()
            .map(|c| (c.title.as_str(), c.closed, c.chart.len()))
            .collect();
        assert_eq!(
            titles,
            [("sinks", false, 2), ("graph", true, 1), ("train", false, 4)]
        );
        assert_eq!(l.category[2].chart[0].patterns().len(), 2);

        // A tag first seen later grows the layout; one seen before does not.
        let mut b = LayoutBuilder::default();
        assert!(b.add(&out, TagFilter::default()));
        assert!(!b.add(&out, TagFilter::default()));
        let mut later = HookOutput::default();
        later.scalars.push(("fisher/layer_0".into(), 1.0));
        later.sections.push(("fisher", 1));
        assert!(b.add(&later, TagFilter::default()));
        let titles: Vec<String> = b
            .layout(false)
            .category
            .into_iter()
            .map(|c| c.title)
            .collect();
        assert_eq!(titles, ["sinks", "graph", "fisher"]);

        let with_std = layout(
            &out,
            TagFilter {
                std: true,
                per_head: false,
            },
            false,
        );
        assert_eq!(with_std.category[0].title, "sinks");
        assert_eq!(
            with_std.category[0].chart[2].patterns(),
            [r"^sink/rate/layer_\d+/std$"]
        );
    }
}
