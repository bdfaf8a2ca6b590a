//! Shapes, strides and broadcasting rules.

use crate::{Error, Result};

/// Row-major contiguous strides for a shape.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

pub fn elem_count(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// A view of storage: shape, per-dimension strides (0 for broadcast dimensions) and an offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub shape: Vec<usize>,
    pub strides: Vec<usize>,
    pub offset: usize,
}

impl Layout {
    pub fn contiguous(shape: &[usize]) -> Self {
        Layout {
            shape: shape.to_vec(),
            strides: contiguous_strides(shape),
            offset: 0,
        }
    }
    pub fn is_contiguous(&self) -> bool {
        let mut expect = 1;
        for (&d, &s) in self.shape.iter().zip(&self.strides).rev() {
            if d != 1 && s != expect {
                return false;
            }
            expect *= d;
        }
        true
    }
    pub fn elem_count(&self) -> usize {
        elem_count(&self.shape)
    }
    /// Storage index of every element, in row-major order of the view.
    pub fn for_each_index(&self, mut f: impl FnMut(usize)) {
        let n = self.elem_count();
        if n == 0 {
            return;
        }
        let rank = self.shape.len();
        if rank == 0 {
            f(self.offset);
            return;
        }
        let inner = self.shape[rank - 1];
        let inner_stride = self.strides[rank - 1];
        let mut idx = vec![0usize; rank];
        let mut base = self.offset;
        loop {
            let mut p = base;
            for _ in 0..inner {
                f(p);
                p += inner_stride;
            }
            // advance the outer multi-index
            let mut d = rank - 1;
            loop {
                if d == 0 {
                    return;
                }
                d -= 1;
                idx[d] += 1;
                base += self.strides[d];
                if idx[d] < self.shape[d] {
                    break;
                }
                base -= self.strides[d] * idx[d];
                idx[d] = 0;
            }
        }
    }
}

/// The broadcast shape of two shapes (numpy rules), or an error naming the op.
pub fn broadcast_shape(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i + a.len() >= rank {
            a[i + a.len() - rank]
        } else {
            1
        };
        let db = if i + b.len() >= rank {
            b[i + b.len() - rank]
        } else {
            1
        };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(Error::shape(
                op,
                format!("{a:?} and {b:?} do not broadcast"),
            ));
        };
    }
    Ok(out)
}

/// Resolve a possibly negative axis against a rank.
pub fn axis(op: &'static str, ax: isize, rank: usize) -> Result<usize> {
    let a = if ax < 0 { ax + rank as isize } else { ax };
    if a < 0 || a as usize >= rank {
        return Err(Error::invalid(
            op,
            format!("axis {ax} out of range for rank {rank}"),
        ));
    }
    Ok(a as usize)
}
