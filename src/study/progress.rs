//! The study's one progress view: the stage list (done, skipped, to do), the current stage's
//! progress lines prefixed with its place in the list, and an estimate of the time left.
//!
//! The estimate sums, over the stages still to run, the measured duration of the last stage of
//! the same kind in this session, or else the stage's budget (its time limit); it is an upper
//! bound until a stage of each kind has run.

use std::time::Instant;

/// Where a stage stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Todo,
    /// Complete in an earlier run (read back).
    Skipped,
    Done,
}

struct Entry {
    name: String,
    /// Kind of work, for the estimate ("train unet", "train stylegan2", …).
    kind: String,
    budget_s: f64,
    status: Status,
}

/// The stage list and timings.
pub struct Progress {
    entries: Vec<Entry>,
    measured: Vec<(String, f64)>,
    started: Instant,
    current: Option<(usize, Instant)>,
}

impl Progress {
    pub fn new() -> Self {
        Progress {
            entries: Vec::new(),
            measured: Vec::new(),
            started: Instant::now(),
            current: None,
        }
    }

    /// Add a stage to the plan; returns its index.
    pub fn plan(&mut self, name: String, kind: impl Into<String>, budget_s: f64) -> usize {
        self.entries.push(Entry {
            name,
            kind: kind.into(),
            budget_s,
            status: Status::Todo,
        });
        self.entries.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn estimate(&self, e: &Entry) -> f64 {
        self.measured
            .iter()
            .rev()
            .find(|(k, _)| *k == e.kind)
            .map_or(e.budget_s, |&(_, s)| s)
    }

    /// Seconds the stages not yet done are expected to take.
    pub fn time_left(&self) -> f64 {
        self.entries
            .iter()
            .filter(|e| e.status == Status::Todo)
            .map(|e| self.estimate(e))
            .sum::<f64>()
            .max(0.0)
    }

    /// The whole list, one line per stage.
    pub fn list(&self) -> String {
        let mut s = format!(
            "study: {} stages, about {} left\n",
            self.entries.len(),
            minutes(self.time_left())
        );
        for (i, e) in self.entries.iter().enumerate() {
            let mark = match e.status {
                Status::Todo => "    ",
                Status::Skipped => "skip",
                Status::Done => "done",
            };
            s.push_str(&format!("  [{mark}] {:>2}. {}\n", i + 1, e.name));
        }
        s
    }

    /// Mark stage `i` started; returns the line announcing it.
    pub fn start(&mut self, i: usize) -> String {
        self.current = Some((i, Instant::now()));
        format!(
            "== stage {}/{}: {} ({} elapsed, about {} left) ==",
            i + 1,
            self.entries.len(),
            self.entries[i].name,
            minutes(self.started.elapsed().as_secs_f64()),
            minutes(self.time_left())
        )
    }

    /// The prefix of stage `i`'s progress lines.
    pub fn prefix(&self, i: usize) -> String {
        format!(
            "[{}/{} {}]",
            i + 1,
            self.entries.len(),
            self.entries[i].name
        )
    }

    /// Stage `i` was complete already.
    pub fn skip(&mut self, i: usize) {
        self.entries[i].status = Status::Skipped;
    }

    /// Stage `i` finished; returns its seconds.
    pub fn finish(&mut self, i: usize) -> f64 {
        let secs = match self.current {
            Some((j, t)) if j == i => t.elapsed().as_secs_f64(),
            _ => 0.0,
        };
        self.entries[i].status = Status::Done;
        self.measured.push((self.entries[i].kind.clone(), secs));
        self.current = None;
        secs
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

/// `s` seconds as "12 min" or "40 s".
pub fn minutes(s: f64) -> String {
    if s >= 90.0 {
        format!("{:.0} min", s / 60.0)
    } else {
        format!("{s:.0} s")
    }
}
