//! The slice store: all prepared slices of a data set in one compact, checksummed binary file.
//!
//! Layout (all integers little-endian), version 1:
//!
//! ```text
//! offset  size  field
//!      0     8  magic "BSSTORE\0"
//!      8     4  version (1)
//!     12     4  h (rows)
//!     16     4  w (columns)
//!     20     4  channels (5: T1, T1ce, T2, FLAIR, annotation)
//!     24     8  count (number of slice records)
//!     32     4  subjects (entries in the subject table)
//!     36     8  subject table length in bytes
//!     44     4  CRC-32 of bytes 0..44
//!     48        count records, each: subject index u32, slice index u32,
//!               channels·h·w bytes (u8, channel-major, row-major), CRC-32 of the record's bytes
//!      …        subject table: per subject a u16 length and that many UTF-8 bytes
//!      …     4  CRC-32 of the subject table
//! ```
//!
//! Records have a fixed size, so a reader can fetch any slice directly ([`StoreReader::get`]) and
//! the whole layout is checked against the file length before anything is allocated. Writing goes
//! through a temporary file renamed into place ([`StoreWriter`]), so a store on disk is always
//! complete. Every damaged byte is found by a checksum and reported as [`Error::Format`].

use std::fs::File;
use std::io::{BufReader, Cursor, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::data::checksum::{Crc32, crc32};
use crate::data::slices::{CHANNELS, Slice};
use crate::io::atomic::AtomicFile;
use crate::{Error, Result};

/// First eight bytes of every store.
pub const MAGIC: [u8; 8] = *b"BSSTORE\0";
/// Format version written by this code.
pub const VERSION: u32 = 1;
const HEADER_LEN: u64 = 48;
/// Largest accepted `channels · h · w` of one slice (2^26 bytes).
pub const MAX_SLICE_BYTES: u64 = 1 << 26;

/// Slices in memory, all of one size, each with its subject id and axial index.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SliceStore {
    /// Rows of every slice.
    pub h: usize,
    /// Columns of every slice.
    pub w: usize,
    /// The slices (each `CHANNELS × h × w`).
    pub slices: Vec<Slice>,
}

impl SliceStore {
    /// An empty store for `h × w` slices.
    pub fn new(h: usize, w: usize) -> Self {
        SliceStore {
            h,
            w,
            slices: Vec::new(),
        }
    }

    /// Subject ids in order of first appearance.
    pub fn subjects(&self) -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for s in &self.slices {
            if seen.insert(s.subject.as_str()) {
                out.push(s.subject.clone());
            }
        }
        out
    }

    /// Slices whose subject is in `subjects`, in store order (cloned).
    pub fn select_subjects(&self, subjects: &[String]) -> SliceStore {
        let set: std::collections::HashSet<&str> = subjects.iter().map(|s| s.as_str()).collect();
        SliceStore {
            h: self.h,
            w: self.w,
            slices: self
                .slices
                .iter()
                .filter(|s| set.contains(s.subject.as_str()))
                .cloned()
                .collect(),
        }
    }

    /// Number of slices.
    pub fn len(&self) -> usize {
        self.slices.len()
    }

    /// Whether the store holds no slice.
    pub fn is_empty(&self) -> bool {
        self.slices.is_empty()
    }
}

/// Writes a store slice by slice (constant memory), atomically: nothing appears at the
/// destination until [`StoreWriter::finish`] succeeds.
#[derive(Debug)]
pub struct StoreWriter {
    file: AtomicFile,
    h: usize,
    w: usize,
    count: u64,
    subjects: Vec<String>,
    index: std::collections::HashMap<String, u32>,
    buf: Vec<u8>,
}

impl StoreWriter {
    /// Start a store of `h × w` slices at `path`.
    pub fn create(path: impl AsRef<Path>, h: usize, w: usize) -> Result<Self> {
        let path = path.as_ref();
        let bytes = (CHANNELS * h * w) as u64;
        if h == 0 || w == 0 || bytes > MAX_SLICE_BYTES || h > u32::MAX as usize {
            return Err(Error::invalid(
                "store",
                format!("slice size {h}×{w} is out of range"),
            ));
        }
        let mut file = AtomicFile::create(path)?;
        file.write_all(&[0u8; HEADER_LEN as usize])?;
        Ok(StoreWriter {
            file,
            h,
            w,
            count: 0,
            subjects: Vec::new(),
            index: Default::default(),
            buf: Vec::new(),
        })
    }

