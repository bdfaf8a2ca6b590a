//! Reorienting volumes to the BraTS orientation before slicing.
//!
//! BraTS volumes are stored with the first voxel axis pointing to the patient's Left, the second
//! to Posterior and the third to Superior (axis codes "LPS" in nibabel's `aff2axcodes` sense; the
//! affine of every BraTS 2020 file is `diag(-1, -1, 1)` with offset `(0, 239, 0)`). A file stored
//! otherwise (e.g. "RAS") shows the same anatomy mirrored or rotated; its affine says how, and
//! [`Reorient`] permutes and flips the voxel axes so that every case reaches the slicer in the
//! BraTS orientation. World coordinates are NIfTI's RAS+ (x to the Right, y Anterior, z Superior).
//! A file without orientation (qform and sform codes 0) is taken as stored.

use std::path::Path;

use crate::{Error, Result};

/// Sign of each world axis that voxel axes 0, 1, 2 point along in the BraTS orientation
/// (Left = −x, Posterior = −y, Superior = +z).
const BRATS_SIGNS: [f64; 3] = [-1.0, -1.0, 1.0];

/// Largest sine of the angle between a voxel axis and its nearest world axis that still counts as
/// aligned (about 0.6°). Anything more is oblique: slicing it without resampling would tilt the
/// slices, so it is refused.
pub const MAX_OBLIQUE_SINE: f64 = 0.01;

/// How the voxel axes of a file map onto the BraTS voxel axes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reorient {
    /// `perm[a]` is the BraTS axis that source axis `a` becomes.
    pub perm: [usize; 3],
    /// Whether source axis `a` runs against its BraTS axis (and is reversed).
    pub flip: [bool; 3],
}

impl Reorient {
    /// No change.
    pub const IDENTITY: Reorient = Reorient {
        perm: [0, 1, 2],
        flip: [false; 3],
    };

    /// Whether this is the identity.
    pub fn is_identity(&self) -> bool {
        *self == Self::IDENTITY
    }

    /// The reorientation for a voxel-to-world matrix (`None` = no orientation: identity).
    /// Errors name `path`: a singular matrix, two voxel axes along one world axis, or an oblique
    /// axis (more than [`MAX_OBLIQUE_SINE`] off its nearest world axis).
    pub fn from_affine(affine: Option<&[[f64; 4]; 3]>, path: &Path) -> Result<Reorient> {
        let Some(m) = affine else {
            return Ok(Self::IDENTITY);
        };
        let mut perm = [0usize; 3];
        let mut flip = [false; 3];
        let mut used = [false; 3];
        for a in 0..3 {
            let col = [m[0][a], m[1][a], m[2][a]];
            let norm = col.iter().map(|v| v * v).sum::<f64>().sqrt();
            if !norm.is_finite() || norm == 0.0 {
                return Err(Error::format(
                    path,
                    format!("the affine is singular or not finite (voxel axis {a} is {col:?})"),
                ));
            }
            let w = (0..3)
                .max_by(|&i, &j| col[i].abs().total_cmp(&col[j].abs()))
                .unwrap_or(0);
            let off = (0..3)
                .filter(|&i| i != w)
                .map(|i| col[i] * col[i])
                .sum::<f64>()
                .sqrt()
                / norm;
            if off > MAX_OBLIQUE_SINE {
                return Err(Error::format(
                    path,
                    format!(
                        "oblique affine: voxel axis {a} is {:.1}° off the nearest anatomical \
                         axis; resample the volume to an axis-aligned grid (e.g. the BraTS \
                         template) first",
                        off.asin().to_degrees()
                    ),
                ));
            }
            if used[w] {
                return Err(Error::format(
                    path,
                    format!(
                        "the affine maps two voxel axes onto world axis {}",
                        "xyz".as_bytes()[w] as char
                    ),
                ));
            }
            used[w] = true;
            perm[a] = w;
            flip[a] = col[w] * BRATS_SIGNS[w] < 0.0;
        }
        Ok(Reorient { perm, flip })
    }

    /// Voxel-axis codes of the source (e.g. "LPS", "RAS") for messages.
    pub fn source_codes(&self) -> String {
        const POS: [char; 3] = ['L', 'P', 'S'];
        const NEG: [char; 3] = ['R', 'A', 'I'];
        (0..3)
            .map(|a| {
                let w = self.perm[a];
                if self.flip[a] { NEG[w] } else { POS[w] }
            })
            .collect()
    }

