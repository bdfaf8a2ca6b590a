//! Checkpoints in the safetensors format, so weights open in common tools:
//! 8-byte little-endian header length, a JSON header
//! `{"name": {"dtype": "F32"|"F64", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}}`,
//! then the raw little-endian data (offsets relative to the end of the header).
//!
//! Names are sections: a model's own parameters and buffers sit at the top level
//! (`synthesis.b64.conv0.weight`); other parts of a training state sit under a section prefix
//! (`optim/<param>.exp_avg`, `ema/<param>`). Metadata records model kind, profile and step so a
//! checkpoint of the wrong model is recognised.
//!
//! A training state with several networks (a GAN's `G`, `D`, `G_ema`, `opt_G`, `opt_D`) names
//! each part: [`CheckpointWriter::add_network`], [`CheckpointWriter::add_optimizer_named`] and
//! [`CheckpointWriter::add_ema_named`] put it under its own section (`G/<param>`,
//! `opt_G/<param>.exp_avg`); named tensors (`pl_mean`) go under `tensor/<name>`; named numbers
//! (`kimg`) and RNG states are metadata (`f64.<name>`, `u64.<name>`, `rng.<name>`), written in
//! decimal so they round-trip exactly (an RNG state has 64 significant bits, more than an f64
//! holds). The single-network layout above is the section-free special case, so checkpoints
//! written before named sections existed still load.
//!
//! Reading never trusts the file: every size and offset is checked against the file length before
//! anything is allocated, and every problem is an error that names the file.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use super::atomic::write_atomic;
use super::json::{self, Json};
use crate::nn::ParamStore;
use crate::optim::{Ema, Optimizer};
use crate::rng::SplitMix64;
use crate::tensor::{DType, Device, Tensor};
use crate::{Error, Result};

/// Section of optimiser state.
pub const OPTIM_SECTION: &str = "optim";
/// Section of EMA shadow weights.
pub const EMA_SECTION: &str = "ema";
/// Section of named tensors ([`CheckpointWriter::add_named_tensor`]).
pub const TENSOR_SECTION: &str = "tensor";

/// Section names are what people type and read in errors: letters, digits, `_`, `-`, `.`.
fn check_section_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "checkpoint",
            format!(
                "section name {name:?} must be non-empty and use only letters, digits, '_', '-' and '.'"
            ),
        ))
    }
}

/// Metadata key of the optimiser kind of the optimiser in `section`.
fn optimizer_kind_key(section: &str) -> String {
    if section == OPTIM_SECTION {
        "optimizer".to_string()
    } else {
        format!("{section}.optimizer")
    }
}

fn format_err(path: &Path, msg: impl Into<String>) -> Error {
    Error::format(path, msg)
}
fn ckpt_err(path: &Path, msg: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

fn dtype_tag(d: DType) -> &'static str {
    match d {
        DType::F32 => "F32",
        DType::F64 => "F64",
    }
}

fn section_name(section: &str, name: &str) -> String {
    if section.is_empty() {
        name.to_string()
    } else {
        format!("{section}/{name}")
    }
}

