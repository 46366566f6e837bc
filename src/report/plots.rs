//! The report's figures as SVG text, drawn with plotters' SVG backend.
//!
//! SVG keeps text as `<text>`, so no font is needed to draw and the report can inline
//! every figure into one HTML file. Each figure has a title, axis labels and a legend
//! strip under the plot (one strip shared by side-by-side panels, so the same run keeps
//! the same colour and name everywhere). The attention heatmap is the one raster: a
//! T × T grid of rectangles would weigh hundreds of kilobytes, so the cells go in as a
//! PNG inside the SVG, placed over the chart's plotting area.

use std::ops::Range;

use base64::Engine as _;
use plotters::chart::MeshStyle;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::analysis::{Diagrams, WeightSpectrum};
use crate::error::{Error, Result};
use crate::log::{heatmap, scale_to_fit, viridis};

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Drawn<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

const FONT: &str = "sans-serif";
const GREY: RGBColor = RGBColor(120, 120, 120);
const LIGHT: RGBColor = RGBColor(225, 225, 225);
/// Matplotlib's "tab10": distinct, colour-blind-friendlier than primaries.
const TAB10: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The colour of the `i`-th run (or homology dimension), the same in every figure.
pub fn color(i: usize) -> RGBColor {
    TAB10[i % TAB10.len()]
}

/// How a legend entry is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mark {
    /// A line with a dot: a series with markers.
    LineDot,
    /// A plain line.
    Line,
    /// A dashed line: a reference level.
    Dashed,
    /// A dot: scattered points.
    Dot,
    /// A filled square: bars.
    Swatch,
    /// A strip of the viridis scale: a colour map.
    Gradient,
}

struct LegendEntry {
    label: String,
    color: RGBColor,
    mark: Mark,
}

fn entry(label: impl Into<String>, color: RGBColor, mark: Mark) -> LegendEntry {
    LegendEntry {
        label: label.into(),
        color,
        mark,
    }
}

/// Draws into a `size` SVG, returning its text.
fn render(size: (u32, u32), what: &str, draw: impl FnOnce(&Area<'_>) -> Drawn) -> Result<String> {
    let fail = |e: &dyn std::fmt::Display| Error::Other(format!("cannot draw {what}: {e}"));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        draw(&root).map_err(|e| fail(&e))?;
        root.present().map_err(|e| fail(&e))?;
    }
    Ok(svg)
}

/// The mesh every chart shares: no light grid, readable labels whatever the panel size
/// (plotters scales label fonts with the area otherwise).
fn mesh<'a, 'c, X, Y>(
    chart: &'c mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    x_desc: &str,
    y_desc: &str,
) -> MeshStyle<'a, 'c, X, Y, SVGBackend<'a>>
where
    X: Ranged + ValueFormatter<X::ValueType>,
    Y: Ranged + ValueFormatter<Y::ValueType>,
{
    let mut m = chart.configure_mesh();
    m.max_light_lines(0)
        .bold_line_style(LIGHT)
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .x_desc(x_desc)
        .y_desc(y_desc);
    m
}

/// Width the SVG text of `label` takes at `size` px (plotters' own estimate for SVG).
fn text_width(label: &str, size: f64) -> i32 {
    (size / 1.24 / 1.24 * 0.7 * label.chars().count() as f64).round() as i32
}

const LEGEND_FONT: f64 = 14.0;
const LEGEND_ROW: i32 = 22;
const LEGEND_MARK: i32 = 26;

/// Entries laid out in centred rows that fit `width`: (row, x offset) per entry.
fn legend_layout(entries: &[LegendEntry], width: i32) -> (Vec<(usize, i32)>, Vec<i32>) {
    let widths: Vec<i32> = entries
        .iter()
        .map(|e| LEGEND_MARK + 6 + text_width(&e.label, LEGEND_FONT) + 22)
        .collect();
    let mut places = Vec::with_capacity(entries.len());
    let mut row_widths = vec![0];
    for w in widths {
        let row = row_widths.len() - 1;
        if row_widths[row] > 0 && row_widths[row] + w > width - 20 {
            row_widths.push(0);
        }
        let row = row_widths.len() - 1;
        places.push((row, row_widths[row]));
        row_widths[row] += w;
    }
    (places, row_widths)
}

