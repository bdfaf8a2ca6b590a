//! Embeddings: Swin's relative-position bias (a learned table gathered into [heads, N, N]),
//! learned lookup tables, and the sinusoidal timestep embedding of the diffusion U-Net.
//! All gathers are `gather_map` / `index_select`, whose adjoint scatter-adds into the table.

use std::sync::Arc;

use crate::ops::attention::relative_position_index_in;
use crate::tensor::Tensor;
use crate::{Error, Result};

/// Swin `relative_position_bias_table[relative_position_index]` permuted to [heads, N, N]: table
/// [(2W−1)², heads] of a W×W window → bias [heads, ws², ws²] for a ws×ws window, ready for
/// [`crate::ops::attention::window_attention`]. `ws` may be below W (a map smaller than the
/// window): each offset reads the entry it has in the full table.
pub fn relative_position_bias(table: &Tensor, ws: usize) -> Result<Tensor> {
    let ts = table.shape();
    // the table's window: (2W − 1)² rows
    let side = (ts.first().copied().unwrap_or(0) as f64).sqrt().round() as usize;
    let table_ws = side.div_ceil(2);
    if ws == 0 || ts.len() != 2 || side * side != ts[0] || side.is_multiple_of(2) || ws > table_ws {
        return Err(Error::shape(
            "relative_position_bias",
            format!(
                "table {ts:?} for a {ws}×{ws} window: expected [(2W−1)², heads] with a window \
                 W ≥ {ws}, e.g. [{}, heads]",
                (2 * ws.max(1) - 1).pow(2)
            ),
        ));
    }
    let heads = ts[1];
    let n = ws * ws;
    let idx = relative_position_index_in(ws, table_ws);
    if n * n * heads >= u32::MAX as usize || table.elem_count() >= u32::MAX as usize {
        return Err(Error::invalid(
            "relative_position_bias",
            "window too large for 32-bit index maps",
        ));
    }
    // out[h, p] = table[idx[p], h]
    let mut map = Vec::with_capacity(heads * n * n);
    for h in 0..heads {
        for &i in &idx {
            map.push((i * heads + h) as u32);
        }
    }
    table.gather_map(Arc::new(map), &[heads, n, n])
}

/// Learned embedding lookup: rows `ids` of `table` [V, D] → [ids.len(), D]; the table gets
/// gradients (repeated ids accumulate).
pub fn embedding(table: &Tensor, ids: &[usize]) -> Result<Tensor> {
    if table.rank() != 2 {
        return Err(Error::shape(
            "embedding",
            format!("table {:?} must be [V, D]", table.shape()),
        ));
    }
    if let Some(&bad) = ids.iter().find(|&&i| i >= table.shape()[0]) {
        return Err(Error::invalid(
            "embedding",
            format!("id {bad} outside a table of {} entries", table.shape()[0]),
        ));
    }
    table.index_select(0, ids)
}

/// guided-diffusion `timestep_embedding`: t \[N\] → [N, dim] = [cos(t·f), sin(t·f)] (cos first)
/// with f_i = max_period^(−i/half), i < half = dim/2, and a zero column appended for odd dim.
/// Frequencies are computed in f64; the result has t's dtype. Differentiable in t.
pub fn timestep_embedding(t: &Tensor, dim: usize, max_period: f64) -> Result<Tensor> {
    const OP: &str = "timestep_embedding";
    let n = match t.shape() {
        [n] => *n,
        s => {
            return Err(Error::shape(
                OP,
                format!("timesteps must be [N], got {s:?}"),
            ));
        }
    };
    let half = dim / 2;
    let valid = half > 0 && max_period > 0.0; // false for NaN too
    if !valid {
        return Err(Error::invalid(
            OP,
            format!("dim {dim} must be ≥ 2 and max_period {max_period} > 0"),
        ));
    }
    let freqs: Vec<f64> = (0..half)
        .map(|i| (-max_period.ln() * i as f64 / half as f64).exp())
        .collect();
    let f = Tensor::from_f64s(&freqs, &[1, half], t.dtype())?.to_device(t.device())?;
    let args = t.reshape(&[n, 1])?.mul(&f)?;
    let emb = Tensor::cat(&[args.cos()?, args.sin()?], 1)?;
    if dim % 2 == 1 {
        emb.pad_axis(1, 0, 1)
    } else {
        Ok(emb)
    }
}
