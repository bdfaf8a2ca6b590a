//! Montages say what they show: a title over each column (its sequence) and, when given, a
//! label left of each row; a label count that does not match the rows is an error. Writes a
//! labelled montage of a phantom slice to BRAINSYNTH_PICTURE_DIR when that is set (to look at).

use brainsynth::data::annotation::{ENHANCING, encode_label};
use brainsynth::data::slices::{ANNOTATION, Slice};
use brainsynth::io::plot::text_width;
use brainsynth::io::png::{MontageOptions, TEXT_PAD, TEXT_RGB, montage_rgb, write_montage};

fn slice() -> Slice {
    let mut s = Slice::zeros("s", 0, 32, 32);
    for c in 0..4 {
        for (i, v) in s.channel_mut(c).iter_mut().enumerate() {
            *v = ((i * (c + 1)) % 200) as u8;
        }
    }
    for v in &mut s.channel_mut(ANNOTATION)[300..420] {
        *v = encode_label(ENHANCING);
    }
    s
}

#[test]
fn titles_and_row_labels_are_drawn_in_their_margins() {
    let s = slice();
    let plain = MontageOptions {
        titles: false,
        ..Default::default()
    };
    let (w0, h0, _) = montage_rgb(&[s.clone(), s.clone()], &plain).unwrap();
    let opts = MontageOptions {
        row_labels: vec!["truth".into(), "unet".into()],
        ..Default::default()
    };
    let (w, h, img) = montage_rgb(&[s.clone(), s.clone()], &opts).unwrap();
    // panels 128 wide: every title ("T1ce+labels" the longest) fits at font scale 2
    let (head, left) = (5 * 2 + 2 * TEXT_PAD, text_width("truth", 2) + 2 * TEXT_PAD);
    assert_eq!((w, h), (w0 + left, h0 + head));
    let lit = |x0: usize, x1: usize, y0: usize, y1: usize| {
        (y0..y1).any(|y| (x0..x1).any(|x| img[(y * w + x) * 3..][..3] == TEXT_RGB))
    };
    assert!(lit(left, w, 0, head), "no title drawn");
    assert!(lit(0, left, head, h), "no row label drawn");
    // the title band has one title per panel: text in each fifth of it
    let pw = (w - left) / 5;
    for p in 0..5 {
        assert!(
            lit(left + p * pw, left + (p + 1) * pw, 0, head),
            "column {p} has no title"
        );
    }
    if let Some(dir) = std::env::var_os("BRAINSYNTH_PICTURE_DIR") {
        write_montage(
            std::path::Path::new(&dir).join("labelled_montage.png"),
            &[s.clone(), s.clone()],
            &opts,
        )
        .unwrap();
    }
    let bad = MontageOptions {
        row_labels: vec!["one".into()],
        ..Default::default()
    };
    let e = montage_rgb(&[s.clone(), s], &bad).unwrap_err().to_string();
    assert!(e.contains("1 row labels for 2 slices"), "{e}");
}