/// Height of the legend strip for `entries` in a figure `width` wide.
fn legend_height(entries: &[LegendEntry], width: u32) -> u32 {
    let (_, rows) = legend_layout(entries, width as i32);
    (rows.len() as i32 * LEGEND_ROW + 12) as u32
}

/// Draws the legend strip: centred rows of mark + label.
fn draw_legend(area: &Area<'_>, entries: &[LegendEntry]) -> Drawn {
    let (width, _) = area.dim_in_pixel();
    let (places, rows) = legend_layout(entries, width as i32);
    let style = (FONT, LEGEND_FONT)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    for (e, &(row, offset)) in entries.iter().zip(&places) {
        let x = (width as i32 - rows[row]) / 2 + offset;
        let y = 6 + row as i32 * LEGEND_ROW + LEGEND_ROW / 2;
        let (a, b) = (x, x + LEGEND_MARK);
        match e.mark {
            Mark::LineDot | Mark::Line => {
                area.draw(&PathElement::new(
                    vec![(a, y), (b, y)],
                    e.color.stroke_width(2),
                ))?;
                if e.mark == Mark::LineDot {
                    area.draw(&Circle::new(((a + b) / 2, y), 4, e.color.filled()))?;
                }
            }
            Mark::Dashed => {
                for s in (a..b).step_by(8) {
                    let seg = vec![(s, y), ((s + 5).min(b), y)];
                    area.draw(&PathElement::new(seg, e.color.stroke_width(2)))?;
                }
            }
            Mark::Dot => area.draw(&Circle::new(((a + b) / 2, y), 5, e.color.filled()))?,
            Mark::Swatch => area.draw(&Rectangle::new(
                [(a + 5, y - 7), (b - 5, y + 7)],
                e.color.filled(),
            ))?,
            Mark::Gradient => {
                for (i, x) in (a..b).enumerate() {
                    let [r, g, bl] = viridis(i as f32 / (b - a - 1) as f32);
                    let colour = RGBColor(r, g, bl).filled();
                    area.draw(&Rectangle::new([(x, y - 7), (x + 1, y + 7)], colour))?;
                }
            }
        }
        area.draw(&Text::new(e.label.clone(), (b + 6, y), style.clone()))?;
    }
    Ok(())
}

/// Title on top, legend strip at the bottom; returns the area between.
fn frame<'a>(root: &Area<'a>, title: &str, legend: &[LegendEntry]) -> Drawn<Area<'a>> {
    let body = root.titled(title, (FONT, 20).into_font().style(FontStyle::Bold))?;
    let (_, h) = body.dim_in_pixel();
    let (w, _) = root.dim_in_pixel();
    let lh = legend_height(legend, w);
    let (plot, strip) = body.split_vertically(h.saturating_sub(lh));
    draw_legend(&strip, legend)?;
    Ok(plot)
}

/// A compact label for a value on a bar or in a legend.
pub fn short(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 0.01 {
        let text = if a >= 10.0 {
            format!("{v:.1}")
        } else {
            format!("{v:.3}")
        };
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.1e}")
    }
}

/// Log-spaced evaluations put step 0 at log10(0 + 1) = 0: the axis is log10(step + 1)
/// with ticks labelled by the step itself at 0, 1, 2, 5, 10, 20, 50, …
fn step_axis(max_step: usize) -> (Range<f64>, Vec<f64>) {
    let pos = |s: f64| (s + 1.0).log10();
    let end = pos(max_step as f64).max(pos(2.0));
    let mut keys = vec![0.0];
    let mut decade = 1.0;
    while decade <= max_step.max(1) as f64 {
        for m in [1.0, 2.0, 5.0] {
            if m * decade <= max_step.max(2) as f64 {
                keys.push(pos(m * decade));
            }
        }
        decade *= 10.0;
    }
    (-0.03 * end..end * 1.03, keys)
}

