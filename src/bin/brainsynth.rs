//! The `brainsynth` program. Subcommands live in `src/cli/`; add yours to `COMMANDS`.
//!
//! The command line is compiled into this binary only, so the library's public API stays the
//! engine. The glob import puts the library's modules at this crate's root, which keeps the
//! `crate::data::…` paths inside `src/cli/` resolving as they would inside the library.

use brainsynth::*;

#[path = "../cli/mod.rs"]
mod cli;

use cli::{Command, audit_cmds, data_cmds, export_cmds, gen_cmds, kernel_cmds, run_main, seg_cmds};

const COMMANDS: &[Command] = &[
    data_cmds::PHANTOM,
    data_cmds::PREPARE,
    data_cmds::SHOW,
    data_cmds::SPLIT,
    export_cmds::EXPORT,
    seg_cmds::STUDY,
    seg_cmds::TRAIN_SEG,
    seg_cmds::EVAL_SEG,
    audit_cmds::MEMORIZATION,
    gen_cmds::TRAIN_GEN,
    gen_cmds::GENERATE,
    kernel_cmds::AUDIT_KERNELS,
    kernel_cmds::BENCH_KERNELS,
];

fn main() {
    let code = run_main("brainsynth", COMMANDS, std::env::args().skip(1).collect());
    std::process::exit(code);
}