/// Up to five names, for error messages.
fn few(names: &[String]) -> String {
    let shown: Vec<&str> = names.iter().take(5).map(|s| s.as_str()).collect();
    let more = names.len().saturating_sub(5);
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

// ---- writing -------------------------------------------------------------------------------------

/// Collects named tensors and metadata, then writes them as one safetensors file.
#[derive(Default)]
pub struct CheckpointWriter {
    entries: Vec<(String, Tensor)>,
    metadata: BTreeMap<String, String>,
}

impl CheckpointWriter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set_metadata(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        self.metadata.insert(key.to_string(), value.into());
        self
    }

    /// The usual identification: model kind, size profile and training step.
    pub fn set_model_info(&mut self, model: &str, profile: &str, step: u64) -> &mut Self {
        self.set_metadata("model", model)
            .set_metadata("profile", profile)
            .set_metadata("step", step.to_string())
    }

    /// Tensors under `section` ("" for the top level).
    pub fn add_tensors(&mut self, section: &str, tensors: Vec<(String, Tensor)>) -> &mut Self {
        for (n, t) in tensors {
            self.entries.push((section_name(section, &n), t));
        }
        self
    }

    /// A store's parameters and buffers under `section` ("" for the model itself).
    pub fn add_store(&mut self, section: &str, store: &ParamStore) -> &mut Self {
        self.add_tensors(section, store.named_tensors())
    }

    /// Optimiser state (section "optim"), with its kind in the metadata.
    pub fn add_optimizer(&mut self, opt: &dyn Optimizer) -> &mut Self {
        self.set_metadata("optimizer", opt.kind());
        self.add_tensors(OPTIM_SECTION, opt.state_tensors())
    }

    /// EMA shadow weights (section "ema").
    pub fn add_ema(&mut self, ema: &Ema) -> &mut Self {
        self.add_tensors(EMA_SECTION, ema.named_tensors())
    }

    /// A named network's parameters and buffers under its own section (`G`, `D`, `G_ema`).
    pub fn add_network(&mut self, name: &str, store: &ParamStore) -> Result<&mut Self> {
        check_section_name(name)?;
        Ok(self.add_store(name, store))
    }

    /// A named optimiser's state under its own section (`opt_G`), its kind in the metadata.
    pub fn add_optimizer_named(&mut self, name: &str, opt: &dyn Optimizer) -> Result<&mut Self> {
        check_section_name(name)?;
        self.set_metadata(&optimizer_kind_key(name), opt.kind());
        Ok(self.add_tensors(name, opt.state_tensors()))
    }

    /// Named EMA shadow weights under their own section.
    pub fn add_ema_named(&mut self, name: &str, ema: &Ema) -> Result<&mut Self> {
        check_section_name(name)?;
        Ok(self.add_tensors(name, ema.named_tensors()))
    }

    /// One named tensor of the training state (`pl_mean`), under section `tensor`.
    pub fn add_named_tensor(&mut self, name: &str, t: &Tensor) -> Result<&mut Self> {
        check_section_name(name)?;
        Ok(self.add_tensors(TENSOR_SECTION, vec![(name.to_string(), t.clone())]))
    }

    /// A named number (`kimg`); read back exactly by [`Checkpoint::f64_value`].
    pub fn set_f64(&mut self, name: &str, v: f64) -> &mut Self {
        // Rust prints the shortest decimal that parses back to the same bits
        self.set_metadata(&format!("f64.{name}"), v.to_string())
    }

    /// A named count (`images`, `step`); read back by [`Checkpoint::u64_value`].
    pub fn set_u64(&mut self, name: &str, v: u64) -> &mut Self {
        self.set_metadata(&format!("u64.{name}"), v.to_string())
    }

    /// A random stream's state, so a resumed run draws what an uninterrupted one would.
    pub fn set_rng(&mut self, name: &str, rng: &SplitMix64) -> &mut Self {
        self.set_metadata(&format!("rng.{name}"), rng.state().to_string())
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        encode(&self.entries, &self.metadata)
    }

    /// Write atomically: `.<file>.tmp-<pid>-<n>` in the same directory, fsync, rename over `path`. On error no
    /// file is left behind (the previous checkpoint at `path`, if any, is untouched).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let bytes = self.to_bytes()?;
        write_atomic(path.as_ref(), &bytes)
    }
}

