//! With the `cuda` feature, compiles every `cuda/*.cu` with nvcc into PTX (compute_80, JIT-compiled
//! by the driver on Ampere and newer) and a cubin (sm_90 unless `CUDA_COMPUTE_CAP` says otherwise),
//! and writes `cuda_modules.rs` into OUT_DIR, which embeds both. Without the feature it does nothing.
//!
//! With `cuda-emu` it compiles the same sources with the host C++ compiler (`CXX`, else `c++`)
//! instead: each file wrapped as `namespace k_<file> { #include "<file>.cu" }` after the emulation
//! header `cuda/emu/cuda_emu.h`, plus `cuda/emu/runtime.cpp` and a generated registry of every
//! `__global__` function (found by preprocessing each file with `__global__` as a marker), into the
//! static library `libbrainsynth_cuda_emu.a`. No nvcc is needed.
//!
//! Either way it reads the elementwise op table `cuda/elementwise_ops.cuh` (which
//! cuda/elementwise.cu includes for its codes) and writes `elementwise_codes.rs`, the Rust enums
//! of the same codes, so that no integer code is kept in sync by hand.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    elementwise_codes();
    if env::var_os("CARGO_FEATURE_CUDA_EMU").is_some() {
        emu::build();
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

    let sources = kernel_sources(Path::new("cuda"));

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

/// `UnaryCode` and `BinaryCode` from the `BS_UNARY(Name)` / `BS_BINARY(Name)` lines of
/// cuda/elementwise_ops.cuh: each op's code is its position among the lines of its kind, as the
/// `enum`s that cuda/elementwise.cu builds from the same lines.
fn elementwise_codes() {
    let table = Path::new("cuda").join("elementwise_ops.cuh");
    println!("cargo:rerun-if-changed={}", table.display());
    let text = std::fs::read_to_string(&table)
        .unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", table.display())));
    let (mut unary, mut binary) = (Vec::new(), Vec::new());
    for (no, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with("//") {
            continue;
        }
        let entry = |kind: &str| -> Option<String> {
            let name = line
                .strip_prefix(kind)?
                .strip_prefix('(')?
                .strip_suffix(')')?;
            let ok = name.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                && name.chars().all(|c| c.is_ascii_alphanumeric());
            ok.then(|| name.to_string()).or_else(|| {
                fail(&format!(
                    "{}:{}: `{name}` is not a CamelCase op name",
                    table.display(),
                    no + 1
                ))
            })
        };
        if let Some(n) = entry("BS_UNARY") {
            unary.push(n);
        } else if let Some(n) = entry("BS_BINARY") {
            binary.push(n);
        } else {
            fail(&format!(
                "{}:{}: expected BS_UNARY(Name) or BS_BINARY(Name), found `{line}`",
                table.display(),
                no + 1
            ));
        }
    }
    let mut rs = String::new();
    for (ty, names, what) in [
        ("UnaryCode", &unary, "unary"),
        ("BinaryCode", &binary, "binary"),
    ] {
        rs.push_str(&format!(
            "/// Codes of the {what} ops of cuda/elementwise.cu, generated by build.rs from \n\
             /// cuda/elementwise_ops.cuh (the discriminant is the kernel's code).\n\
             #[derive(Clone, Copy, Debug, PartialEq, Eq)]\n#[repr(i32)]\npub enum {ty} {{\n"
        ));
        for (i, n) in names.iter().enumerate() {
            rs.push_str(&format!("    {n} = {i},\n"));
        }
        rs.push_str("}\n");
    }
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("elementwise_codes.rs"), rs)
        .unwrap_or_else(|e| fail(&format!("cannot write elementwise_codes.rs: {e}")));
}

/// The `.cu` files of `cuda/` (sorted), with rerun-if-changed lines for them and their headers.
fn kernel_sources(dir: &Path) -> Vec<PathBuf> {
    println!("cargo:rerun-if-changed={}", dir.display());
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
    sources
}

mod emu {
    //! The `cuda-emu` build: kernels compiled for the CPU emulator (see cuda/emu/).
    use super::{fail, kernel_sources};
    use std::env;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    /// Bytes behind each `extern __shared__` array: an H100's 227 KiB opt-in limit.
    const DYN_SMEM_CAP: usize = 227 * 1024;

