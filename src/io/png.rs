//! PNG pictures of slices: montages with one row per slice, the four sequences side by side
//! (each column titled with its sequence; rows optionally labelled, e.g. with the model that
//! drew them), and the annotation laid over in colour (core red, edema green, enhancing yellow,
//! semi-transparent).
//! Files are written atomically.

use std::path::Path;

use crate::data::annotation::{CORE, EDEMA, ENHANCING, decode_value};
use crate::data::slices::{ANNOTATION, Slice};
use crate::io::atomic::write_atomic;
use crate::io::plot::{draw_text, text_width};
use crate::{Error, Result};

/// Colour of the necrotic / non-enhancing core.
pub const CORE_RGB: [u8; 3] = [235, 35, 35];
/// Colour of the edema.
pub const EDEMA_RGB: [u8; 3] = [40, 210, 40];
/// Colour of the enhancing tumour.
pub const ENHANCING_RGB: [u8; 3] = [255, 225, 0];

/// Where the annotation is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlay {
    /// The four sequences plain, then a fifth panel: T1ce with the annotation over it.
    ExtraPanel,
    /// The annotation over each of the four sequences.
    AllPanels,
    /// The four sequences only.
    None,
}

/// How a montage looks.
#[derive(Debug, Clone, PartialEq)]
pub struct MontageOptions {
    /// Where the annotation goes (default: an extra panel).
    pub overlay: Overlay,
    /// Opacity of the annotation colours, 0–1 (default 0.45).
    pub alpha: f32,
    /// Integer magnification; 0 = automatic (panels at least 128 pixels wide).
    pub scale: usize,
    /// Pixels between panels (default 2, dark grey).
    pub gap: usize,
    /// A title over each column naming its sequence (default on).
    pub titles: bool,
    /// A label left of each row (one per slice; empty: none), e.g. which model drew it.
    pub row_labels: Vec<String>,
}

impl Default for MontageOptions {
    fn default() -> Self {
        MontageOptions {
            overlay: Overlay::ExtraPanel,
            alpha: 0.45,
            scale: 0,
            gap: 2,
            titles: true,
            row_labels: Vec::new(),
        }
    }
}

/// The four sequences in channel order, as the column titles name them.
pub const SEQUENCES: [&str; 4] = ["T1", "T1ce", "T2", "FLAIR"];
/// Colour of titles and labels on the dark background.
pub const TEXT_RGB: [u8; 3] = [230, 230, 230];
/// Pixels around titles and labels.
pub const TEXT_PAD: usize = 3;

fn label_rgb(label: u8) -> Option<[u8; 3]> {
    match label {
        CORE => Some(CORE_RGB),
        EDEMA => Some(EDEMA_RGB),
        ENHANCING => Some(ENHANCING_RGB),
        _ => None,
    }
}

/// Render the montage: returns `(width, height, rgb bytes)`.
pub fn montage_rgb(slices: &[Slice], opts: &MontageOptions) -> Result<(usize, usize, Vec<u8>)> {
    let first = slices
        .first()
        .ok_or_else(|| Error::Data("montage of no slices".into()))?;
    let (h, w) = (first.h, first.w);
    if let Some(s) = slices.iter().find(|s| s.h != h || s.w != w) {
        return Err(Error::invalid(
            "montage",
            format!(
                "slices differ in size ({h}×{w} and {}×{} for {}#{})",
                s.h, s.w, s.subject, s.index
            ),
        ));
    }
    if !(0.0..=1.0).contains(&opts.alpha) {
        return Err(Error::invalid("montage", "alpha must be in [0, 1]"));
    }
    let k = if opts.scale == 0 {
        128usize.div_ceil(w.max(1)).clamp(1, 16)
    } else {
        opts.scale.min(64)
    };
    let panels = if opts.overlay == Overlay::ExtraPanel {
        5
    } else {
        4
    };
    if !opts.row_labels.is_empty() && opts.row_labels.len() != slices.len() {
        return Err(Error::invalid(
            "montage",
            format!(
                "{} row labels for {} slices",
                opts.row_labels.len(),
                slices.len()
            ),
        ));
    }
    let (ph, pw) = (h * k, w * k);
    let g = opts.gap;
    let titles: Vec<String> = (0..panels)
        .map(|p| match (opts.overlay, p) {
            (Overlay::ExtraPanel, 4) => format!("{}+labels", SEQUENCES[1]),
            (Overlay::AllPanels, _) => format!("{}+labels", SEQUENCES[p]),
            _ => SEQUENCES[p].to_string(),
        })
        .collect();
    // the larger font where every title fits its panel
    let ts = if titles.iter().all(|t| text_width(t, 2) + 2 <= pw) {
        2
    } else {
        1
    };
    let head = if opts.titles {
        5 * ts + 2 * TEXT_PAD
    } else {
        0
    };
    let left = opts
        .row_labels
        .iter()
        .map(|l| text_width(l, ts) + 2 * TEXT_PAD)
        .max()
        .unwrap_or(0);
    let width = left + panels * pw + (panels + 1) * g;
    let height = head + slices.len() * ph + (slices.len() + 1) * g;
    let mut img = vec![40u8; width * height * 3];
    if opts.titles {
        for (p, t) in titles.iter().enumerate() {
            let x = left + g + p * (pw + g) + pw.saturating_sub(text_width(t, ts)) / 2;
            draw_text(&mut img, width, height, (x, TEXT_PAD), t, ts, TEXT_RGB);
        }
    }
    for (row, l) in opts.row_labels.iter().enumerate() {
        let y = head + g + row * (ph + g) + ph.saturating_sub(5 * ts) / 2;
        draw_text(&mut img, width, height, (TEXT_PAD, y), l, ts, TEXT_RGB);
    }
    for (row, s) in slices.iter().enumerate() {
        let labels: Vec<u8> = s
            .channel(ANNOTATION)
            .iter()
            .map(|&v| decode_value(v as f32))
            .collect();
        for p in 0..panels {
            let (chan, overlay) = match (opts.overlay, p) {
                (Overlay::ExtraPanel, 4) => (1, true),
                (Overlay::AllPanels, _) => (p, true),
                _ => (p, false),
            };
            let gray = s.channel(chan);
            let y0 = head + g + row * (ph + g);
            let x0 = left + g + p * (pw + g);
            for r in 0..ph {
                for c in 0..pw {
                    let i = (r / k) * w + c / k;
                    let v = gray[i] as f32;
                    let mut rgb = [v, v, v];
                    if overlay && let Some(col) = label_rgb(labels[i]) {
                        for j in 0..3 {
                            rgb[j] = (1.0 - opts.alpha) * rgb[j] + opts.alpha * col[j] as f32;
                        }
                    }
                    let o = ((y0 + r) * width + x0 + c) * 3;
                    for j in 0..3 {
                        img[o + j] = rgb[j].round().clamp(0.0, 255.0) as u8;
                    }
                }
            }
        }
    }
    Ok((width, height, img))
}

