//! One stage's folder and the rules that make a study resumable and safe to re-run.
//!
//! A stage folder holds `config.json` (the configuration the stage runs with, written before it
//! starts), `done.json` (what it produced, written atomically when it completes) and, after an
//! interrupted session, `spent.json` (seconds already spent, so a resumed stage keeps its time
//! budget). Re-running the study:
//! - skips a stage whose `config.json` matches and whose `done.json` exists (its numbers are read
//!   back from `done.json`);
//! - resumes a stage whose `config.json` matches but which never finished (the training runner
//!   continues from the folder's `last.safetensors`);
//! - refuses a folder whose `config.json` differs, saying which setting differs: nothing is
//!   overwritten silently.

use std::path::{Path, PathBuf};

use crate::io::atomic::write_atomic;
use crate::io::json::{Json, parse};
use crate::{Error, Result};

const CONFIG: &str = "config.json";
const DONE: &str = "done.json";
const SPENT: &str = "spent.json";

/// What a stage folder says about the stage.
#[derive(Debug)]
pub enum StageState {
    /// Complete: the record it wrote.
    Done(Json),
    /// To run (fresh, or resumed after `spent_s` seconds of earlier sessions).
    Run { spent_s: f64 },
}

/// A stage's folder with the configuration it runs with.
#[derive(Clone, Debug)]
pub struct StageDir {
    pub path: PathBuf,
    pub config: Json,
}

fn read_json(path: &Path) -> Result<Json> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse(&text).map_err(|e| Error::format(path, e))
}

/// The first setting (as a dotted key path) where two configurations differ.
pub fn first_difference(old: &Json, new: &Json, at: &str) -> String {
    match (old, new) {
        (Json::Object(a), Json::Object(b)) => {
            for (k, v) in b {
                let path = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                match a.iter().find(|(ka, _)| ka == k) {
                    None => return format!("{path} is new"),
                    Some((_, va)) if va != v => return first_difference(va, v, &path),
                    _ => {}
                }
            }
            if let Some((k, _)) = a.iter().find(|(k, _)| !b.iter().any(|(kb, _)| kb == k)) {
                return format!("{at}.{k} is no longer set");
            }
            format!("{at} differs")
        }
        _ => format!(
            "{} was {} and is now {}",
            if at.is_empty() {
                "the configuration"
            } else {
                at
            },
            old.to_pretty().trim(),
            new.to_pretty().trim()
        ),
    }
}

impl StageDir {
    pub fn new(path: PathBuf, config: Json) -> Self {
        StageDir { path, config }
    }

    /// Check the folder against the configuration and say whether the stage is done; a fresh
    /// folder gets its `config.json`.
    pub fn open(&self) -> Result<StageState> {
        let cfg_path = self.path.join(CONFIG);
        if cfg_path.exists() {
            let old = read_json(&cfg_path)?;
            if old != self.config {
                return Err(Error::Data(format!(
                    "{} was made by a study with another configuration ({}); nothing was \
                     overwritten: give another --out, or remove that folder to redo the stage",
                    self.path.display(),
                    first_difference(&old, &self.config, "")
                )));
            }
            let done = self.path.join(DONE);
            if done.exists() {
                return Ok(StageState::Done(read_json(&done)?));
            }
            let spent = self.path.join(SPENT);
            let spent_s = if spent.exists() {
                match read_json(&spent)? {
                    Json::Number(s) => s.parse().unwrap_or(0.0),
                    _ => 0.0,
                }
            } else {
                0.0
            };
            return Ok(StageState::Run { spent_s });
        }
        if let Ok(mut entries) = std::fs::read_dir(&self.path)
            && entries.next().is_some()
        {
            return Err(Error::Data(format!(
                "{} holds files but no {CONFIG}, so it is not a stage of this study; nothing was \
                 overwritten: give another --out",
                self.path.display()
            )));
        }
        std::fs::create_dir_all(&self.path).map_err(|e| Error::io(&self.path, e))?;
        write_atomic(self.path.join(CONFIG), self.config.to_pretty().as_bytes())?;
        Ok(StageState::Run { spent_s: 0.0 })
    }

    /// Record the seconds spent so far by an unfinished stage.
    pub fn record_spent(&self, seconds: f64) -> Result<()> {
        write_atomic(
            self.path.join(SPENT),
            Json::num(seconds).to_pretty().as_bytes(),
        )
    }

    /// Mark the stage complete with its record.
    pub fn finish(&self, record: &Json) -> Result<()> {
        write_atomic(self.path.join(DONE), record.to_pretty().as_bytes())?;
        let spent = self.path.join(SPENT);
        if spent.exists() {
            std::fs::remove_file(&spent).map_err(|e| Error::io(&spent, e))?;
        }
        Ok(())
    }
}

/// Field `key` of an object.
pub fn field<'a>(j: &'a Json, key: &str) -> Option<&'a Json> {
    match j {
        Json::Object(f) => f.iter().find(|(k, _)| k == key).map(|(_, v)| v),
        _ => None,
    }
}

/// Field `key` as a number (null reads as NaN, as [`Json::num`] writes non-finite values).
pub fn num(j: &Json, key: &str) -> Result<f64> {
    match field(j, key) {
        Some(Json::Number(s)) => s
            .parse()
            .map_err(|_| Error::Data(format!("'{key}' holds {s:?}, not a number"))),
        Some(Json::Null) => Ok(f64::NAN),
        _ => Err(Error::Data(format!(
            "a stage record lacks the number '{key}'; remove the stage's done.json to redo it"
        ))),
    }
}

/// Field `key` as a string.
pub fn text(j: &Json, key: &str) -> Result<String> {
    match field(j, key) {
        Some(Json::String(s)) => Ok(s.clone()),
        _ => Err(Error::Data(format!(
            "a stage record lacks the text '{key}'; remove the stage's done.json to redo it"
        ))),
    }
}

/// Field `key` as an array.
pub fn array<'a>(j: &'a Json, key: &str) -> Result<&'a [Json]> {
    match field(j, key) {
        Some(Json::Array(a)) => Ok(a),
        _ => Err(Error::Data(format!(
            "a stage record lacks the list '{key}'; remove the stage's done.json to redo it"
        ))),
    }
}