    /// Append one slice (must be `h × w` with five channels).
    pub fn push(&mut self, s: &Slice) -> Result<()> {
        if s.h != self.h || s.w != self.w || s.data.len() != CHANNELS * self.h * self.w {
            return Err(Error::invalid(
                "store",
                format!(
                    "slice {}#{} is {}×{} ({} bytes) but the store holds {}×{} slices",
                    s.subject,
                    s.index,
                    s.h,
                    s.w,
                    s.data.len(),
                    self.h,
                    self.w
                ),
            ));
        }
        if s.subject.len() > u16::MAX as usize {
            return Err(Error::invalid(
                "store",
                "subject id longer than 65535 bytes",
            ));
        }
        let next = self.subjects.len() as u32;
        let sid = *self.index.entry(s.subject.clone()).or_insert(next);
        if sid == next {
            self.subjects.push(s.subject.clone());
        }
        self.buf.clear();
        self.buf.extend_from_slice(&sid.to_le_bytes());
        self.buf.extend_from_slice(&s.index.to_le_bytes());
        self.buf.extend_from_slice(&s.data);
        let c = crc32(&self.buf);
        self.buf.extend_from_slice(&c.to_le_bytes());
        let buf = std::mem::take(&mut self.buf);
        let r = self.file.write_all(&buf);
        self.buf = buf;
        r?;
        self.count += 1;
        Ok(())
    }

    /// Number of slices pushed so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Write the subject table and header, sync, and rename into place.
    pub fn finish(mut self) -> Result<()> {
        let mut table = Vec::new();
        for s in &self.subjects {
            table.extend_from_slice(&(s.len() as u16).to_le_bytes());
            table.extend_from_slice(s.as_bytes());
        }
        let tcrc = crc32(&table);
        self.file.write_all(&table)?;
        self.file.write_all(&tcrc.to_le_bytes())?;
        let mut head = Vec::with_capacity(HEADER_LEN as usize);
        head.extend_from_slice(&MAGIC);
        head.extend_from_slice(&VERSION.to_le_bytes());
        head.extend_from_slice(&(self.h as u32).to_le_bytes());
        head.extend_from_slice(&(self.w as u32).to_le_bytes());
        head.extend_from_slice(&(CHANNELS as u32).to_le_bytes());
        head.extend_from_slice(&self.count.to_le_bytes());
        head.extend_from_slice(&(self.subjects.len() as u32).to_le_bytes());
        head.extend_from_slice(&(table.len() as u64).to_le_bytes());
        let hcrc = crc32(&head);
        head.extend_from_slice(&hcrc.to_le_bytes());
        self.file.patch(0, &head)?;
        self.file.commit()
    }
}

/// Write a whole in-memory store atomically.
pub fn write_store(path: impl AsRef<Path>, store: &SliceStore) -> Result<()> {
    let mut w = StoreWriter::create(path, store.h, store.w)?;
    for s in &store.slices {
        w.push(s)?;
    }
    w.finish()
}

/// Random access to a store whose header, length and subject table have been verified.
/// Each record's checksum is verified when it is read.
#[derive(Debug)]
pub struct StoreReader<R> {
    src: R,
    path: PathBuf,
    h: usize,
    w: usize,
    count: u64,
    subjects: Vec<String>,
}

impl StoreReader<BufReader<File>> {
    /// Open a store file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let f = File::open(path).map_err(|e| Error::io(path, e))?;
        StoreReader::new(BufReader::new(f), path)
    }
}

impl<'a> StoreReader<Cursor<&'a [u8]>> {
    /// A store held in memory; `name` is used in errors.
    pub fn from_bytes(bytes: &'a [u8], name: &Path) -> Result<Self> {
        StoreReader::new(Cursor::new(bytes), name)
    }
}