/// Serialise named tensors and metadata to safetensors bytes.
pub fn encode(
    entries: &[(String, Tensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    let mut seen = HashSet::new();
    for (n, _) in entries {
        if n == "__metadata__" || !seen.insert(n.as_str()) {
            return Err(Error::invalid(
                "checkpoint",
                format!("tensor name {n:?} is reserved or used twice"),
            ));
        }
    }
    let mut header = String::from("{");
    if !metadata.is_empty() {
        header.push_str("\"__metadata__\":{");
        let kv: Vec<String> = metadata
            .iter()
            .map(|(k, v)| format!("{}:{}", json::quote(k), json::quote(v)))
            .collect();
        header.push_str(&kv.join(","));
        header.push('}');
    }
    let mut data: Vec<u8> = Vec::new();
    for (i, (name, t)) in entries.iter().enumerate() {
        let begin = data.len();
        // a GPU tensor's values are read through the host
        let t = &t.to_device(Device::Cpu)?;
        match t.dtype() {
            DType::F32 => t
                .to_vec_f32()?
                .iter()
                .for_each(|v| data.extend_from_slice(&v.to_le_bytes())),
            DType::F64 => t
                .to_vec_f64()?
                .iter()
                .for_each(|v| data.extend_from_slice(&v.to_le_bytes())),
        }
        if i > 0 || !metadata.is_empty() {
            header.push(',');
        }
        let shape: Vec<String> = t.shape().iter().map(|d| d.to_string()).collect();
        header.push_str(&format!(
            "{}:{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
            json::quote(name),
            dtype_tag(t.dtype()),
            shape.join(","),
            begin,
            data.len()
        ));
    }
    header.push('}');
    // pad with spaces so the data starts 8-byte aligned, as the reference writer does
    while (8 + header.len()) % 8 != 0 {
        header.push(' ');
    }
    let mut out = Vec::with_capacity(8 + header.len() + data.len());
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&data);
    Ok(out)
}

/// Save plain named tensors (top level) with metadata, atomically.
pub fn save_tensors(
    path: impl AsRef<Path>,
    tensors: &[(String, Tensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    write_atomic(path.as_ref(), &encode(tensors, metadata)?)
}

// ---- reading -------------------------------------------------------------------------------------

/// A checkpoint read into memory: its tensors (file order) and metadata.
#[derive(Debug)]
pub struct Checkpoint {
    path: PathBuf,
    metadata: BTreeMap<String, String>,
    tensors: Vec<(String, Tensor)>,
    index: HashMap<String, usize>,
}

struct Entry {
    name: String,
    dtype: DType,
    shape: Vec<usize>,
    begin: usize,
    end: usize,
}

/// Parse safetensors bytes; `path` only labels errors. Never panics and allocates at most
/// about the size of `bytes`.
pub fn load_from_bytes(bytes: &[u8], path: impl Into<PathBuf>) -> Result<Checkpoint> {
    let path: PathBuf = path.into();
    let p = path.as_path();
    if bytes.len() < 8 {
        return Err(format_err(
            p,
            format!(
                "file is {} bytes, too short for the 8-byte header length: not a safetensors checkpoint (or truncated)",
                bytes.len()
            ),
        ));
    }
    let mut len8 = [0u8; 8];
    len8.copy_from_slice(&bytes[..8]);
    let hlen = u64::from_le_bytes(len8);
    let avail = (bytes.len() - 8) as u64;
    if hlen > avail {
        return Err(format_err(
            p,
            format!(
                "header length {hlen} is larger than the {avail} bytes that follow it: truncated or not a safetensors file"
            ),
        ));
    }
    let hlen = hlen as usize;
    let header = std::str::from_utf8(&bytes[8..8 + hlen]).map_err(|e| {
        format_err(
            p,
            format!("header is not valid UTF-8 (byte {})", e.valid_up_to()),
        )
    })?;
    let data = &bytes[8 + hlen..];
    let doc =
        json::parse(header).map_err(|e| format_err(p, format!("malformed JSON header: {e}")))?;
    let Json::Object(fields) = doc else {
        return Err(format_err(
            p,
            format!("header must be a JSON object, found {}", doc.kind()),
        ));
    };

    let mut metadata = BTreeMap::new();
    let mut entries: Vec<Entry> = Vec::new();
    for (name, v) in fields {
        if name == "__metadata__" {
            let Json::Object(kv) = v else {
                return Err(format_err(p, "__metadata__ must be an object of strings"));
            };
            for (k, v) in kv {
                match v {
                    Json::String(s) => {
                        metadata.insert(k, s);
                    }
                    other => {
                        return Err(format_err(
                            p,
                            format!("metadata {k:?} must be a string, found {}", other.kind()),
                        ));
                    }
                }
            }
            continue;
        }
        entries.push(parse_entry(p, name, v, data.len())?);
    }

    // no two tensors may share bytes
    let mut ranges: Vec<(usize, usize, &str)> = entries
        .iter()
        .filter(|e| e.end > e.begin)
        .map(|e| (e.begin, e.end, e.name.as_str()))
        .collect();
    ranges.sort_unstable();
    if let Some(w) = ranges.windows(2).find(|w| w[1].0 < w[0].1) {
        return Err(format_err(
            p,
            format!(
                "tensors {:?} [{}, {}) and {:?} [{}, {}) overlap",
                w[0].2, w[0].0, w[0].1, w[1].2, w[1].0, w[1].1
            ),
        ));
    }

    // everything checked: now decode (total allocation ≤ the data section)
    let mut tensors = Vec::with_capacity(entries.len());
    let mut index = HashMap::with_capacity(entries.len());
    for e in entries {
        let raw = &data[e.begin..e.end];
        let t = match e.dtype {
            DType::F32 => Tensor::from_vec(
                raw.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect::<Vec<f32>>(),
                &e.shape,
            ),
            DType::F64 => Tensor::from_vec(
                raw.chunks_exact(8)
                    .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                    .collect::<Vec<f64>>(),
                &e.shape,
            ),
        }
        .map_err(|err| format_err(p, format!("tensor {:?}: {err}", e.name)))?;
        index.insert(e.name.clone(), tensors.len());
        tensors.push((e.name, t));
    }
    Ok(Checkpoint {
        path,
        metadata,
        tensors,
        index,
    })
}

fn parse_entry(p: &Path, name: String, v: Json, data_len: usize) -> Result<Entry> {
    let bad = |msg: String| Err(format_err(p, format!("tensor {name:?}: {msg}")));
    let Json::Object(fields) = v else {
        return bad(format!("entry must be an object, found {}", v.kind()));
    };
    let get = |k: &str| fields.iter().find(|f| f.0 == k).map(|f| &f.1);
    let dtype = match get("dtype") {
        Some(Json::String(s)) if s == "F32" => DType::F32,
        Some(Json::String(s)) if s == "F64" => DType::F64,
        Some(Json::String(s)) => {
            return bad(format!("dtype {s:?} is not supported (only F32 and F64)"));
        }
        _ => return bad("missing string field \"dtype\"".into()),
    };
    let Some(Json::Array(dims)) = get("shape") else {
        return bad("missing array field \"shape\"".into());
    };
    let mut shape = Vec::with_capacity(dims.len().min(64));
    let mut count: usize = 1;
    for d in dims {
        let Some(d) = d.as_u64().and_then(|d| usize::try_from(d).ok()) else {
            return bad("shape entries must be non-negative integers".into());
        };
        count = match count.checked_mul(d) {
            Some(c) => c,
            None => return bad(format!("shape {dims:?} has too many elements")),
        };
        shape.push(d);
    }
    let Some(Json::Array(off)) = get("data_offsets") else {
        return bad("missing array field \"data_offsets\"".into());
    };
    let offs: Vec<Option<usize>> = off
        .iter()
        .map(|o| o.as_u64().and_then(|o| usize::try_from(o).ok()))
        .collect();
    let [Some(begin), Some(end)] = offs[..] else {
        return bad("data_offsets must be two non-negative integers [begin, end]".into());
    };
    if begin > end || end > data_len {
        return bad(format!(
            "data_offsets [{begin}, {end}] fall outside the {data_len}-byte data section (truncated file?)"
        ));
    }
    let nbytes = count.checked_mul(dtype.size_in_bytes());
    if nbytes != Some(end - begin) {
        return bad(format!(
            "shape {shape:?} of {} needs {} bytes but data_offsets span {}",
            dtype_tag(dtype),
            nbytes.map_or("too many".to_string(), |n| n.to_string()),
            end - begin
        ));
    }
    Ok(Entry {
        name,
        dtype,
        shape,
        begin,
        end,
    })
}

/// Read a checkpoint's named tensors (and ignore its metadata), for inspection.
pub fn read_tensors(path: impl AsRef<Path>) -> Result<Vec<(String, Tensor)>> {
    Ok(Checkpoint::open(path)?.into_tensors())
}

impl Checkpoint {
    pub fn open(path: impl AsRef<Path>) -> Result<Checkpoint> {
        let path = path.as_ref();
        let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
        load_from_bytes(&bytes, path)
    }

    /// Same as [`load_from_bytes`].
    pub fn from_bytes(bytes: &[u8], path: impl Into<PathBuf>) -> Result<Checkpoint> {
        load_from_bytes(bytes, path)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).map(|s| s.as_str())
    }
    /// Metadata `key` as a count (a network size); a missing or unparsable value becomes the
    /// caller's error through `bad`, so each model names itself in the sentence.
    pub fn meta_count(&self, key: &str, bad: impl Fn(String) -> Error) -> Result<usize> {
        let v = self
            .meta(key)
            .ok_or_else(|| bad(format!("metadata lacks {key:?}")))?;
        v.parse()
            .map_err(|_| bad(format!("metadata {key:?} = {v:?} is not a count")))
    }
    /// The training step recorded by `set_model_info`.
    pub fn step(&self) -> Option<u64> {
        self.meta("step").and_then(|s| s.parse().ok())
    }

    /// Fail with a sentence unless metadata `key` equals `expected` (e.g. ("model", "unet")).
    pub fn expect_metadata(&self, key: &str, expected: &str) -> Result<()> {
        match self.meta(key) {
            Some(v) if v == expected => Ok(()),
            Some(v) => Err(ckpt_err(
                &self.path,
                format!(
                    "was saved with {key} {v:?}, but {expected:?} was expected: wrong checkpoint for this model?"
                ),
            )),
            None => Err(ckpt_err(
                &self.path,
                format!("records no {key:?} in its metadata; {expected:?} was expected"),
            )),
        }
    }

    /// All tensors with their full names, in file order.
    pub fn tensors(&self) -> &[(String, Tensor)] {
        &self.tensors
    }
    pub fn into_tensors(self) -> Vec<(String, Tensor)> {
        self.tensors
    }
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.index.get(name).map(|&i| &self.tensors[i].1)
    }

    /// The tensors of one section with the section prefix removed ("" gives the names that have
    /// no section).
    pub fn section(&self, section: &str) -> Vec<(String, Tensor)> {
        self.tensors
            .iter()
            .filter_map(|(n, t)| {
                let rest = if section.is_empty() {
                    (!n.contains('/')).then_some(n.as_str())
                } else {
                    n.strip_prefix(section).and_then(|r| r.strip_prefix('/'))
                };
                rest.map(|r| (r.to_string(), t.clone()))
            })
            .collect()
    }

    /// Assign the section's tensors into `targets` (matched by name). Everything is checked first
    /// — missing names, extra names, shapes, dtypes — so a failed load changes nothing.
    pub fn load_into(&self, section: &str, targets: &[(String, Tensor)], what: &str) -> Result<()> {
        self.check_into(section, targets, what)?;
        let found = self.section(section);
        let found_map: HashMap<&str, &Tensor> =
            found.iter().map(|(n, t)| (n.as_str(), t)).collect();
        for (n, t) in targets {
            t.assign(found_map[n.as_str()])?;
        }
        Ok(())
    }

    /// The checks of [`Checkpoint::load_into`] without assigning anything, so a state made of
    /// several sections can be checked whole before any of it changes.
    pub fn check_into(
        &self,
        section: &str,
        targets: &[(String, Tensor)],
        what: &str,
    ) -> Result<()> {
        let found = self.section(section);
        let found_map: HashMap<&str, &Tensor> =
            found.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let wanted: HashSet<&str> = targets.iter().map(|(n, _)| n.as_str()).collect();
        let where_ = if section.is_empty() {
            String::new()
        } else {
            format!(" (section {section:?})")
        };
        let missing: Vec<String> = targets
            .iter()
            .filter(|(n, _)| !found_map.contains_key(n.as_str()))
            .map(|(n, _)| n.clone())
            .collect();
        if !missing.is_empty() {
            return Err(ckpt_err(
                &self.path,
                format!(
                    "{} {what} tensor(s) missing{where_}: {}",
                    missing.len(),
                    few(&missing)
                ),
            ));
        }
        let extra: Vec<String> = found
            .iter()
            .filter(|(n, _)| !wanted.contains(n.as_str()))
            .map(|(n, _)| n.clone())
            .collect();
        if !extra.is_empty() {
            return Err(ckpt_err(
                &self.path,
                format!(
                    "{} unexpected tensor(s) that the {what} does not have{where_}: {}",
                    extra.len(),
                    few(&extra)
                ),
            ));
        }
        for (n, t) in targets {
            let src = found_map[n.as_str()];
            if src.shape() != t.shape() {
                return Err(ckpt_err(
                    &self.path,
                    format!(
                        "{n:?}{where_} has shape {:?} in the file, the {what} expects {:?}",
                        src.shape(),
                        t.shape()
                    ),
                ));
            }
            if src.dtype() != t.dtype() {
                return Err(ckpt_err(
                    &self.path,
                    format!(
                        "{n:?}{where_} is {} in the file, the {what} expects {}",
                        src.dtype().name(),
                        t.dtype().name()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Load a store's parameters and buffers from `section` ("" for the model itself).
    pub fn load_store(&self, section: &str, store: &ParamStore) -> Result<()> {
        self.load_into(section, &store.named_tensors(), "model")
    }

    /// Restore optimiser state; the recorded optimiser kind must match.
    pub fn load_optimizer(&self, opt: &dyn Optimizer) -> Result<()> {
        self.expect_metadata("optimizer", opt.kind())?;
        self.load_into(OPTIM_SECTION, &opt.state_tensors(), "optimizer")
    }

    /// Restore EMA shadow weights.
    pub fn load_ema(&self, ema: &Ema) -> Result<()> {
        self.load_into(EMA_SECTION, &ema.named_tensors(), "EMA")
    }

    /// The sections present (the first part of every name that has one), sorted; "" stands for
    /// the top level when it holds tensors.
    pub fn sections(&self) -> Vec<String> {
        let set: std::collections::BTreeSet<String> = self
            .tensors
            .iter()
            .map(|(n, _)| n.split_once('/').map_or("", |(s, _)| s).to_string())
            .collect();
        set.into_iter().collect()
    }

    /// Whether any tensor sits under `section`.
    pub fn has_section(&self, section: &str) -> bool {
        let prefix = format!("{section}/");
        self.tensors.iter().any(|(n, _)| n.starts_with(&prefix))
    }

    fn require_section(&self, section: &str, what: &str) -> Result<()> {
        if self.has_section(section) {
            return Ok(());
        }
        let present = self.sections();
        Err(ckpt_err(
            &self.path,
            format!(
                "has no {what} section {section:?} (its sections: {})",
                if present.is_empty() {
                    "none".to_string()
                } else {
                    few(&present)
                }
            ),
        ))
    }

    /// Load a named network (see [`CheckpointWriter::add_network`]).
    pub fn load_network(&self, name: &str, store: &ParamStore) -> Result<()> {
        self.require_section(name, "network")?;
        self.load_into(name, &store.named_tensors(), &format!("network {name}"))
    }

    /// Restore a named optimiser; the recorded optimiser kind must match.
    pub fn load_optimizer_named(&self, name: &str, opt: &dyn Optimizer) -> Result<()> {
        self.expect_metadata(&optimizer_kind_key(name), opt.kind())?;
        let targets = opt.state_tensors();
        if !targets.is_empty() {
            self.require_section(name, "optimizer")?;
        }
        self.load_into(name, &targets, &format!("optimizer {name}"))
    }

    /// Restore named EMA shadow weights.
    pub fn load_ema_named(&self, name: &str, ema: &Ema) -> Result<()> {
        self.require_section(name, "EMA")?;
        self.load_into(name, &ema.named_tensors(), &format!("EMA {name}"))
    }

    /// Assign a named tensor (see [`CheckpointWriter::add_named_tensor`]) into `target`, checking
    /// its shape and dtype first.
    pub fn load_named_tensor(&self, name: &str, target: &Tensor) -> Result<()> {
        let full = section_name(TENSOR_SECTION, name);
        let Some(src) = self.get(&full) else {
            return Err(ckpt_err(
                &self.path,
                format!("has no tensor {name:?} (looked for {full:?})"),
            ));
        };
        if src.shape() != target.shape() || src.dtype() != target.dtype() {
            return Err(ckpt_err(
                &self.path,
                format!(
                    "tensor {name:?} is {} {:?} in the file, {} {:?} was expected",
                    src.dtype().name(),
                    src.shape(),
                    target.dtype().name(),
                    target.shape()
                ),
            ));
        }
        target.assign(src)
    }

    fn parsed<T: std::str::FromStr>(&self, key: &str, what: &str) -> Result<T> {
        let Some(v) = self.meta(key) else {
            return Err(ckpt_err(
                &self.path,
                format!("records no {what} (metadata {key:?})"),
            ));
        };
        v.parse().map_err(|_| {
            ckpt_err(
                &self.path,
                format!("metadata {key:?} is {v:?}, which is not a valid {what}"),
            )
        })
    }

    /// A named number written by [`CheckpointWriter::set_f64`].
    pub fn f64_value(&self, name: &str) -> Result<f64> {
        self.parsed(&format!("f64.{name}"), &format!("number {name:?}"))
    }

    /// A named count written by [`CheckpointWriter::set_u64`].
    pub fn u64_value(&self, name: &str) -> Result<u64> {
        self.parsed(&format!("u64.{name}"), &format!("count {name:?}"))
    }

    /// Whether the checkpoint records the random stream `name`.
    pub fn has_rng(&self, name: &str) -> bool {
        self.meta(&format!("rng.{name}")).is_some()
    }

    /// A random stream written by [`CheckpointWriter::set_rng`], positioned where it was saved.
    pub fn rng(&self, name: &str) -> Result<SplitMix64> {
        self.parsed::<u64>(
            &format!("rng.{name}"),
            &format!("random-stream state {name:?}"),
        )
        .map(SplitMix64::from_state)
    }
}
