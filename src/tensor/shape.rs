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
    /// The same view with size-1 dimensions dropped and neighbours merged where one steps
    /// over the other exactly (`stride[d] == stride[d+1] * shape[d+1]`): (shape, strides).
    /// Walking the merged view visits the same storage indices in the same order.
    pub fn collapsed(&self) -> (Vec<usize>, Vec<usize>) {
        let mut shape: Vec<usize> = Vec::with_capacity(self.shape.len());
        let mut strides: Vec<usize> = Vec::with_capacity(self.shape.len());
        for (&d, &st) in self.shape.iter().zip(&self.strides) {
            if d == 1 {
                continue;
            }
            match (shape.last_mut(), strides.last_mut()) {
                (Some(pd), Some(ps)) if *ps == st * d => {
                    *pd *= d;
                    *ps = st;
                }
                _ => {
                    shape.push(d);
                    strides.push(st);
                }
            }
        }
        (shape, strides)
    }

    /// Row-major walk in runs along the innermost (merged) dimension: `f(start, len, stride)`
    /// for each run, where the run's storage indices are `start + i * stride`, i < len.
    /// Far fewer calls than [`Layout::for_each_index`], so copies can use slices.
    pub fn for_each_run(&self, mut f: impl FnMut(usize, usize, usize)) {
        if self.elem_count() == 0 {
            return;
        }
        let (shape, strides) = self.collapsed();
        let rank = shape.len();
        if rank == 0 {
            f(self.offset, 1, 1);
            return;
        }
        let (inner, inner_stride) = (shape[rank - 1], strides[rank - 1]);
        let mut idx = vec![0usize; rank];
        let mut base = self.offset;
        loop {
            f(base, inner, inner_stride);
            let mut d = rank - 1;
            loop {
                if d == 0 {
                    return;
                }
                d -= 1;
                idx[d] += 1;
                base += strides[d];
                if idx[d] < shape[d] {
                    break;
                }
                base -= strides[d] * idx[d];
                idx[d] = 0;
            }
        }
    }

    /// The view's elements of `src`, in row-major order, as a new vector.
    pub fn gather_from<T: Copy>(&self, src: &[T]) -> Vec<T> {
        let mut out = Vec::with_capacity(self.elem_count());
        self.for_each_run(|start, len, stride| {
            if stride == 1 {
                out.extend_from_slice(&src[start..start + len]);
            } else {
                out.extend((0..len).map(|i| src[start + i * stride]));
            }
        });
        out
    }

    /// Storage index of every element, in row-major order of the view.
    pub fn for_each_index(&self, mut f: impl FnMut(usize)) {
        self.for_each_run(|start, len, stride| (0..len).for_each(|i| f(start + i * stride)));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Storage index of each element from its multi-index, the plain way.
    fn indices(l: &Layout) -> Vec<usize> {
        (0..l.elem_count())
            .map(|mut i| {
                let mut at = l.offset;
                for d in (0..l.shape.len()).rev() {
                    at += (i % l.shape[d]) * l.strides[d];
                    i /= l.shape[d];
                }
                at
            })
            .collect()
    }

    fn runs(l: &Layout) -> Vec<usize> {
        let mut v = Vec::new();
        l.for_each_run(|s, n, st| v.extend((0..n).map(|i| s + i * st)));
        v
    }

    #[test]
    fn runs_and_the_element_walk_visit_every_index_in_order() {
        let cases = [
            // contiguous, a transpose, a narrow with offset, broadcast dims, size-1 dims, 0-d
            Layout::contiguous(&[2, 3, 4]),
            Layout {
                shape: vec![4, 3],
                strides: vec![1, 4],
                offset: 0,
            },
            Layout {
                shape: vec![2, 2, 5],
                strides: vec![15, 5, 1],
                offset: 5,
            },
            Layout {
                shape: vec![3, 4, 2],
                strides: vec![0, 2, 1],
                offset: 1,
            },
            Layout {
                shape: vec![1, 3, 1, 2],
                strides: vec![99, 2, 7, 1],
                offset: 0,
            },
            Layout {
                shape: vec![],
                strides: vec![],
                offset: 3,
            },
            Layout {
                shape: vec![2, 0, 3],
                strides: vec![3, 3, 1],
                offset: 0,
            },
        ];
        for l in &cases {
            assert_eq!(runs(l), indices(l), "{l:?}");
            let mut each = Vec::new();
            l.for_each_index(|i| each.push(i));
            assert_eq!(each, indices(l), "{l:?}");
            let src: Vec<usize> = (0..64).collect();
            let want: Vec<usize> = indices(l).iter().map(|&i| src[i]).collect();
            assert_eq!(l.gather_from(&src), want, "{l:?}");
        }
        assert_eq!(
            Layout {
                shape: vec![2, 3, 4],
                strides: vec![12, 4, 1],
                offset: 0
            }
            .collapsed(),
            (vec![24], vec![1])
        );
    }
}
