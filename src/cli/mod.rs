//! The command-line interface: a small argument parser and a table of subcommands.
//!
//! To add a subcommand: write `fn cmd_x(args: Args) -> Result<(), CliError>` in a module under
//! `src/cli/`, describe it with a [`Command`] constant (name, one-line summary, full help), and add
//! that constant to the table in `src/bin/brainsynth.rs`. [`run_main`] does the rest: program and
//! subcommand `--help`, dispatch, and errors printed as `error: <sentence>` with exit status 2 for
//! usage mistakes and 1 for failures.

pub mod audit_cmds;
pub mod data_cmds;
pub mod export_cmds;
pub mod gen_cmds;
pub mod kernel_cmds;
pub mod seg_cmds;

use std::str::FromStr;

use crate::Error;

/// Why a command failed.
#[derive(Debug)]
pub enum CliError {
    /// The command line itself is wrong (exit status 2).
    Usage(String),
    /// The command ran and failed (exit status 1).
    Run(Error),
    /// A signal stopped the command after it saved its state (exit status 130, as a shell
    /// reports a process ended by SIGINT).
    Interrupted(String),
}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        match e {
            Error::Interrupted(m) => CliError::Interrupted(m),
            e => CliError::Run(e),
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Usage(m) => write!(f, "{m}"),
            CliError::Run(e) => write!(f, "{e}"),
            CliError::Interrupted(m) => write!(f, "interrupted: {m}"),
        }
    }
}

/// Shorthand for a usage error.
pub fn usage(msg: impl Into<String>) -> CliError {
    CliError::Usage(msg.into())
}

/// A subcommand: its name, a one-line summary for the program help, its full help text, and the
/// function that runs it.
#[derive(Clone, Copy)]
pub struct Command {
    pub name: &'static str,
    pub summary: &'static str,
    pub help: &'static str,
    pub run: fn(Args) -> Result<(), CliError>,
}

/// The arguments of one subcommand, consumed option by option. Options are `--name value`,
/// `--name=value` or bare flags `--name`; [`Args::finish`] rejects anything left over.
#[derive(Debug)]
pub struct Args {
    cmd: String,
    items: Vec<String>,
    used: Vec<bool>,
}

impl Args {
    /// Arguments `items` of subcommand `cmd` (for messages).
    pub fn new(cmd: impl Into<String>, items: Vec<String>) -> Self {
        let used = vec![false; items.len()];
        Args {
            cmd: cmd.into(),
            items,
            used,
        }
    }

    /// Whether `--help` or `-h` was given.
    pub fn wants_help(&self) -> bool {
        self.items.iter().any(|a| a == "--help" || a == "-h")
    }

    /// Whether the bare flag `name` (e.g. `"--skip-bad"`) was given.
    pub fn flag(&mut self, name: &str) -> bool {
        let mut found = false;
        for (i, a) in self.items.iter().enumerate() {
            if !self.used[i] && a == name {
                self.used[i] = true;
                found = true;
            }
        }
        found
    }

    /// The value of option `name`, if given (the last one wins).
    pub fn value(&mut self, name: &str) -> Result<Option<String>, CliError> {
        let mut out = None;
        let prefix = format!("{name}=");
        let mut i = 0;
        while i < self.items.len() {
            if !self.used[i] {
                if self.items[i] == name {
                    let Some(v) = self.items.get(i + 1) else {
                        return Err(usage(format!("{name} needs a value")));
                    };
                    self.used[i] = true;
                    self.used[i + 1] = true;
                    out = Some(v.clone());
                    i += 1;
                } else if let Some(v) = self.items[i].strip_prefix(&prefix) {
                    self.used[i] = true;
                    out = Some(v.to_string());
                }
            }
            i += 1;
        }
        Ok(out)
    }

    /// The value of a required option.
    pub fn required(&mut self, name: &str) -> Result<String, CliError> {
        self.value(name)?
            .ok_or_else(|| usage(format!("{} needs {name}", self.cmd)))
    }

