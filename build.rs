//! With the `cuda` feature, compiles every `cuda/*.cu` with nvcc into PTX (compute_80, JIT-compiled
//! by the driver on Ampere and newer) and a cubin (sm_90 unless `CUDA_COMPUTE_CAP` says otherwise),
//! and writes `cuda_modules.rs` into OUT_DIR, which embeds both. Without the feature it does nothing.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    // Kernels rebuild when a .cu/.cuh changes, or the compiler or target is switched.
    for var in ["NVCC", "CUDA_COMPUTE_CAP"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let nvcc = match find_nvcc() {
        Some(p) => p,
        None => fail(
            "the `cuda` feature needs NVIDIA's nvcc: set NVCC to its path, put it on PATH, or set \
             CUDA_HOME; without a CUDA install, `export NVCC=$(.ci/nvcc-venv.sh | tail -n 1)` \
             installs one from pinned Python wheels",
        ),
    };
    let cubin_cc: u32 = match env::var("CUDA_COMPUTE_CAP") {
        Ok(s) => s.trim().replace('.', "").parse().unwrap_or_else(|_| {
            fail(&format!(
                "CUDA_COMPUTE_CAP={s} is not a compute capability such as 90 or 8.6"
            ))
        }),
        Err(_) => 90,
    };
    // PTX for compute_80 runs on every GPU from Ampere on; an older override lowers it.
    let ptx_cc = cubin_cc.min(80);

    let dir = Path::new("cuda");
    println!("cargo:rerun-if-changed=cuda");
    let mut sources = Vec::new();
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| fail(&format!("cannot read cuda/: {e}")));
    for e in entries.flatten() {
        let p = e.path();
        match p.extension().and_then(|x| x.to_str()) {
            Some("cu") => sources.push(p),
            Some("cuh") => println!("cargo:rerun-if-changed={}", p.display()),
            _ => {}
        }
    }
    sources.sort();
    for s in &sources {
        println!("cargo:rerun-if-changed={}", s.display());
    }

    // Two nvcc runs per file (PTX and cubin), all in parallel.
    let jobs: Vec<(PathBuf, PathBuf, Vec<String>)> = sources
        .iter()
        .flat_map(|src| {
            let stem = src.file_stem().and_then(|s| s.to_str()).unwrap_or("kernel");
            [
                (
                    src.clone(),
                    out.join(format!("{stem}.ptx")),
                    vec!["--ptx".into(), format!("-arch=compute_{ptx_cc}")],
                ),
                (
                    src.clone(),
                    out.join(format!("{stem}.cubin")),
                    vec!["--cubin".into(), format!("-arch=sm_{cubin_cc}")],
                ),
            ]
        })
        .collect();
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|(src, dst, flags)| {
                let nvcc = &nvcc;
                s.spawn(move || compile(nvcc, src, dst, flags))
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("an nvcc job panicked".into()))
                    .err()
            })
            .collect()
    });
    if !failures.is_empty() {
        fail(&failures.join("\n"));
    }

    let mut rs = String::from(
        "/// (module name, PTX text, cubin bytes) of every cuda/*.cu, compiled by build.rs.\n",
    );
    rs.push_str(&format!("pub const CUBIN_CC: u32 = {cubin_cc};\n"));
    rs.push_str("pub const MODULES: &[(&str, &str, &[u8])] = &[\n");
    for src in &sources {
        let stem = src.file_stem().and_then(|s| s.to_str()).unwrap_or("kernel");
        rs.push_str(&format!(
            "    ({stem:?}, include_str!(concat!(env!(\"OUT_DIR\"), \"/{stem}.ptx\")), include_bytes!(concat!(env!(\"OUT_DIR\"), \"/{stem}.cubin\"))),\n"
        ));
    }
    rs.push_str("];\n");
    std::fs::write(out.join("cuda_modules.rs"), rs)
        .unwrap_or_else(|e| fail(&format!("cannot write cuda_modules.rs: {e}")));
}

fn compile(nvcc: &Path, src: &Path, dst: &Path, flags: &[String]) -> Result<(), String> {
    let output = Command::new(nvcc)
        .args(flags)
        .args(["-O3", "-std=c++17", "-Icuda", "-o"])
        .arg(dst)
        .arg(src)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", nvcc.display()))?;
    if !output.status.success() {
        return Err(format!(
            "nvcc failed on {}:\n{}{}",
            src.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(())
}

/// `NVCC`, then `nvcc` on PATH, then `$CUDA_HOME/bin/nvcc`, `$CUDA_PATH/bin/nvcc`.
fn find_nvcc() -> Option<PathBuf> {
    if let Some(p) = env::var_os("NVCC") {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    if let Some(path) = env::var_os("PATH") {
        for d in env::split_paths(&path) {
            let p = d.join("nvcc");
            if p.is_file() {
                return Some(p);
            }
        }
    }
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(h) = env::var_os(var) {
            let p = PathBuf::from(h).join("bin").join("nvcc");
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    println!("cargo::error={msg}");
    std::process::exit(1);
}
