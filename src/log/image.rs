//! A minimal RGB raster and its PNG encoding, for TensorBoard image summaries.
//!
//! TensorBoard's `Summary.Image` wants encoded bytes; PNG is lossless, so
//! attention maps keep their exact colours. Drawing code lives in `plot.rs`.

use super::LogError;

/// Largest width or height we accept: TensorBoard images should stay small,
/// and a bound keeps a bad size from allocating gigabytes.
pub const MAX_SIDE: usize = 4096;

/// An 8-bit RGB image, rows top to bottom, pixels interleaved `[r, g, b]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

impl RgbImage {
    /// A `width` × `height` image filled with `background`; an error if a
    /// side is 0 or larger than [`MAX_SIDE`].
    pub fn new(width: usize, height: usize, background: [u8; 3]) -> Result<Self, LogError> {
        for (name, side) in [("width", width), ("height", height)] {
            if side == 0 || side > MAX_SIDE {
                return Err(LogError::Image(format!(
                    "{name} {side} is outside 1..={MAX_SIDE} pixels"
                )));
            }
        }
        Ok(RgbImage {
            width,
            height,
            pixels: background.repeat(width * height),
        })
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// The raw interleaved RGB bytes, row-major.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// The colour at (`x`, `y`), `None` outside the image.
    pub fn get(&self, x: usize, y: usize) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = 3 * (y * self.width + x);
        Some([self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]])
    }

    /// Sets the pixel at (`x`, `y`); coordinates outside the image are
    /// ignored, so drawing code can clip by simply drawing.
    pub fn put(&mut self, x: i64, y: i64, rgb: [u8; 3]) {
        let (Ok(x), Ok(y)) = (usize::try_from(x), usize::try_from(y)) else {
            return;
        };
        if x < self.width && y < self.height {
            let i = 3 * (y * self.width + x);
            self.pixels[i..i + 3].copy_from_slice(&rgb);
        }
    }

    /// Encodes the image as an 8-bit RGB PNG, the bytes `Summary.Image`
    /// carries.
    pub fn to_png(&self) -> Result<Vec<u8>, LogError> {
        let mut out = Vec::new();
        // Sides are at most MAX_SIDE, so they fit u32.
        let mut encoder = png::Encoder::new(&mut out, self.width as u32, self.height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&self.pixels)?;
        writer.finish()?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_round_trips_through_a_decoder() {
        let mut img = RgbImage::new(3, 2, [10, 20, 30]).unwrap();
        img.put(2, 1, [255, 0, 128]);
        img.put(-1, 0, [1, 1, 1]); // clipped, no panic
        img.put(3, 0, [1, 1, 1]); // clipped, no panic
        let png_bytes = img.to_png().unwrap();
        assert_eq!(&png_bytes[..8], b"\x89PNG\r\n\x1a\n");

        let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (3, 2));
        assert_eq!(info.color_type, png::ColorType::Rgb);
        assert_eq!(&buf[..info.buffer_size()], img.pixels());
        assert_eq!(img.get(2, 1), Some([255, 0, 128]));
        assert_eq!(img.get(0, 0), Some([10, 20, 30]));
        assert_eq!(img.get(3, 0), None);
    }

    #[test]
    fn bad_sizes_are_errors() {
        assert!(RgbImage::new(0, 5, [0; 3]).is_err());
        let err = RgbImage::new(5, MAX_SIDE + 1, [0; 3]).unwrap_err();
        assert!(err.to_string().contains("height"), "{err}");
    }
}
