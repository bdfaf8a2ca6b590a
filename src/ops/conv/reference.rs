//! Reference convolution: straightforward loops, f64-capable, no cleverness — the ground truth the
//! fast CPU kernels (`fast.rs`, `direct.rs`) and the CUDA kernels (`cuda.rs`) are tested against.

use crate::tensor::Float;

/// Geometry of a 2-D convolution: x [n, cin, h, w] * w [cout, cin/groups, kh, kw] → y [n, cout, oh, ow].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    pub n: usize,
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub kh: usize,
    pub kw: usize,
    pub oh: usize,
    pub ow: usize,
    pub stride: (usize, usize),
    pub pad: (usize, usize),
    pub dil: (usize, usize),
    pub groups: usize,
}

impl ConvGeom {
    /// Input row/col read by output (oy, ox) at tap (ky, kx), if inside the image.
    #[inline]
    fn src(&self, oy: usize, ox: usize, ky: usize, kx: usize) -> Option<(usize, usize)> {
        let y = (oy * self.stride.0 + ky * self.dil.0) as isize - self.pad.0 as isize;
        let x = (ox * self.stride.1 + kx * self.dil.1) as isize - self.pad.1 as isize;
        if y < 0 || x < 0 || y as usize >= self.h || x as usize >= self.w {
            None
        } else {
            Some((y as usize, x as usize))
        }
    }

    /// Visit every (input index, weight index, output index) product of the convolution.
    fn for_each_tap(&self, mut f: impl FnMut(usize, usize, usize)) {
        let cpg_in = self.cin / self.groups;
        let cpg_out = self.cout / self.groups;
        for n in 0..self.n {
            for co in 0..self.cout {
                let g = co / cpg_out;
                for oy in 0..self.oh {
                    for ox in 0..self.ow {
                        let oi = ((n * self.cout + co) * self.oh + oy) * self.ow + ox;
                        for cig in 0..cpg_in {
                            let ci = g * cpg_in + cig;
                            for ky in 0..self.kh {
                                for kx in 0..self.kw {
                                    if let Some((y, x)) = self.src(oy, ox, ky, kx) {
                                        let xi = ((n * self.cin + ci) * self.h + y) * self.w + x;
                                        let wi =
                                            ((co * cpg_in + cig) * self.kh + ky) * self.kw + kx;
                                        f(xi, wi, oi);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// y = conv(x, w).
pub fn conv2d<T: Float>(x: &[T], w: &[T], g: &ConvGeom) -> Vec<T> {
    let mut y = vec![T::zero(); g.n * g.cout * g.oh * g.ow];
    g.for_each_tap(|xi, wi, oi| y[oi] += x[xi] * w[wi]);
    y
}

/// dx = conv2d's adjoint in x applied to dy (a transposed convolution).
pub fn conv2d_backward_data<T: Float>(dy: &[T], w: &[T], g: &ConvGeom) -> Vec<T> {
    let mut dx = vec![T::zero(); g.n * g.cin * g.h * g.w];
    g.for_each_tap(|xi, wi, oi| dx[xi] += dy[oi] * w[wi]);
    dx
}

/// dw = conv2d's adjoint in w: correlation of x with dy.
pub fn conv2d_backward_weight<T: Float>(x: &[T], dy: &[T], g: &ConvGeom) -> Vec<T> {
    let mut dw = vec![T::zero(); g.cout * (g.cin / g.groups) * g.kh * g.kw];
    g.for_each_tap(|xi, wi, oi| dw[wi] += x[xi] * dy[oi]);
    dw
}