/// Write a montage of `slices` (one row per slice) to a PNG file, atomically.
pub fn write_montage(
    path: impl AsRef<Path>,
    slices: &[Slice],
    opts: &MontageOptions,
) -> Result<()> {
    let (w, h, rgb) = montage_rgb(slices, opts)?;
    write_png(path, w, h, 3, &rgb)
}

/// Encode 8-bit pixels (`channels` 1 = grey, 3 = RGB, 4 = RGBA) as PNG bytes.
pub fn encode_png(w: usize, h: usize, channels: usize, pixels: &[u8]) -> Result<Vec<u8>> {
    let color = match channels {
        1 => png::ColorType::Grayscale,
        3 => png::ColorType::Rgb,
        4 => png::ColorType::Rgba,
        _ => return Err(Error::invalid("png", format!("{channels} channels"))),
    };
    if pixels.len() != w * h * channels
        || w == 0
        || h == 0
        || w > u32::MAX as usize
        || h > u32::MAX as usize
    {
        return Err(Error::invalid(
            "png",
            format!("{} bytes for {w}×{h}×{channels}", pixels.len()),
        ));
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w as u32, h as u32);
        enc.set_color(color);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc
            .write_header()
            .map_err(|e| Error::invalid("png", e.to_string()))?;
        wr.write_image_data(pixels)
            .map_err(|e| Error::invalid("png", e.to_string()))?;
        wr.finish()
            .map_err(|e| Error::invalid("png", e.to_string()))?;
    }
    Ok(out)
}

/// Write 8-bit pixels as a PNG file, atomically.
pub fn write_png(
    path: impl AsRef<Path>,
    w: usize,
    h: usize,
    channels: usize,
    pixels: &[u8],
) -> Result<()> {
    let bytes = encode_png(w, h, channels, pixels)?;
    write_atomic(path, &bytes)
}

/// One channel of a slice as `h × w` RGB bytes, with the annotation laid over in colour when
/// `overlay` is set (opacity `alpha`, as the montages): a tile for pictures that place slices
/// themselves.
pub fn panel_rgb(s: &Slice, channel: usize, overlay: bool, alpha: f32) -> Vec<u8> {
    let gray = s.channel(channel.min(ANNOTATION));
    let labels = s.channel(ANNOTATION);
    let mut out = Vec::with_capacity(gray.len() * 3);
    for (&g, &l) in gray.iter().zip(labels) {
        let v = g as f32;
        let mut rgb = [v, v, v];
        if overlay && let Some(col) = label_rgb(decode_value(l as f32)) {
            for j in 0..3 {
                rgb[j] = (1.0 - alpha) * rgb[j] + alpha * col[j] as f32;
            }
        }
        out.extend(rgb.map(|x| x.round().clamp(0.0, 255.0) as u8));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::annotation::encode_label;

    #[test]
    fn montage_geometry_and_colours() {
        let mut s = Slice::zeros("s", 0, 4, 4);
        s.channel_mut(1).fill(100);
        s.channel_mut(ANNOTATION)[0] = encode_label(ENHANCING);
        let opts = MontageOptions {
            scale: 1,
            gap: 1,
            titles: false,
            ..Default::default()
        };
        let (w, h, img) = montage_rgb(&[s.clone(), s], &opts).unwrap();
        assert_eq!((w, h), (5 * 4 + 6, 2 * 4 + 3));
        // Top-left pixel of the overlay panel (5th) is tinted yellow.
        let x0 = 1 + 4 * 5;
        let o = (w + x0) * 3;
        assert!(img[o] > img[o + 2] + 50, "{:?}", &img[o..o + 3]);
        // The pixel next to it is plain T1ce grey.
        assert_eq!(&img[o + 3..o + 6], &[100, 100, 100]);
        assert!(encode_png(w, h, 3, &img).unwrap().starts_with(b"\x89PNG"));
    }
}