fn step_of(x: f64) -> String {
    format!("{}", (10f64.powf(x) - 1.0).round().max(0.0) as u64)
}

/// A linear axis with ticks exactly at `ticks` (plotters' own `with_key_points` cannot
/// take a label formatter on an `f64` axis).
struct TickAxis {
    range: Range<f64>,
    ticks: Vec<f64>,
}

fn ticked(range: Range<f64>, ticks: Vec<f64>) -> TickAxis {
    TickAxis { range, ticks }
}

impl Ranged for TickAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let span = self.range.end - self.range.start;
        if span == 0.0 {
            return (limit.0 + limit.1) / 2;
        }
        let u = (v - self.range.start) / span;
        limit.0 + (f64::from(limit.1 - limit.0) * u).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.range.clone()
    }
}

/// One run's sink curves over training.
#[derive(Clone, Debug)]
pub struct SinkCurves {
    /// Run name (legend).
    pub name: String,
    /// (step, sink rate in %).
    pub sink_rate: Vec<(usize, f64)>,
    /// (step, first-token mass).
    pub first_token_mass: Vec<(usize, f64)>,
}

/// Sink rate and first-token mass against step, every run on the same two panels,
/// with the uniform-attention first-token mass as a dashed reference when known.
pub fn sink_curves(title: &str, runs: &[SinkCurves], baseline: Option<f64>) -> Result<String> {
    let mut legend: Vec<LegendEntry> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| entry(&r.name, color(i), Mark::LineDot))
        .collect();
    if let Some(b) = baseline {
        legend.push(entry(
            format!("uniform attention (α₀ = {})", short(b)),
            GREY,
            Mark::Dashed,
        ));
    }
    let width = 1000;
    let height = 430 + legend_height(&legend, width);
    render((width, height), title, |root| {
        let body = frame(root, title, &legend)?;
        let panels = body.split_evenly((1, 2));
        let max_step = runs
            .iter()
            .flat_map(|r| r.sink_rate.iter().chain(&r.first_token_mass))
            .map(|(s, _)| *s)
            .max()
            .unwrap_or(1);
        let rates: Vec<&[(usize, f64)]> = runs.iter().map(|r| r.sink_rate.as_slice()).collect();
        let masses: Vec<&[(usize, f64)]> =
            runs.iter().map(|r| r.first_token_mass.as_slice()).collect();
        step_panel(
            &panels[0],
            "sink rate (mean over layers)",
            "heads with α₀ > ε (%)",
            0.0..100.0,
            &rates,
            None,
            max_step,
        )?;
        let top = masses
            .iter()
            .flat_map(|m| m.iter().map(|(_, v)| *v))
            .chain(baseline)
            .fold(0.0, f64::max);
        step_panel(
            &panels[1],
            "first-token mass (mean over layers)",
            "α₀ (mean over heads)",
            0.0..(top * 1.15).clamp(0.05, 1.0),
            &masses,
            baseline,
            max_step,
        )
    })
}