impl<R: Read + Seek> StoreReader<R> {
    /// Verify the header and subject table of a store read from `src`.
    pub fn new(mut src: R, path: &Path) -> Result<Self> {
        let fmt = |msg: String| Error::format(path, msg);
        let io = |e: std::io::Error| Error::io(path, e);
        let len = src.seek(SeekFrom::End(0)).map_err(io)?;
        src.seek(SeekFrom::Start(0)).map_err(io)?;
        if len < HEADER_LEN {
            return Err(fmt(format!(
                "not a slice store: {len} bytes, shorter than the {HEADER_LEN}-byte header"
            )));
        }
        let mut head = [0u8; HEADER_LEN as usize];
        src.read_exact(&mut head).map_err(io)?;
        if head[0..8] != MAGIC {
            return Err(fmt("not a slice store (bad magic bytes)".into()));
        }
        let u32_at = |o: usize| u32::from_le_bytes(head[o..o + 4].try_into().expect("4 bytes"));
        let u64_at = |o: usize| u64::from_le_bytes(head[o..o + 8].try_into().expect("8 bytes"));
        let version = u32_at(8);
        if version != VERSION {
            return Err(fmt(format!(
                "slice store version {version} is not supported (this build reads version {VERSION})"
            )));
        }
        if crc32(&head[..44]) != u32_at(44) {
            return Err(fmt("header checksum mismatch (damaged store)".into()));
        }
        let (h, w, channels) = (u32_at(12) as u64, u32_at(16) as u64, u32_at(20) as u64);
        let count = u64_at(24);
        let nsub = u32_at(32) as u64;
        let table_len = u64_at(36);
        if channels != CHANNELS as u64 {
            return Err(fmt(format!(
                "store holds {channels} channels per slice, expected {CHANNELS}"
            )));
        }
        let slice_bytes = channels * h * w;
        if h == 0 || w == 0 || slice_bytes > MAX_SLICE_BYTES {
            return Err(fmt(format!("slice size {h}×{w} is out of range")));
        }
        let rec = 8 + slice_bytes + 4;
        let expected = count
            .checked_mul(rec)
            .and_then(|r| r.checked_add(HEADER_LEN))
            .and_then(|r| r.checked_add(table_len))
            .and_then(|r| r.checked_add(4));
        if expected != Some(len) {
            return Err(fmt(format!(
                "file is {len} bytes but its header describes {} (truncated or damaged store)",
                expected.map_or("an impossible size".to_string(), |e| format!("{e} bytes"))
            )));
        }
        if nsub > table_len / 2 || (count > 0 && nsub == 0) {
            return Err(fmt(format!(
                "subject table of {table_len} bytes cannot hold {nsub} subjects"
            )));
        }
        src.seek(SeekFrom::Start(HEADER_LEN + count * rec))
            .map_err(io)?;
        // table_len < len, which is the size of data that exists: safe to allocate.
        let mut table = vec![0u8; table_len as usize + 4];
        src.read_exact(&mut table).map_err(io)?;
        let tcrc = u32::from_le_bytes(table[table_len as usize..].try_into().expect("4 bytes"));
        let table = &table[..table_len as usize];
        if crc32(table) != tcrc {
            return Err(fmt("subject table checksum mismatch (damaged store)".into()));
        }
        let mut subjects = Vec::with_capacity(nsub as usize);
        let mut p = 0usize;
        for i in 0..nsub {
            if p + 2 > table.len() {
                return Err(fmt(format!("subject table ends before subject {i}")));
            }
            let n = u16::from_le_bytes([table[p], table[p + 1]]) as usize;
            p += 2;
            let Some(name) = table.get(p..p + n) else {
                return Err(fmt(format!("subject table ends inside subject {i}")));
            };
            let name =
                std::str::from_utf8(name).map_err(|_| fmt(format!("subject {i} is not UTF-8")))?;
            subjects.push(name.to_string());
            p += n;
        }
        if p != table.len() {
            return Err(fmt("subject table has trailing bytes".into()));
        }
        Ok(StoreReader {
            src,
            path: path.to_path_buf(),
            h: h as usize,
            w: w as usize,
            count,
            subjects,
        })
    }

    /// Rows of each slice.
    pub fn h(&self) -> usize {
        self.h
    }
    /// Columns of each slice.
    pub fn w(&self) -> usize {
        self.w
    }
    /// Number of slices.
    pub fn len(&self) -> usize {
        self.count as usize
    }
    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
    /// The subject table (ids in order of first appearance).
    pub fn subjects(&self) -> &[String] {
        &self.subjects
    }

