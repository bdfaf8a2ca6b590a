//! Line plots as PNG (training curves), drawn without any plotting library: axes, grid lines,
//! polylines, tick values and a legend in a built-in 3×5 pixel font.

use std::path::Path;

use crate::io::png::write_png;
use crate::{Error, Result};

/// One line of a plot.
pub struct Series {
    pub label: String,
    pub rgb: [u8; 3],
    pub points: Vec<(f64, f64)>,
}

/// Distinct colours for series.
pub const PALETTE: [[u8; 3]; 6] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
];

struct Canvas {
    w: usize,
    h: usize,
    px: Vec<u8>,
}

impl Canvas {
    fn new(w: usize, h: usize) -> Self {
        Canvas {
            w,
            h,
            px: vec![255; w * h * 3],
        }
    }
    fn set(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < self.w && (y as usize) < self.h {
            let i = (y as usize * self.w + x as usize) * 3;
            self.px[i..i + 3].copy_from_slice(&c);
        }
    }
    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: [u8; 3]) {
        let n = (x1 - x0).abs().max((y1 - y0).abs()).max(1);
        for k in 0..=n {
            let x = x0 + (x1 - x0) * k / n;
            let y = y0 + (y1 - y0) * k / n;
            self.set(x, y, c);
            self.set(x, y + 1, c);
        }
    }
    fn text(&mut self, x: i64, y: i64, s: &str, scale: i64, c: [u8; 3]) {
        for (k, ch) in s.chars().enumerate() {
            let g = glyph(ch);
            for (row, bits) in g.iter().enumerate() {
                for col in 0..3 {
                    if bits >> (2 - col) & 1 == 1 {
                        for dy in 0..scale {
                            for dx in 0..scale {
                                self.set(
                                    x + (k as i64 * 4 + col as i64) * scale + dx,
                                    y + row as i64 * scale + dy,
                                    c,
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Write `text` into an RGB image of `width × height` pixels at (`x`, `y`) (top left) in the
/// built-in 3×5 font, each font pixel `scale` pixels wide; letters are drawn upper-case and
/// anything off the image is clipped. Characters are 4·`scale` pixels apart.
pub fn draw_text(
    rgb: &mut [u8],
    width: usize,
    height: usize,
    (x, y): (usize, usize),
    text: &str,
    scale: usize,
    colour: [u8; 3],
) {
    if rgb.len() != width * height * 3 {
        return;
    }
    let mut c = Canvas {
        w: width,
        h: height,
        px: rgb.to_vec(),
    };
    c.text(x as i64, y as i64, text, scale.max(1) as i64, colour);
    rgb.copy_from_slice(&c.px);
}

/// Width in pixels of `text` drawn by [`draw_text`] at `scale`.
pub fn text_width(text: &str, scale: usize) -> usize {
    text.chars().count() * 4 * scale.max(1)
}

/// Rows of a 3×5 glyph, high bit on the left.
fn glyph(c: char) -> [u8; 5] {
    match c.to_ascii_uppercase() {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        '.' => [0, 0, 0, 0, 2],
        '-' => [0, 0, 7, 0, 0],
        '_' => [0, 0, 0, 0, 7],
        ':' => [0, 2, 0, 2, 0],
        '/' => [1, 1, 2, 4, 4],
        '+' => [0, 2, 7, 2, 0],
        ',' => [0, 0, 0, 2, 4],
        '(' => [1, 2, 2, 2, 1],
        ')' => [4, 2, 2, 2, 4],
        '=' => [0, 7, 0, 7, 0],
        'A' => [2, 5, 7, 5, 5],
        'B' => [6, 5, 6, 5, 6],
        'C' => [7, 4, 4, 4, 7],
        'D' => [6, 5, 5, 5, 6],
        'E' => [7, 4, 6, 4, 7],
        'F' => [7, 4, 6, 4, 4],
        'G' => [7, 4, 5, 5, 7],
        'H' => [5, 5, 7, 5, 5],
        'I' => [7, 2, 2, 2, 7],
        'J' => [1, 1, 1, 5, 7],
        'K' => [5, 5, 6, 5, 5],
        'L' => [4, 4, 4, 4, 7],
        'M' => [5, 7, 7, 5, 5],
        'N' => [6, 5, 5, 5, 5],
        'O' => [7, 5, 5, 5, 7],
        'P' => [7, 5, 7, 4, 4],
        'Q' => [7, 5, 5, 7, 1],
        'R' => [6, 5, 6, 5, 5],
        'S' => [7, 4, 7, 1, 7],
        'T' => [7, 2, 2, 2, 2],
        'U' => [5, 5, 5, 5, 7],
        'V' => [5, 5, 5, 5, 2],
        'W' => [5, 5, 7, 7, 5],
        'X' => [5, 5, 2, 5, 5],
        'Y' => [5, 5, 2, 2, 2],
        'Z' => [7, 1, 2, 4, 7],
        _ => [0, 0, 0, 0, 0],
    }
}

fn fmt_tick(v: f64) -> String {
    if v.abs() >= 100.0 || v == v.trunc() && v.abs() >= 10.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Draw `series` as one plot (`width` × `height` pixels) with a title, and write it atomically.
pub fn write_line_plot(
    path: impl AsRef<Path>,
    title: &str,
    series: &[Series],
    width: usize,
    height: usize,
) -> Result<()> {
    let path = path.as_ref();
    let pts: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    if pts.is_empty() {
        return Err(Error::Data(format!(
            "nothing to plot in {}",
            path.display()
        )));
    }
    if width < 160 || height < 120 {
        return Err(Error::invalid(
            "plot",
            format!("{width}×{height} is too small; at least 160×120"),
        ));
    }
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in &pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    let mut c = Canvas::new(width, height);
    let (left, right, top, bottom) = (60i64, 12i64, 28i64, 30i64);
    let (pw, ph) = (width as i64 - left - right, height as i64 - top - bottom);
    let map = |x: f64, y: f64| -> (i64, i64) {
        (
            left + ((x - x0) / (x1 - x0) * pw as f64).round() as i64,
            top + ph - ((y - y0) / (y1 - y0) * ph as f64).round() as i64,
        )
    };
    let grey = [220, 220, 220];
    let dark = [40, 40, 40];
    for k in 0..=4 {
        let fy = y0 + (y1 - y0) * k as f64 / 4.0;
        let (_, py) = map(x0, fy);
        c.line((left, py), (left + pw, py), grey);
        c.text(4, py - 5, &fmt_tick(fy), 2, dark);
        let fx = x0 + (x1 - x0) * k as f64 / 4.0;
        let (px, _) = map(fx, y0);
        c.line((px, top), (px, top + ph), grey);
        let label = fmt_tick(fx);
        // glyphs are 4 pixels apart at scale 1; keep the last label inside the picture
        let lw = 8 * label.len() as i64;
        c.text(
            (px - 8).min(width as i64 - lw - 2),
            top + ph + 8,
            &label,
            2,
            dark,
        );
    }
    c.line((left, top), (left, top + ph), dark);
    c.line((left, top + ph), (left + pw, top + ph), dark);
    for s in series {
        let mut prev = None;
        for &(x, y) in &s.points {
            if !(x.is_finite() && y.is_finite()) {
                prev = None;
                continue;
            }
            let p = map(x, y);
            if let Some(q) = prev {
                c.line(q, p, s.rgb);
            }
            prev = Some(p);
        }
    }
    c.text(left, 6, title, 3, dark);
    for (k, s) in series.iter().enumerate() {
        let y = top + 6 + 14 * k as i64;
        let x = left + pw - 150;
        for dy in 0..8 {
            for dx in 0..16 {
                c.set(x + dx, y + dy, s.rgb);
            }
        }
        c.text(x + 22, y, &s.label, 2, dark);
    }
    write_png(path, width, height, 3, &c.px)
}