fn step_panel(
    area: &Area<'_>,
    caption: &str,
    y_desc: &str,
    y: Range<f64>,
    series: &[&[(usize, f64)]],
    reference: Option<f64>,
    max_step: usize,
) -> Drawn {
    let (x, keys) = step_axis(max_step);
    let pos = |s: usize| (s as f64 + 1.0).log10();
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 16))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(62)
        .build_cartesian_2d(ticked(x.clone(), keys), y)?;
    mesh(&mut chart, "step (log scale; step 0 at the left)", y_desc)
        .x_label_formatter(&|v| step_of(*v))
        .y_label_formatter(&|v| short(*v))
        .draw()?;
    if let Some(b) = reference {
        chart.draw_series(DashedLineSeries::new(
            vec![(x.start, b), (x.end, b)],
            6,
            4,
            GREY.stroke_width(2),
        ))?;
    }
    for (i, points) in series.iter().enumerate() {
        let c = color(i);
        let xy: Vec<(f64, f64)> = points.iter().map(|&(s, v)| (pos(s), v)).collect();
        chart.draw_series(LineSeries::new(xy.clone(), c.stroke_width(2)))?;
        chart.draw_series(xy.into_iter().map(|p| Circle::new(p, 3, c.filled())))?;
    }
    Ok(())
}

/// One panel of per-layer bars: `values[run][layer]`, None where not measured.
#[derive(Clone, Debug)]
pub struct BarPanel {
    /// Panel caption.
    pub caption: String,
    /// Y-axis label.
    pub y_desc: String,
    /// Values by run, then layer.
    pub values: Vec<Vec<Option<f64>>>,
}

/// Side-by-side panels of per-layer values, one bar per run in each layer's group.
pub fn layer_bars(title: &str, runs: &[String], panels: &[BarPanel]) -> Result<String> {
    let legend: Vec<LegendEntry> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| entry(r, color(i), Mark::Swatch))
        .collect();
    let width = 1000;
    let height = 400 + legend_height(&legend, width);
    render((width, height), title, |root| {
        let body = frame(root, title, &legend)?;
        for (panel, area) in panels
            .iter()
            .zip(body.split_evenly((1, panels.len().max(1))))
        {
            bar_panel(&area, panel)?;
        }
        Ok(())
    })
}

fn bar_panel(area: &Area<'_>, panel: &BarPanel) -> Drawn {
    let layers = panel.values.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let runs = panel.values.len().max(1);
    let max = panel
        .values
        .iter()
        .flatten()
        .flatten()
        .fold(0.0f64, |a, &b| a.max(b));
    let top = if max > 0.0 { max * 1.18 } else { 1.0 };
    let keys: Vec<f64> = (0..layers).map(|l| l as f64).collect();
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.caption, (FONT, 16))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(62)
        .build_cartesian_2d(ticked(-0.5..layers as f64 - 0.5, keys), 0.0..top)?;
    mesh(&mut chart, "layer", &panel.y_desc)
        .x_label_formatter(&|v| format!("{}", v.round() as i64))
        .y_label_formatter(&|v| short(*v))
        .draw()?;
    let w = 0.8 / runs as f64;
    let label_bars = runs * layers <= 16;
    let label_style = (FONT, 12)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Bottom));
    for (r, values) in panel.values.iter().enumerate() {
        for (l, v) in values.iter().enumerate() {
            let Some(v) = *v else { continue };
            let x0 = l as f64 - 0.4 + r as f64 * w;
            let x1 = x0 + w * 0.9;
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x0, 0.0), (x1, v)],
                color(r).filled(),
            )))?;
            if label_bars {
                chart.draw_series(std::iter::once(Text::new(
                    short(v),
                    ((x0 + x1) / 2.0, v + top * 0.01),
                    label_style.clone(),
                )))?;
            }
        }
    }
    if panel.values.iter().flatten().all(Option::is_none) {
        chart.draw_series(std::iter::once(Text::new(
            "not measured",
            ((layers as f64 - 1.0) / 2.0, top / 2.0),
            (FONT, 16)
                .into_font()
                .color(&GREY)
                .pos(Pos::new(HPos::Center, VPos::Center)),
        )))?;
    }
    Ok(())
}

