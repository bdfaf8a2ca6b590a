//! The `brainsynth` program. Subcommands live in `brainsynth::cli`; add yours to `COMMANDS`.

use brainsynth::cli::{Command, data_cmds, run_main};

const COMMANDS: &[Command] = &[
    data_cmds::PHANTOM,
    data_cmds::PREPARE,
    data_cmds::SHOW,
    data_cmds::SPLIT,
];

fn main() {
    let code = run_main("brainsynth", COMMANDS, std::env::args().skip(1).collect());
    std::process::exit(code);
}
