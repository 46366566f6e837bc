//! Tiny renderers for image summaries: attention heatmaps and persistence
//! diagrams, good enough to look at in TensorBoard, with no plotting crate.
//!
//! There are no axis ticks or labels (no font); the tag and, where it
//! matters, a text summary say what the axes are.

use super::image::{RgbImage, MAX_SIDE};
use super::LogError;

/// Matplotlib's viridis sampled at 17 evenly spaced points
/// (`matplotlib.colormaps["viridis"](np.linspace(0, 1, 17))`, rounded to
/// 8 bits). Viridis is perceptually uniform and ordered in lightness, so a
/// brighter cell always means more attention, also in greyscale.
const VIRIDIS: [[u8; 3]; 17] = [
    [68, 1, 84],
    [72, 24, 106],
    [71, 45, 123],
    [66, 64, 134],
    [59, 82, 139],
    [51, 99, 141],
    [44, 114, 142],
    [38, 130, 142],
    [33, 145, 140],
    [31, 160, 136],
    [40, 174, 128],
    [63, 188, 115],
    [94, 201, 98],
    [132, 212, 75],
    [173, 220, 48],
    [216, 226, 25],
    [253, 231, 37],
];

/// Colour of a NaN cell: magenta lies outside viridis, so it stands out.
pub const NAN_COLOR: [u8; 3] = [255, 0, 255];