    pub fn build() {
        println!("cargo:rerun-if-env-changed=CXX");
        let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
        let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
        let cuda = root.join("cuda");
        for f in ["cuda_emu.h", "runtime.cpp"] {
            println!(
                "cargo:rerun-if-changed={}",
                cuda.join("emu").join(f).display()
            );
        }
        let cxx = env::var("CXX").unwrap_or_else(|_| "c++".into());
        let mut sources = kernel_sources(&cuda);
        // rule-breaking kernels for the emulator's own tests (never built for a GPU)
        let selftest = cuda.join("emu").join("selftest.cu");
        println!("cargo:rerun-if-changed={}", selftest.display());
        sources.push(selftest);
        let mut units = Vec::new();
        let mut tables = Vec::new();
        for src in &sources {
            let stem = src
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_else(|| fail(&format!("{} has no usable name", src.display())));
            let kernels = kernel_names(&cxx, &cuda, src);
            let text = std::fs::read_to_string(src)
                .unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", src.display())));
            let dynamic = dynamic_shared(&text, src);
            let unit = out.join(format!("emu_{stem}.cpp"));
            std::fs::write(&unit, wrapper(stem, src, &kernels, dynamic.as_deref()))
                .unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", unit.display())));
            units.push(unit);
            tables.push(format!("bs_emu_kernels_{stem}"));
        }
        let mut reg = String::from("#include \"emu/cuda_emu.h\"\n");
        for t in &tables {
            reg.push_str(&format!("extern \"C\" const BsEmuKernel {t}[];\n"));
        }
        reg.push_str("extern \"C\" const BsEmuKernel* const bs_emu_registry[] = {");
        for t in &tables {
            reg.push_str(&format!("{t}, "));
        }
        reg.push_str("nullptr};\n");
        let registry = out.join("emu_registry.cpp");
        std::fs::write(&registry, reg)
            .unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", registry.display())));
        units.push(registry);
        units.push(cuda.join("emu").join("runtime.cpp"));

        let objects: Vec<PathBuf> = units
            .iter()
            .map(|u| {
                out.join(u.file_stem().expect("named above"))
                    .with_extension("o")
            })
            .collect();
        let failures: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = units
                .iter()
                .zip(&objects)
                .map(|(u, o)| {
                    let (cxx, cuda) = (&cxx, &cuda);
                    s.spawn(move || compile(cxx, cuda, u, o))
                })
                .collect();
            handles
                .into_iter()
                .filter_map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("a compiler job panicked".into()))
                        .err()
                })
                .collect()
        });
        if !failures.is_empty() {
            fail(&failures.join("\n"));
        }
        let lib = out.join("libbrainsynth_cuda_emu.a");
        let _ = std::fs::remove_file(&lib);
        let ar = env::var("AR").unwrap_or_else(|_| "ar".into());
        let status = Command::new(&ar)
            .arg("crs")
            .arg(&lib)
            .args(&objects)
            .status()
            .unwrap_or_else(|e| fail(&format!("cannot run {ar}: {e}")));
        if !status.success() {
            fail(&format!("{ar} could not build {}", lib.display()));
        }
        println!("cargo:rustc-link-search=native={}", out.display());
        println!("cargo:rustc-link-lib=static=brainsynth_cuda_emu");
        println!("cargo:rustc-link-lib=dylib=stdc++");

        let mut rs = String::from("/// Kernel files compiled for the emulator by build.rs.\n");
        rs.push_str("pub const EMU_MODULES: &[&str] = &[");
        for src in &sources {
            let stem = src.file_stem().and_then(|s| s.to_str()).unwrap_or("kernel");
            rs.push_str(&format!("{stem:?}, "));
        }
        rs.push_str("];\n");
        std::fs::write(out.join("cuda_modules.rs"), rs)
            .unwrap_or_else(|e| fail(&format!("cannot write cuda_modules.rs: {e}")));
    }

    /// Names of the `__global__` functions of `src`: preprocessed with `__global__` as a marker
    /// (kernels are stamped out by macros, so the raw text does not name them).
    fn kernel_names(cxx: &str, cuda: &Path, src: &Path) -> Vec<String> {
        let output = Command::new(cxx)
            .args(["-E", "-P", "-std=c++17", "-x", "c++"])
            .arg("-D__global__=__bs_emu_kernel__")
            .arg("-D__launch_bounds__(...)=")
            .arg(format!("-I{}", cuda.display()))
            .arg(src)
            .output()
            .unwrap_or_else(|e| fail(&format!("cannot run {cxx}: {e}")));
        if !output.status.success() {
            fail(&format!(
                "{cxx} -E failed on {}:\n{}",
                src.display(),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        let text = String::from_utf8_lossy(&output.stdout);
        let mut names = Vec::new();
        for part in text.split("__bs_emu_kernel__").skip(1) {
            // `void NAME(`
            let rest = part.trim_start().strip_prefix("void").unwrap_or_else(|| {
                fail(&format!(
                    "{}: a __global__ function that does not return void",
                    src.display()
                ))
            });
            let name: String = rest
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if name.is_empty() {
                fail(&format!("{}: cannot read a kernel's name", src.display()));
            }
            names.push(name);
        }
        names
    }

    /// The name of the file's `extern __shared__` array (all of a kernel's dynamic shared
    /// memory), if it declares one; more than one distinct name is not supported.
    fn dynamic_shared(text: &str, src: &Path) -> Option<String> {
        let mut found: Option<String> = None;
        for part in text.split("extern __shared__").skip(1) {
            let decl = part.split(';').next().unwrap_or("");
            let name: String = decl
                .trim_end()
                .trim_end_matches("[]")
                .chars()
                .rev()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            if !decl.contains("unsigned char") || name.is_empty() {
                fail(&format!(
                    "{}: the emulator supports `extern __shared__ unsigned char NAME[]` only",
                    src.display()
                ));
            }
            match &found {
                Some(f) if *f != name => fail(&format!(
                    "{}: two dynamic shared arrays ({f}, {name}); the emulator supports one per file",
                    src.display()
                )),
                _ => found = Some(name),
            }
        }
        found
    }

    /// The translation unit of one kernel file: storage for its dynamic shared memory (defined
    /// before the kernels see the `extern` declaration), the file in its namespace, its table.
    fn wrapper(stem: &str, src: &Path, kernels: &[String], dynamic: Option<&str>) -> String {
        let mut w = String::from("#include \"emu/cuda_emu.h\"\n");
        if let Some(d) = dynamic {
            w.push_str(&format!(
                "namespace k_{stem} {{ alignas(16) thread_local unsigned char {d}[{DYN_SMEM_CAP}]; }}\n"
            ));
        }
        w.push_str(&format!(
            "namespace k_{stem} {{\n#include \"{}\"\n}}\n",
            src.display()
        ));
        let getter = match dynamic {
            Some(d) => {
                w.push_str(&format!(
                    "static unsigned char* bs_emu_dyn_{stem}() {{ return k_{stem}::{d}; }}\n"
                ));
                (format!("&bs_emu_dyn_{stem}"), DYN_SMEM_CAP)
            }
            None => ("nullptr".to_string(), 0),
        };
        w.push_str(&format!(
            "extern \"C\" const BsEmuKernel bs_emu_kernels_{stem}[] = {{\n"
        ));
        for k in kernels {
            w.push_str(&format!(
                "    {{\"{stem}\", \"{k}\", &bs_emu::invoke<&k_{stem}::{k}>, {}, {}}},\n",
                getter.0, getter.1
            ));
        }
        w.push_str("    {nullptr, nullptr, nullptr, nullptr, 0}};\n");
        w
    }

    fn compile(cxx: &str, cuda: &Path, unit: &Path, obj: &Path) -> Result<(), String> {
        let output = Command::new(cxx)
            .args([
                "-std=c++17",
                "-O2",
                "-g0",
                "-fPIC",
                "-fno-strict-aliasing",
                // _longjmp between fiber stacks must not be checked as an unwinding jump
                "-U_FORTIFY_SOURCE",
                "-Wno-unknown-pragmas",
                // `extern __shared__` is a block-scope `extern thread_local`, for which GCC would
                // call a (missing) dynamic-initialisation hook; the storage is constant-initialised
                "-fno-extern-tls-init",
            ])
            .arg(format!("-I{}", cuda.display()))
            .arg("-c")
            .arg(unit)
            .arg("-o")
            .arg(obj)
            .output()
            .map_err(|e| format!("cannot run {cxx}: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "{cxx} failed on {}:\n{}",
                unit.display(),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(())
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    println!("cargo::error={msg}");
    std::process::exit(1);
}