/// A persistence diagram: (birth, death) per bar, coloured by dimension, the diagonal,
/// and infinite deaths on a dashed line above the finite ones.
pub fn persistence_diagram(title: &str, diagrams: &Diagrams) -> Result<String> {
    let mut legend: Vec<LegendEntry> = diagrams
        .dims
        .iter()
        .enumerate()
        .map(|(k, bars)| entry(format!("H{k} ({} bars)", bars.len()), color(k), Mark::Dot))
        .collect();
    legend.push(entry("birth = death", GREY, Mark::Line));
    legend.push(entry("death = ∞", GREY, Mark::Dashed));
    let width = 600;
    let height = 560 + legend_height(&legend, width);
    render((width, height), title, |root| {
        let body = frame(root, title, &legend)?;
        let coords = diagrams
            .dims
            .iter()
            .flatten()
            .flat_map(|b| [b.birth, b.death])
            .filter(|v| v.is_finite());
        let (lo, hi) = coords.fold((0.0f64, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(v), h.max(v))
        });
        let hi = if hi > lo { hi } else { lo + 1.0 };
        let span = hi - lo;
        let inf_y = hi + 0.08 * span;
        let mut chart = ChartBuilder::on(&body)
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(62)
            .build_cartesian_2d(
                lo - 0.02 * span..hi + 0.05 * span,
                lo - 0.02 * span..hi + 0.14 * span,
            )?;
        mesh(&mut chart, "birth (distance 1 − attention)", "death")
            .x_label_formatter(&|v| short(*v))
            .y_label_formatter(&|v| short(*v))
            .draw()?;
        chart.draw_series(LineSeries::new(
            vec![(lo, lo), (hi, hi)],
            GREY.stroke_width(1),
        ))?;
        chart.draw_series(DashedLineSeries::new(
            vec![(lo - 0.02 * span, inf_y), (hi + 0.05 * span, inf_y)],
            6,
            4,
            GREY.stroke_width(1),
        ))?;
        for (k, bars) in diagrams.dims.iter().enumerate() {
            let c = color(k);
            chart.draw_series(bars.iter().map(|b| {
                let death = if b.death.is_finite() { b.death } else { inf_y };
                Circle::new((b.birth, death), 4, c.mix(0.75).filled())
            }))?;
        }
        Ok(())
    })
}

/// The head-mean attention map of one layer, queries down and keys across, in viridis
/// with a colour bar. The scale tops out at the 99th percentile of the nonzero weights:
/// a causal map's first rows (query 0 sees only key 0, weight 1) would otherwise take
/// the whole scale and leave every sink column dark.
pub fn attention_heatmap(title: &str, map: &[f64], t: usize) -> Result<String> {
    if t == 0 || map.len() != t * t {
        return Err(Error::Other(format!(
            "cannot draw {title}: {} weights for a {t} × {t} map",
            map.len()
        )));
    }
    let vmax = colour_top(map);
    let scaled: Vec<f32> = map.iter().map(|&v| (v / vmax) as f32).collect();
    let img = heatmap(&scaled, t, t, scale_to_fit(t, t, 480))
        .and_then(|i| i.to_png())
        .map_err(|e| Error::Other(format!("cannot draw {title}: {e}")))?;
    let legend = [entry(
        format!(
            "head-mean attention weight, 0 to {} (99th percentile; larger weights at the top colour)",
            short(vmax)
        ),
        color(0),
        Mark::Gradient,
    )];
    let mut cells: Option<(Range<i32>, Range<i32>)> = None;
    let width = 640;
    let height = 580 + legend_height(&legend, width);
    let mut svg = render((width, height), title, |root| {
        let body = frame(root, title, &legend)?;
        let (main, bar) = body.split_horizontally(width - 110);
        let step = nice_step(t);
        let tf = t as f64;
        let x_keys: Vec<f64> = (0..t).step_by(step).map(|j| j as f64 + 0.5).collect();
        let y_keys: Vec<f64> = (0..t).step_by(step).map(|i| tf - i as f64 - 0.5).collect();
        let mut chart = ChartBuilder::on(&main)
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d(ticked(0.0..tf, x_keys), ticked(0.0..tf, y_keys))?;
        mesh(&mut chart, "key position", "query position")
            .disable_mesh()
            .x_label_formatter(&|v| format!("{}", v.floor() as i64))
            .y_label_formatter(&|v| format!("{}", (tf - v).floor() as i64))
            .draw()?;
        cells = Some(chart.plotting_area().get_pixel_range());
        colour_bar(&bar, vmax)
    })?;
    if let Some((x, y)) = cells {
        let image = format!(
            "<image x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" preserveAspectRatio=\"none\" \
             image-rendering=\"optimizeSpeed\" style=\"image-rendering:pixelated\" \
             href=\"data:image/png;base64,{}\"/>\n",
            x.start,
            y.start,
            x.end - x.start,
            y.end - y.start,
            base64::engine::general_purpose::STANDARD.encode(&img)
        );
        match svg.rfind("</svg>") {
            Some(end) => svg.insert_str(end, &image),
            None => return Err(Error::Other(format!("cannot draw {title}: unclosed SVG"))),
        }
    }
    Ok(svg)
}

