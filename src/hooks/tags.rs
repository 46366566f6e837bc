//! The custom-scalars layout of a run: one category per hook, one chart per
//! metric whose lines are the layers (`^sink/rate/layer_\d+$`), built from the
//! tags an evaluation actually wrote to TensorBoard, so it never names a tag
//! that is not there and needs no update when a hook gains a metric.

use crate::hooks::hook::HookOutput;
use crate::log::{Category, Chart, Layout, TagFilter};

/// Training scalars logged outside the hooks (`runner.rs`) besides the losses,
/// one chart each after the chart of training and held-out loss.
pub const TRAIN_TAGS: [&str; 3] = ["train/lr", "train/grad_norm", "train/tokens_per_sec"];

/// Hooks whose category is open when the page loads; the rest start closed so
/// the page opens on the sink curves rather than a hundred charts.
const OPEN_CATEGORIES: [&str; 2] = ["train", "sinks"];

/// The layout for the scalars of `out` that `filter` lets through, preceded by
/// a `train` category (training and held-out loss in one chart, then
/// [`TRAIN_TAGS`]) when `training`.
pub fn layout(out: &HookOutput, filter: TagFilter, training: bool) -> Layout {
    let mut categories = Vec::new();
    if training {
        let mut train = Category::of_series("train", false, &TRAIN_TAGS);
        train.chart.insert(
            0,
            Chart::multiline(
                "loss (train, held-out)",
                vec!["^train/loss$".into(), "^train/heldout_loss$".into()],
            ),
        );
        categories.push(train);
    }
    let mut start = 0;
    for &(hook, end) in &out.sections {
        let tags: Vec<&str> = out.scalars[start..end]
            .iter()
            .map(|(t, _)| t.as_str())
            .filter(|t| filter.keeps(t))
            .collect();
        start = end;
        if tags.is_empty() {
            continue;
        }
        let closed = !OPEN_CATEGORIES.contains(&hook);
        categories.push(Category::of_series(hook, closed, &tags));
    }
    Layout::new(categories)
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
            [("train", false, 4), ("sinks", false, 2), ("graph", true, 1)]
        );
        assert_eq!(l.category[0].chart[0].patterns().len(), 2);

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