/// Colours for scatter groups (Tableau 10): group 0 blue, 1 orange, 2 green…
/// so H0, H1, H2 of a persistence diagram have the colours people expect.
const GROUP_COLORS: [[u8; 3]; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

const WHITE: [u8; 3] = [255, 255, 255];
const FRAME: [u8; 3] = [200, 200, 200];
const DIAGONAL: [u8; 3] = [120, 120, 120];

/// Viridis colour of `t`, clamped to [0, 1]; NaN gives [`NAN_COLOR`].
pub fn viridis(t: f32) -> [u8; 3] {
    if t.is_nan() {
        return NAN_COLOR;
    }
    let x = t.clamp(0.0, 1.0) * (VIRIDIS.len() - 1) as f32;
    let i = (x.floor() as usize).min(VIRIDIS.len() - 2);
    let frac = x - i as f32;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    std::array::from_fn(|c| {
        let v = a[c] as f32 + (b[c] as f32 - a[c] as f32) * frac;
        v.round() as u8
    })
}

/// The largest integer scale that keeps a `rows` × `cols` heatmap within
/// `target_side` pixels (at least 1), so callers can keep images small
/// whatever the sequence length.
pub fn scale_to_fit(rows: usize, cols: usize, target_side: usize) -> usize {
    (target_side / rows.max(cols).max(1)).max(1)
}

/// A heatmap of a row-major `rows` × `cols` matrix with values in [0, 1]
/// (attention probabilities), each cell drawn as `scale` × `scale` pixels
/// in viridis. Values outside [0, 1] are clamped; NaN is magenta.
///
/// For an attention map, rows are query positions and columns key
/// positions, so a sink shows up as a bright first column.
pub fn heatmap(
    values: &[f32],
    rows: usize,
    cols: usize,
    scale: usize,
) -> Result<RgbImage, LogError> {
    let cells = rows.checked_mul(cols);
    if cells != Some(values.len()) {
        return Err(LogError::Image(format!(
            "heatmap: {} values for a {rows}x{cols} matrix",
            values.len()
        )));
    }
    if scale == 0 {
        return Err(LogError::Image("heatmap: scale must be at least 1".into()));
    }
    let side = |n: usize, what: &str| {
        n.checked_mul(scale)
            .filter(|&s| s <= MAX_SIDE)
            .ok_or_else(|| {
                LogError::Image(format!(
                    "heatmap: {n} {what} at scale {scale} exceed {MAX_SIDE} pixels"
                ))
            })
    };
    let (width, height) = (side(cols, "columns")?, side(rows, "rows")?);
    let mut img = RgbImage::new(width, height, WHITE)?;
    for y in 0..height {
        for x in 0..width {
            let colour = viridis(values[(y / scale) * cols + x / scale]);
            img.put(x as i64, y as i64, colour);
        }
    }
    Ok(img)
}

/// A square scatter plot of `points` (x, y) in a `size` × `size` image,
/// point `i` coloured by group `groups[i]`, with the diagonal y = x drawn:
/// a persistence diagram when points are (birth, death) and groups are
/// homology dimensions.
///
/// Both axes share one range, fitted to the finite coordinates with a small
/// margin, so the diagonal runs corner to corner. An infinite death (a class
/// that never dies) is drawn on a dashed line along the top edge; points
/// with a NaN coordinate are skipped.
pub fn scatter(points: &[(f64, f64)], groups: &[usize], size: usize) -> Result<RgbImage, LogError> {
    if points.len() != groups.len() {
        return Err(LogError::Image(format!(
            "scatter: {} points but {} group labels",
            points.len(),
            groups.len()
        )));
    }
    if !(32..=MAX_SIDE).contains(&size) {
        return Err(LogError::Image(format!(
            "scatter: size {size} is outside 32..={MAX_SIDE} pixels"
        )));
    }
    let mut img = RgbImage::new(size, size, WHITE)?;
    let axis = Axis::fit(points, size);

    // Frame and diagonal.
    let (lo, hi) = (axis.margin as i64, (size - 1 - axis.margin) as i64);
    for t in lo..=hi {
        for (x, y) in [(t, lo), (t, hi), (lo, t), (hi, t)] {
            img.put(x, y, FRAME);
        }
    }
    for t in lo..=hi {
        img.put(t, lo + hi - t, DIAGONAL);
    }
    let any_infinite = points
        .iter()
        .any(|&(x, y)| x.is_infinite() || y.is_infinite());
    if any_infinite {
        for t in (lo..=hi).filter(|t| (t / 4) % 2 == 0) {
            img.put(t, lo, DIAGONAL);
        }
    }

    let radius = (size / 80).max(2) as i64;
    for (&(x, y), &group) in points.iter().zip(groups) {
        let (Some(px), Some(py)) = (axis.to_px(x), axis.to_px(y)) else {
            continue;
        };
        let colour = GROUP_COLORS[group % GROUP_COLORS.len()];
        let (cx, cy) = (px, lo + hi - py);
        for dy in -radius..=radius {
            for dx in -radius..=radius {
                if dx * dx + dy * dy <= radius * radius {
                    img.put(cx + dx, cy + dy, colour);
                }
            }
        }
    }
    Ok(img)
}

/// The shared data range of a scatter plot and its mapping to pixels.
struct Axis {
    lo: f64,
    hi: f64,
    margin: usize,
    inner: usize,
}

impl Axis {
    fn fit(points: &[(f64, f64)], size: usize) -> Self {
        let finite = points
            .iter()
            .flat_map(|&(x, y)| [x, y])
            .filter(|v| v.is_finite());
        let (mut lo, mut hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        if lo > hi {
            (lo, hi) = (0.0, 1.0);
        }
        let pad = if hi > lo { 0.05 * (hi - lo) } else { 0.5 };
        let margin = size / 16;
        Axis {
            lo: lo - pad,
            hi: hi + pad,
            margin,
            inner: size - 1 - 2 * margin,
        }
    }

    /// Pixel offset from the low edge; +∞ maps to the high edge, −∞ to the
    /// low one, NaN to `None`.
    fn to_px(&self, v: f64) -> Option<i64> {
        if v.is_nan() {
            return None;
        }
        let t = ((v - self.lo) / (self.hi - self.lo)).clamp(0.0, 1.0);
        Some(self.margin as i64 + (t * self.inner as f64).round() as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viridis_ends_and_order() {
        assert_eq!(viridis(0.0), [68, 1, 84]);
        assert_eq!(viridis(1.0), [253, 231, 37]);
        assert_eq!(viridis(0.5), [33, 145, 140]);
        assert_eq!(viridis(-3.0), viridis(0.0));
        assert_eq!(viridis(7.0), viridis(1.0));
        assert_eq!(viridis(f32::NAN), NAN_COLOR);
        // Perceptually ordered: lightness (here: the channel sum) grows.
        let sums: Vec<u32> = (0..=20)
            .map(|i| viridis(i as f32 / 20.0).iter().map(|&c| c as u32).sum())
            .collect();
        assert!(sums.windows(2).all(|w| w[0] <= w[1]), "{sums:?}");
    }

    #[test]
    fn heatmap_cells_are_scaled_blocks() {
        // 2x3 matrix, scale 4: a 12x8 image.
        let v = [0.0, 0.5, 1.0, 1.0, 0.0, f32::NAN];
        let img = heatmap(&v, 2, 3, 4).unwrap();
        assert_eq!((img.width(), img.height()), (12, 8));
        assert_eq!(img.get(0, 0), Some(viridis(0.0)));
        assert_eq!(img.get(3, 3), Some(viridis(0.0)));
        assert_eq!(img.get(4, 0), Some(viridis(0.5)));
        assert_eq!(img.get(11, 3), Some(viridis(1.0)));
        assert_eq!(img.get(0, 4), Some(viridis(1.0)));
        assert_eq!(img.get(11, 7), Some(NAN_COLOR));
    }

    #[test]
    fn heatmap_rejects_bad_shapes() {
        assert!(heatmap(&[0.0; 5], 2, 3, 1).is_err());
        assert!(heatmap(&[], 0, 0, 1).is_err());
        assert!(heatmap(&[0.0; 4], 2, 2, 0).is_err());
        assert!(heatmap(&[0.0; 4], 2, 2, usize::MAX).is_err());
        assert!(heatmap(&[0.0; 4], usize::MAX, 2, 1).is_err());
        assert_eq!(scale_to_fit(64, 64, 256), 4);
        assert_eq!(scale_to_fit(1000, 10, 256), 1);
    }

    #[test]
    fn scatter_draws_points_diagonal_and_infinity() {
        let points = [
            (0.0, 1.0),
            (0.5, 2.0),
            (0.0, f64::INFINITY),
            (f64::NAN, 1.0),
        ];
        let img = scatter(&points, &[0, 1, 0, 1], 128).unwrap();
        assert_eq!((img.width(), img.height()), (128, 128));
        let count = |c: [u8; 3]| {
            (0..128)
                .flat_map(|y| (0..128).map(move |x| (x, y)))
                .filter(|&(x, y)| img.get(x, y) == Some(c))
                .count()
        };
        assert!(count(GROUP_COLORS[0]) > 0);
        assert!(count(GROUP_COLORS[1]) > 0);
        // The diagonal's far ends are still visible (no point sits there).
        assert_eq!(img.get(8, 119), Some(DIAGONAL));
        assert_eq!(img.get(100, 27), Some(DIAGONAL));
    }

    #[test]
    fn scatter_handles_degenerate_input() {
        assert!(scatter(&[], &[], 64).is_ok());
        assert!(scatter(&[(1.0, 1.0)], &[0], 64).is_ok());
        assert!(scatter(&[(f64::NAN, f64::NAN)], &[0], 64).is_ok());
        assert!(scatter(&[(0.0, 1.0)], &[], 64).is_err());
        assert!(scatter(&[], &[], 8).is_err());
        assert!(scatter(&[], &[], MAX_SIDE + 1).is_err());
    }
}