/// The top of the colour scale: the 99th percentile of the positive weights.
fn colour_top(map: &[f64]) -> f64 {
    let mut positive: Vec<f64> = map.iter().copied().filter(|v| *v > 0.0).collect();
    if positive.is_empty() {
        return 1.0;
    }
    positive.sort_by(f64::total_cmp);
    let i = ((positive.len() - 1) as f64 * 0.99).round() as usize;
    positive[i].max(1e-12)
}

/// A tick spacing giving at most about eight labels over `n` positions.
fn nice_step(n: usize) -> usize {
    let target = n.div_ceil(8).max(1);
    let mut decade = 1;
    loop {
        for m in [1, 2, 5] {
            if m * decade >= target {
                return m * decade;
            }
        }
        decade *= 10;
    }
}

fn colour_bar(area: &Area<'_>, vmax: f64) -> Drawn {
    let mut chart = ChartBuilder::on(area)
        .margin_top(14)
        .margin_bottom(58)
        .margin_right(8)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..1.0, 0.0..vmax)?;
    mesh(&mut chart, "", "attention weight")
        .disable_mesh()
        .disable_x_axis()
        .y_label_formatter(&|v| short(*v))
        .draw()?;
    let n = 100;
    chart.draw_series((0..n).map(|i| {
        let [r, g, b] = viridis((i as f32 + 0.5) / n as f32);
        let (y0, y1) = (vmax * i as f64 / n as f64, vmax * (i + 1) as f64 / n as f64);
        Rectangle::new([(0.0, y0), (1.0, y1)], RGBColor(r, g, b).filled())
    }))?;
    Ok(())
}

