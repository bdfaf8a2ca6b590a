//! Atomic file writes: write a temporary file next to the destination, flush it to disk, then
//! rename it over the destination. A reader never sees a half-written file; a failed or abandoned
//! write leaves the destination untouched and removes the temporary file.
//!
//! Temporary files are named `.<name>.tmp-<pid>-<n>` (hidden, so folder listings skip them). A
//! process killed outright (SIGKILL, or a second Ctrl-C) cannot remove its own; the next write to
//! the same destination removes every temporary of that destination whose process no longer
//! exists. Commands that write for long (`prepare`, `export`) install the SIGINT/SIGTERM flag of
//! [`crate::train::interrupt`] and return an error when it is raised, so their writers are
//! dropped and remove their temporary files before the process exits.

use std::fs::File;
use std::io::{BufWriter, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Error, Result};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A file being written under a temporary name; [`AtomicFile::commit`] makes it appear at its
/// destination. Dropping it uncommitted deletes the temporary file.
#[derive(Debug)]
pub struct AtomicFile {
    dest: PathBuf,
    tmp: PathBuf,
    file: Option<BufWriter<File>>,
}

/// Temporary sibling path for `dest` (same folder, so the final rename stays on one file system).
/// `keep_suffix` is appended after the unique part (useful for writers that look at extensions).
/// Stale temporaries of `dest` (see the module docs) are removed first.
pub fn temp_path_for(dest: &Path, keep_suffix: &str) -> PathBuf {
    let name = dest
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    remove_stale_temps(dest);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp_name = format!(".{name}.tmp-{}-{n}{keep_suffix}", std::process::id());
    match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.join(tmp_name),
        _ => PathBuf::from(tmp_name),
    }
}

/// Whether process `pid` exists. Where this cannot be told (no `/proc`), every process counts as
/// alive, so nothing is removed by mistake.
fn process_alive(pid: u32) -> bool {
    let proc_root = Path::new("/proc");
    if !proc_root.join("self").exists() {
        return true;
    }
    proc_root.join(pid.to_string()).exists()
}

/// Remove the temporary files of `dest` left by processes that no longer exist (best effort:
/// returns how many were removed).
pub fn remove_stale_temps(dest: &Path) -> usize {
    let Some(name) = dest.file_name().map(|s| s.to_string_lossy().into_owned()) else {
        return 0;
    };
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let prefix = format!(".{name}.tmp-");
    let me = std::process::id();
    let mut removed = 0;
    for e in entries.flatten() {
        let entry = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = entry.strip_prefix(&prefix) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me || process_alive(pid) {
            continue;
        }
        let p = e.path();
        let gone = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        if gone.is_ok() {
            removed += 1;
        }
    }
    removed
}

impl AtomicFile {
    /// Start writing `dest` (its folder must exist).
    pub fn create(dest: impl AsRef<Path>) -> Result<Self> {
        let dest = dest.as_ref().to_path_buf();
        let tmp = temp_path_for(&dest, "");
        let file = File::create(&tmp).map_err(|e| Error::io(&dest, e))?;
        Ok(AtomicFile {
            dest,
            tmp,
            file: Some(BufWriter::new(file)),
        })
    }

    /// The destination path.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// The writer (buffered).
    pub fn writer(&mut self) -> &mut BufWriter<File> {
        self.file.as_mut().expect("AtomicFile used after commit")
    }

    /// Write all of `bytes`, naming the destination in errors.
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        let dest = self.dest.clone();
        self.writer()
            .write_all(bytes)
            .map_err(|e| Error::io(dest, e))
    }

    /// Overwrite bytes at `offset` (after flushing), then return to the end of the file.
    pub fn patch(&mut self, offset: u64, bytes: &[u8]) -> Result<()> {
        let dest = self.dest.clone();
        let w = self.writer();
        let io = |e| Error::io(&dest, e);
        w.flush().map_err(io)?;
        let f = w.get_mut();
        f.seek(std::io::SeekFrom::Start(offset)).map_err(io)?;
        f.write_all(bytes).map_err(io)?;
        f.seek(std::io::SeekFrom::End(0)).map_err(io)?;
        Ok(())
    }

    /// Flush, sync to disk and rename over the destination.
    pub fn commit(mut self) -> Result<()> {
        let w = self.file.take().expect("AtomicFile committed twice");
        let io = |e| Error::io(&self.dest, e);
        let f = w.into_inner().map_err(|e| io(e.into_error()))?;
        f.sync_all().map_err(io)?;
        drop(f);
        commit_temp(&self.tmp, &self.dest)
    }
}