    /// The value of option `name` parsed as `T`, if given.
    pub fn parse<T: FromStr>(&mut self, name: &str) -> Result<Option<T>, CliError>
    where
        T::Err: std::fmt::Display,
    {
        match self.value(name)? {
            None => Ok(None),
            Some(v) => v
                .parse::<T>()
                .map(Some)
                .map_err(|e| usage(format!("{name} {v:?}: {e}"))),
        }
    }

    /// The value of option `name` parsed as `T`, or `default`.
    pub fn parse_or<T: FromStr>(&mut self, name: &str, default: T) -> Result<T, CliError>
    where
        T::Err: std::fmt::Display,
    {
        Ok(self.parse(name)?.unwrap_or(default))
    }

    /// Fail on any argument no option consumed.
    pub fn finish(self) -> Result<(), CliError> {
        let left: Vec<&str> = self
            .items
            .iter()
            .zip(&self.used)
            .filter(|(_, u)| !**u)
            .map(|(a, _)| a.as_str())
            .collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(usage(format!(
                "{}: unexpected argument(s): {}",
                self.cmd,
                left.join(" ")
            )))
        }
    }
}

/// Program help listing the subcommands.
pub fn program_help(program: &str, commands: &[Command]) -> String {
    let mut s = format!(
        "{program}: synthetic brain-tumour MR images and the segmentation study\n\n\
         Usage: {program} <command> [options]\n       {program} <command> --help\n\nCommands:\n"
    );
    let width = commands.iter().map(|c| c.name.len()).max().unwrap_or(0);
    for c in commands {
        s.push_str(&format!("  {:width$}  {}\n", c.name, c.summary));
    }
    s
}

/// Run the program with `argv` (without the program name); returns the exit status.
pub fn run_main(program: &str, commands: &[Command], argv: Vec<String>) -> i32 {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("error: internal error: {info}");
    }));
    let mut it = argv.into_iter();
    let Some(name) = it.next() else {
        eprint!("{}", program_help(program, commands));
        return 2;
    };
    if name == "--help" || name == "-h" || name == "help" {
        print!("{}", program_help(program, commands));
        return 0;
    }
    let Some(cmd) = commands.iter().find(|c| c.name == name) else {
        eprintln!("error: unknown command {name:?}; run `{program} --help` for the list");
        return 2;
    };
    let args = Args::new(cmd.name, it.collect());
    if args.wants_help() {
        print!("{}", cmd.help);
        return 0;
    }
    match (cmd.run)(args) {
        Ok(()) => 0,
        Err(CliError::Usage(m)) => {
            eprintln!(
                "error: {m}\n(run `{program} {} --help` for the options)",
                cmd.name
            );
            2
        }
        Err(CliError::Run(e)) => {
            eprintln!("error: {e}");
            1
        }
        Err(CliError::Interrupted(m)) => {
            eprintln!("interrupted: {m}");
            130
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Args {
        Args::new("t", v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn parses_options_and_flags() {
        let mut a = args(&["--out", "x", "--n=3", "--skip"]);
        assert_eq!(a.value("--out").unwrap().as_deref(), Some("x"));
        assert_eq!(a.parse::<u32>("--n").unwrap(), Some(3));
        assert!(a.flag("--skip"));
        assert!(!a.flag("--other"));
        a.finish().unwrap();
    }

    #[test]
    fn leftovers_and_bad_values_are_usage_errors() {
        let a = args(&["--what"]);
        assert!(matches!(a.finish(), Err(CliError::Usage(_))));
        let mut a = args(&["--n", "x"]);
        assert!(matches!(a.parse::<u32>("--n"), Err(CliError::Usage(_))));
        let mut a = args(&["--n"]);
        assert!(matches!(a.value("--n"), Err(CliError::Usage(_))));
    }
}