/// The empirical spectral density of WᵀW as a histogram of log10 λ (spikes of a
/// trained weight sit decades above its bulk, which a linear axis would crush into
/// one bin), with the fitted Marchenko–Pastur law and its bulk edge.
pub fn weight_spectrum(title: &str, w: &WeightSpectrum) -> Result<String> {
    let m = w.evals.len();
    let lmax = w.evals.last().copied().unwrap_or(0.0);
    let fit = mp_curve(w);
    let mut legend = vec![entry(
        format!("ESD of WᵀW ({m} eigenvalues, N = {}, M = {})", w.n, w.m),
        color(0),
        Mark::Swatch,
    )];
    if fit.is_some() {
        legend.push(entry(
            format!(
                "Marchenko–Pastur fit (σ = {}, Q = {})",
                short(w.sigma_mp),
                short(w.q)
            ),
            color(1),
            Mark::Line,
        ));
        legend.push(entry(
            format!(
                "bulk edge λ₊ = {} ({} spikes above)",
                short(w.bulk_max),
                w.num_spikes
            ),
            color(3),
            Mark::Dashed,
        ));
    }
    let width = 720;
    let height = 440 + legend_height(&legend, width);
    render((width, height), title, |root| {
        let body = frame(root, title, &legend)?;
        // log10 λ: a trained weight's spikes sit decades above its bulk
        let top_l = lmax.max(if fit.is_some() { w.bulk_max } else { 0.0 });
        let hi = top_l.max(1e-300).log10();
        let smallest = w.evals.iter().copied().find(|&l| l > 0.0).unwrap_or(top_l);
        let lo = smallest.max(1e-300).log10().max(hi - 6.0).min(hi - 0.5);
        let (lo, hi) = (lo - 0.03 * (hi - lo), hi + 0.03 * (hi - lo));
        let bins = ((m as f64).sqrt() * 2.5).ceil().clamp(10.0, 80.0) as usize;
        let bw = (hi - lo) / bins as f64;
        let mut counts = vec![0usize; bins];
        for &l in &w.evals {
            let u = (l.max(1e-300).log10() - lo) / bw;
            counts[(u.max(0.0) as usize).min(bins - 1)] += 1;
        }
        let density: Vec<f64> = counts
            .iter()
            .map(|&c| c as f64 / (m.max(1) as f64 * bw))
            .collect();
        // the density of u = log10 λ is ρ(λ) · λ · ln 10
        let curve: Option<Vec<(f64, f64)>> = fit.map(|c| {
            c.into_iter()
                .filter(|&(l, _)| l > 0.0 && l.log10() >= lo)
                .map(|(l, r)| (l.log10(), r * l * std::f64::consts::LN_10))
                .collect()
        });
        let hist_max = density.iter().copied().fold(0.0, f64::max);
        let curve_max = curve
            .as_ref()
            .map_or(0.0, |c| c.iter().map(|p| p.1).fold(0.0, f64::max));
        let top = hist_max.max(curve_max.min(1.5 * hist_max)).max(1e-12) * 1.12;
        let mut chart = ChartBuilder::on(&body)
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(70)
            .build_cartesian_2d(ticked(lo..hi, decade_ticks(lo, hi)), 0.0..top)?;
        mesh(
            &mut chart,
            "eigenvalue λ of WᵀW (log scale)",
            "density of log10 λ",
        )
        .x_label_formatter(&|v| short(10f64.powf(*v)))
        .y_label_formatter(&|v| short(*v))
        .draw()?;
        chart.draw_series(density.iter().enumerate().map(|(i, &d)| {
            let x0 = lo + i as f64 * bw;
            Rectangle::new([(x0, 0.0), (x0 + bw, d)], color(0).mix(0.55).filled())
        }))?;
        if let Some(curve) = curve {
            let clipped = curve.into_iter().map(|(x, y)| (x, y.min(top)));
            chart.draw_series(LineSeries::new(clipped, color(1).stroke_width(2)))?;
            let edge = w.bulk_max.log10();
            chart.draw_series(DashedLineSeries::new(
                vec![(edge, 0.0), (edge, top)],
                6,
                4,
                color(3).stroke_width(2),
            ))?;
        }
        Ok(())
    })
}

/// Tick positions on a log10 axis: every decade, and the 3s between when the range
/// spans few decades.
fn decade_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let decades: Vec<f64> = (lo.ceil() as i32..=hi.floor() as i32)
        .map(f64::from)
        .collect();
    if decades.len() >= 4 {
        return decades;
    }
    (lo.floor() as i32..=hi.floor() as i32)
        .flat_map(|k| [f64::from(k), f64::from(k) + 3f64.log10()])
        .filter(|x| (lo..=hi).contains(x))
        .collect()
}

