//! The `brainsynth` program. Subcommands live in `brainsynth::cli`; add yours to `COMMANDS`.

use brainsynth::cli::{Command, audit_cmds, data_cmds, export_cmds, gen_cmds, run_main, seg_cmds};

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
];

fn main() {
    let code = run_main("brainsynth", COMMANDS, std::env::args().skip(1).collect());
    std::process::exit(code);
}