    /// The dimensions after reorientation of a `src` volume.
    pub fn out_dims(&self, src: [usize; 3]) -> [usize; 3] {
        let mut d = [0; 3];
        for a in 0..3 {
            d[self.perm[a]] = src[a];
        }
        d
    }

    /// Where each voxel of a `src` volume, visited in file order (x fastest), lands in the
    /// reoriented volume.
    pub fn placer(&self, src: [usize; 3]) -> Placer {
        let out = self.out_dims(src);
        let stride = [1isize, out[0] as isize, (out[0] * out[1]) as isize];
        let mut step = [0isize; 3];
        let mut idx = 0isize;
        for a in 0..3 {
            let s = stride[self.perm[a]];
            if self.flip[a] {
                step[a] = -s;
                idx += (src[a] as isize - 1) * s;
            } else {
                step[a] = s;
            }
        }
        Placer {
            idx,
            i: [0; 3],
            n: src.map(|v| v as isize),
            step,
        }
    }
}

/// Destination indices for voxels in file order (see [`Reorient::placer`]).
#[derive(Debug, Clone)]
pub struct Placer {
    idx: isize,
    i: [isize; 3],
    n: [isize; 3],
    step: [isize; 3],
}

impl Placer {
    /// Destination of the next voxel. Call at most `nx·ny·nz` times.
    #[inline]
    pub fn next_index(&mut self) -> usize {
        let cur = self.idx as usize;
        self.i[0] += 1;
        self.idx += self.step[0];
        if self.i[0] == self.n[0] {
            self.i[0] = 0;
            self.idx += self.step[1] - self.n[0] * self.step[0];
            self.i[1] += 1;
            if self.i[1] == self.n[1] {
                self.i[1] = 0;
                self.idx += self.step[2] - self.n[1] * self.step[1];
                self.i[2] += 1;
            }
        }
        cur
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aff(cols: [[f64; 3]; 3]) -> [[f64; 4]; 3] {
        std::array::from_fn(|r| [cols[0][r], cols[1][r], cols[2][r], 0.0])
    }

    #[test]
    fn brats_affine_is_identity_and_ras_flips_two_axes() {
        let p = Path::new("x.nii");
        let lps = aff([[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]]);
        let r = Reorient::from_affine(Some(&lps), p).unwrap();
        assert!(r.is_identity());
        assert_eq!(r.source_codes(), "LPS");
        let ras = aff([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]);
        let r = Reorient::from_affine(Some(&ras), p).unwrap();
        assert_eq!(r.flip, [true, true, false]);
        assert_eq!(r.source_codes(), "RAS");
        // Axes stored as (S, L, P): permuted.
        let slp = aff([[0.0, 0.0, 2.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]);
        let r = Reorient::from_affine(Some(&slp), p).unwrap();
        assert_eq!(r.perm, [2, 0, 1]);
        assert_eq!(r.out_dims([5, 6, 7]), [6, 7, 5]);
    }

    #[test]
    fn placer_matches_direct_index_formula() {
        let src = [3usize, 4, 5];
        for perm in [[0, 1, 2], [2, 0, 1], [1, 2, 0], [0, 2, 1]] {
            for bits in 0..8u8 {
                let flip = [bits & 1 != 0, bits & 2 != 0, bits & 4 != 0];
                let r = Reorient { perm, flip };
                let out = r.out_dims(src);
                let mut p = r.placer(src);
                for z in 0..src[2] {
                    for y in 0..src[1] {
                        for x in 0..src[0] {
                            let ii = [x, y, z];
                            let mut d = [0; 3];
                            for a in 0..3 {
                                d[perm[a]] = if flip[a] { src[a] - 1 - ii[a] } else { ii[a] };
                            }
                            assert_eq!(p.next_index(), d[0] + out[0] * (d[1] + out[1] * d[2]));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn oblique_and_degenerate_affines_are_refused() {
        let p = Path::new("o.nii");
        let t: f64 = 0.1; // about 5.7°
        let obl = aff([
            [-t.cos(), t.sin(), 0.0],
            [-t.sin(), -t.cos(), 0.0],
            [0.0, 0.0, 1.0],
        ]);
        let e = Reorient::from_affine(Some(&obl), p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("oblique") && e.contains("o.nii"), "{e}");
        let two = aff([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]);
        assert!(Reorient::from_affine(Some(&two), p).is_err());
        let zero = aff([[0.0; 3], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]);
        assert!(Reorient::from_affine(Some(&zero), p).is_err());
    }
}