/// Rename a finished temporary file over its destination (and sync the folder where possible).
pub fn commit_temp(tmp: &Path, dest: &Path) -> Result<()> {
    if let Err(e) = std::fs::rename(tmp, dest) {
        let _ = std::fs::remove_file(tmp);
        return Err(Error::io(dest, e));
    }
    if let Some(dir) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        // Best effort: make the rename itself durable.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// A folder being filled under a temporary name; [`AtomicDir::commit`] renames it to its
/// destination, so a failed or interrupted writer leaves no half-written folder. Dropping it
/// uncommitted removes the temporary folder and everything in it.
#[derive(Debug)]
pub struct AtomicDir {
    dest: PathBuf,
    tmp: PathBuf,
    done: bool,
}

impl AtomicDir {
    /// Start filling `dest`, which must not exist or be an empty folder (nothing is overwritten).
    /// Its parent folder is created if needed.
    pub fn create(dest: impl AsRef<Path>) -> Result<Self> {
        let dest = dest.as_ref().to_path_buf();
        if dest.exists() {
            let empty = std::fs::read_dir(&dest)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
            if !empty {
                return Err(Error::io(
                    &dest,
                    std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        "exists and is not an empty folder; choose a new one (nothing is \
                         overwritten)",
                    ),
                ));
            }
        }
        if let Some(p) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(p).map_err(|e| Error::io(p, e))?;
        }
        let tmp = temp_path_for(&dest, "");
        std::fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
        Ok(AtomicDir {
            dest,
            tmp,
            done: false,
        })
    }

    /// The temporary folder to write into.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// The destination.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Rename the finished folder to its destination (replacing an empty folder there).
    pub fn commit(mut self) -> Result<()> {
        if self.dest.is_dir() {
            std::fs::remove_dir(&self.dest).map_err(|e| Error::io(&self.dest, e))?;
        }
        std::fs::rename(&self.tmp, &self.dest).map_err(|e| Error::io(&self.dest, e))?;
        self.done = true;
        Ok(())
    }
}

impl Drop for AtomicDir {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}

/// Write `bytes` to `dest` atomically.
pub fn write_atomic(dest: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    let mut f = AtomicFile::create(dest)?;
    f.write_all(bytes)?;
    f.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abandoned_write_leaves_nothing() {
        let dir = std::env::temp_dir().join(format!("bs-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let dest = dir.join("x.bin");
        {
            let mut f = AtomicFile::create(&dest).unwrap();
            f.write_all(b"half").unwrap();
        }
        assert!(!dest.exists());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        write_atomic(&dest, b"whole").unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"whole");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn atomic_dir_appears_whole_or_not_at_all() {
        let dir = std::env::temp_dir().join(format!("bs-atomic-dir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let dest = dir.join("export");
        {
            let d = AtomicDir::create(&dest).unwrap();
            std::fs::write(d.path().join("a.txt"), b"a").unwrap();
        }
        assert!(!dest.exists());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        let d = AtomicDir::create(&dest).unwrap();
        std::fs::write(d.path().join("a.txt"), b"a").unwrap();
        d.commit().unwrap();
        assert_eq!(std::fs::read(dest.join("a.txt")).unwrap(), b"a");
        let e = AtomicDir::create(&dest).unwrap_err().to_string();
        assert!(e.contains("not an empty folder"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stale_temps_of_dead_processes_are_removed_on_the_next_write() {
        let dir = std::env::temp_dir().join(format!("bs-atomic-stale-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let dest = dir.join("out.store");
        // Process ids never exceed 2^22 on Linux: this one cannot be alive.
        let dead = dir.join(".out.store.tmp-99999999-0");
        let mine = dir.join(format!(".out.store.tmp-{}-999", std::process::id()));
        let other = dir.join(".other.bin.tmp-99999999-0");
        for p in [&dead, &mine, &other] {
            std::fs::write(p, b"half").unwrap();
        }
        write_atomic(&dest, b"whole").unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"whole");
        if Path::new("/proc/self").exists() {
            assert!(
                !dead.exists(),
                "stale temporary of a dead process is removed"
            );
        }
        assert!(
            mine.exists(),
            "a temporary of this process may still be in use"
        );
        assert!(other.exists(), "other destinations are left alone");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