    fn record_len(&self) -> u64 {
        8 + (CHANNELS * self.h * self.w) as u64 + 4
    }

    /// Read and verify slice `i`.
    pub fn get(&mut self, i: usize) -> Result<Slice> {
        if i as u64 >= self.count {
            return Err(Error::invalid(
                "store",
                format!("slice {i} out of range (store holds {})", self.count),
            ));
        }
        let rec = self.record_len();
        let path = self.path.clone();
        let io = |e| Error::io(&path, e);
        self.src
            .seek(SeekFrom::Start(HEADER_LEN + i as u64 * rec))
            .map_err(io)?;
        let mut buf = vec![0u8; rec as usize];
        self.src.read_exact(&mut buf).map_err(io)?;
        self.decode(i, buf)
    }

    fn decode(&self, i: usize, mut buf: Vec<u8>) -> Result<Slice> {
        let n = buf.len();
        let stored = u32::from_le_bytes(buf[n - 4..].try_into().expect("4 bytes"));
        if crc32(&buf[..n - 4]) != stored {
            return Err(Error::format(
                &self.path,
                format!("slice record {i} checksum mismatch (damaged store)"),
            ));
        }
        let sid = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
        let index = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
        let Some(subject) = self.subjects.get(sid) else {
            return Err(Error::format(
                &self.path,
                format!(
                    "slice record {i} names subject {sid}, the table has {}",
                    self.subjects.len()
                ),
            ));
        };
        buf.truncate(n - 4);
        buf.drain(..8);
        Ok(Slice {
            subject: subject.clone(),
            index,
            h: self.h,
            w: self.w,
            data: buf,
        })
    }

    /// Read and verify every slice, in order.
    pub fn read_all(&mut self) -> Result<SliceStore> {
        let path = self.path.clone();
        let io = |e| Error::io(&path, e);
        self.src.seek(SeekFrom::Start(HEADER_LEN)).map_err(io)?;
        let rec = self.record_len() as usize;
        // count · rec fits in the file (checked in `new`), so this allocation is bounded by it.
        let mut slices = Vec::with_capacity(self.count as usize);
        for i in 0..self.count as usize {
            let mut buf = vec![0u8; rec];
            self.src.read_exact(&mut buf).map_err(io)?;
            slices.push(self.decode(i, buf)?);
        }
        Ok(SliceStore {
            h: self.h,
            w: self.w,
            slices,
        })
    }
}

/// Read a whole store file, verifying every checksum.
pub fn read_store(path: impl AsRef<Path>) -> Result<SliceStore> {
    StoreReader::open(path)?.read_all()
}

/// Read a whole store from its bytes; `name` is used in errors.
pub fn read_store_bytes(bytes: &[u8], name: &Path) -> Result<SliceStore> {
    StoreReader::from_bytes(bytes, name)?.read_all()
}

/// Update a running CRC (kept public for tools that stream records themselves).
pub fn record_crc(subject: u32, index: u32, data: &[u8]) -> u32 {
    let mut c = Crc32::new();
    c.update(&subject.to_le_bytes());
    c.update(&index.to_le_bytes());
    c.update(data);
    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> SliceStore {
        let mut st = SliceStore::new(3, 2);
        for (k, subj) in ["a", "b", "a"].iter().enumerate() {
            let mut s = Slice::zeros(*subj, k as u32 + 10, 3, 2);
            for (i, v) in s.data.iter_mut().enumerate() {
                *v = (i * 7 + k) as u8;
            }
            st.slices.push(s);
        }
        st
    }

    #[test]
    fn round_trip_in_memory_file() {
        let dir = std::env::temp_dir().join(format!("bs-store-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t.store");
        let st = tiny();
        write_store(&p, &st).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(read_store_bytes(&bytes, &p).unwrap(), st);
        let mut r = StoreReader::open(&p).unwrap();
        assert_eq!(r.subjects(), ["a", "b"]);
        assert_eq!(r.get(1).unwrap(), st.slices[1]);
        assert_eq!(st.subjects(), vec!["a", "b"]);
        // The record CRC helper agrees with the file.
        let rec = 8 + 30 + 4;
        let first = &bytes[48..48 + rec];
        assert_eq!(
            record_crc(0, 10, &first[8..38]).to_le_bytes(),
            first[38..42]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