/// Points of the fitted MP density in the units of λ. The fit lives on the ESD
/// rescaled to mean 1 (x = λ·M/Σλ): ρ(x) = Q / (2πσ²x) · √((x₊ − x)(x − x₋)),
/// x± = σ²(1 ± 1/√Q)², and ρ_λ(λ) = ρ(x)·dx/dλ.
fn mp_curve(w: &WeightSpectrum) -> Option<Vec<(f64, f64)>> {
    let (s2, q) = (w.sigma_mp * w.sigma_mp, w.q);
    if !(s2.is_finite() && s2 > 0.0 && w.norm > 0.0 && q >= 1.0) {
        return None;
    }
    let scale = w.evals.len() as f64 / w.norm;
    let (lo, hi) = (
        s2 * (1.0 - 1.0 / q.sqrt()).powi(2),
        s2 * (1.0 + 1.0 / q.sqrt()).powi(2),
    );
    let n = 240;
    let points = (0..=n)
        .map(|i| {
            // denser near the edges, where the density bends sharply
            let u = 0.5 - 0.5 * (std::f64::consts::PI * i as f64 / n as f64).cos();
            let x = (lo + (hi - lo) * u).max(1e-9 * hi);
            let rho =
                q / (2.0 * std::f64::consts::PI * s2 * x) * ((hi - x) * (x - lo)).max(0.0).sqrt();
            (x / scale, rho * scale)
        })
        .collect();
    Some(points)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::Bar;

    #[test]
    fn step_axis_starts_at_step_zero_with_readable_ticks() {
        let (range, keys) = step_axis(300);
        assert!(range.start < 0.0 && range.end > (301f64).log10());
        let labels: Vec<String> = keys.iter().map(|&k| step_of(k)).collect();
        assert_eq!(labels, ["0", "1", "2", "5", "10", "20", "50", "100", "200"]);
        assert_eq!(nice_step(64), 10);
        assert_eq!(nice_step(8), 1);
        let labels: Vec<String> = decade_ticks(-1.2, 0.7)
            .iter()
            .map(|&k| short(10f64.powf(k)))
            .collect();
        assert_eq!(labels, ["0.1", "0.3", "1", "3"]);
        assert_eq!(
            decade_ticks(-5.5, 2.1),
            [-5.0, -4.0, -3.0, -2.0, -1.0, 0.0, 1.0, 2.0]
        );
    }

    #[test]
    fn the_mp_curve_integrates_to_one() {
        let w = WeightSpectrum {
            name: "w".into(),
            n: 400,
            m: 100,
            q: 4.0,
            num_evals: 100,
            norm: 250.0,
            spectral_norm: 5.0,
            sv_max: 0.0,
            sv_min: 0.0,
            alpha: None,
            xmin: None,
            xmax: 5.0,
            d: None,
            sigma: None,
            num_pl_spikes: 0,
            alpha_weighted: None,
            log_alpha_norm: None,
            log_norm: 0.0,
            log_spectral_norm: 0.0,
            stable_rank: 0.0,
            sigma_mp: 0.9,
            bulk_max: 0.0,
            num_spikes: 0,
            mp_softrank: 0.0,
            rand_distance: None,
            ww_softrank: None,
            warning: String::new(),
            evals: vec![2.5; 100],
        };
        let c = mp_curve(&w).unwrap();
        let area: f64 = c
            .windows(2)
            .map(|p| (p[1].0 - p[0].0) * 0.5 * (p[0].1 + p[1].1))
            .sum();
        assert!((area - 1.0).abs() < 0.02, "{area}");
    }

    #[test]
    fn figures_have_their_title_as_text_and_close() {
        let d = Diagrams {
            dims: vec![
                vec![
                    Bar {
                        birth: 0.0,
                        death: 0.5,
                    },
                    Bar {
                        birth: 0.0,
                        death: f64::INFINITY,
                    },
                ],
                vec![Bar {
                    birth: 0.6,
                    death: 0.7,
                }],
            ],
        };
        let svg = persistence_diagram("diagram <of> layer 1", &d).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("diagram &lt;of&gt; layer 1\n</text>"), "{svg}");
        let map = [1.0, 0.0, 0.5, 0.5];
        let svg = attention_heatmap("map", &map, 2).unwrap();
        assert!(svg.contains("data:image/png;base64,iVBOR"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(attention_heatmap("bad", &map, 3).is_err());
    }
}
