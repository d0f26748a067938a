//! TensorBoard's event files, written so `tensorboard --logdir` (and its `EventAccumulator`)
//! reads them: a file is a sequence of TFRecords (the length as u64 little-endian, its masked
//! CRC32C, the bytes, their masked CRC32C), each an `Event` protocol buffer. The messages below
//! declare the fields embgraft writes, with the field numbers of TensorBoard's own
//! `event.proto`, `summary.proto` and `tensor.proto`; prost encodes them.

use std::io::Write;
use std::path::{Path, PathBuf};

use prost::Message;

use crate::error::{Error, Result};

#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    #[prost(int64, tag = "2")]
    pub step: i64,
    #[prost(oneof = "What", tags = "3, 5, 7")]
    pub what: Option<What>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum What {
    #[prost(string, tag = "3")]
    FileVersion(String),
    #[prost(message, tag = "5")]
    Summary(Summary),
    #[prost(message, tag = "7")]
    SessionLog(SessionLog),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<Value>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Value {
    #[prost(string, tag = "1")]
    pub tag: String,
    #[prost(message, optional, tag = "9")]
    pub metadata: Option<SummaryMetadata>,
    #[prost(oneof = "Kind", tags = "2, 8")]
    pub value: Option<Kind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Kind {
    #[prost(float, tag = "2")]
    SimpleValue(f32),
    #[prost(message, tag = "8")]
    Tensor(TensorProto),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryMetadata {
    #[prost(message, optional, tag = "1")]
    pub plugin_data: Option<PluginData>,
    /// `DataClass`: 2 is a tensor series (what the text plugin reads).
    #[prost(int32, tag = "4")]
    pub data_class: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PluginData {
    #[prost(string, tag = "1")]
    pub plugin_name: String,
    #[prost(bytes = "vec", tag = "2")]
    pub content: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    /// `DataType`: 7 is DT_STRING.
    #[prost(int32, tag = "1")]
    pub dtype: i32,
    /// Absent: a scalar (rank 0).
    #[prost(message, optional, tag = "2")]
    pub tensor_shape: Option<TensorShape>,
    #[prost(bytes = "vec", repeated, tag = "8")]
    pub string_val: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShape {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionLog {
    /// `SessionStatus`: 1 is START.
    #[prost(int32, tag = "1")]
    pub status: i32,
}

const DT_STRING: i32 = 7;
const DATA_CLASS_TENSOR: i32 = 2;
const SESSION_START: i32 = 1;
/// What a reader checks first: version 2 is the one whose readers honour a START marker.
pub const FILE_VERSION: &str = "brain.Event:2";
/// The end of every event file embgraft writes, so it removes only its own.
const SUFFIX: &str = ".embgraft";

/// Seconds since the Unix epoch, as events stamp their wall time.
pub fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Scalars at one step (legacy `simple_value`, read by `EventAccumulator.Scalars` and the
/// scalars dashboard).
pub fn scalars(wall_time: f64, step: usize, values: &[(&str, f64)]) -> Event {
    let value = values
        .iter()
        .map(|&(tag, v)| Value { tag: tag.into(), metadata: None, value: Some(Kind::SimpleValue(v as f32)) })
        .collect();
    Event { wall_time, step: step as i64, what: Some(What::Summary(Summary { value })) }
}

/// Markdown text at one step, for the text dashboard.
pub fn text(wall_time: f64, step: usize, tag: &str, markdown: &str) -> Event {
    let metadata = SummaryMetadata {
        plugin_data: Some(PluginData { plugin_name: "text".into(), content: Vec::new() }),
        data_class: DATA_CLASS_TENSOR,
    };
    let tensor =
        TensorProto { dtype: DT_STRING, tensor_shape: Some(TensorShape {}), string_val: vec![markdown.into()] };
    let value = vec![Value { tag: tag.into(), metadata: Some(metadata), value: Some(Kind::Tensor(tensor)) }];
    Event { wall_time, step: step as i64, what: Some(What::Summary(Summary { value })) }
}

/// A START marker at `step`: readers drop what they hold from that step on, so a series
/// written again (a resumed run) replaces the old one instead of doubling it.
pub fn restart(wall_time: f64, step: usize) -> Event {
    Event { wall_time, step: step as i64, what: Some(What::SessionLog(SessionLog { status: SESSION_START })) }
}

/// TFRecord's checksum: CRC32C, rotated and offset so a record holding its own CRC does not
/// check by accident.
fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One event framed as a TFRecord.
pub fn record(event: &Event) -> Vec<u8> {
    let data = event.encode_to_vec();
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(&data);
    out.extend_from_slice(&masked_crc(&data).to_le_bytes());
    out
}

/// The events of a file's bytes, each record's checksums checked (for tests and `clear`).
pub fn read_records(bytes: &[u8]) -> Result<Vec<Event>> {
    let bad = |why: &str| Error::Input(format!("event file is damaged ({why})"));
    let (mut at, mut out) = (0, Vec::new());
    while at < bytes.len() {
        let head = bytes.get(at..at + 12).ok_or_else(|| bad("a record header is cut short"))?;
        let (len, crc) = head.split_at(8);
        if masked_crc(len).to_le_bytes() != crc {
            return Err(bad("a length's checksum differs"));
        }
        let n = u64::from_le_bytes(len.try_into().map_err(|_| bad("length"))?) as usize;
        let data = bytes.get(at + 12..at + 12 + n).ok_or_else(|| bad("a record is cut short"))?;
        let crc = bytes.get(at + 12 + n..at + 16 + n).ok_or_else(|| bad("a record's checksum is missing"))?;
        if masked_crc(data).to_le_bytes() != crc {
            return Err(bad("a record's checksum differs"));
        }
        out.push(Event::decode(data).map_err(|e| bad(&e.to_string()))?);
        at += 16 + n;
    }
    Ok(out)
}

/// One event file being written: flushed after every append, so a running TensorBoard shows
/// each point as it comes.
pub struct EventFile {
    path: PathBuf,
    file: std::fs::File,
}

impl EventFile {
    /// Starts a new event file in `dir` holding the file-version event and `first`, whole or not
    /// at all (written through a temporary file), then removes the folder's other embgraft event
    /// files: the new file is the whole series.
    pub fn create(dir: &Path, first: &[Event]) -> Result<EventFile> {
        std::fs::create_dir_all(dir).map_err(|e| Error::Output(format!("cannot create {}: {e}", dir.display())))?;
        let t = now();
        let name =
            format!("events.out.tfevents.{:010}.{}{SUFFIX}", t as u64, crate::util::hostname().replace('/', "_"));
        let path = dir.join(name);
        let version = Event { wall_time: t, step: 0, what: Some(What::FileVersion(FILE_VERSION.into())) };
        let bytes: Vec<u8> = std::iter::once(&version).chain(first).flat_map(record).collect();
        crate::util::write_atomic(&path, &bytes)?;
        for old in own_files(dir).into_iter().filter(|p| *p != path) {
            std::fs::remove_file(&old)
                .map_err(|e| Error::Output(format!("cannot remove the old event file {}: {e}", old.display())))?;
        }
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| Error::Output(format!("cannot open {}: {e}", path.display())))?;
        Ok(EventFile { path, file })
    }

    pub fn append(&mut self, events: &[Event]) -> Result<()> {
        let bytes: Vec<u8> = events.iter().flat_map(record).collect();
        let fail = |e: std::io::Error| Error::Output(format!("cannot write {}: {e}", self.path.display()));
        self.file.write_all(&bytes).map_err(fail)?;
        self.file.flush().map_err(fail)
    }
}

/// The event files embgraft wrote in `dir` (not others a user put there).
pub fn own_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            name.starts_with("events.out.tfevents.") && name.ends_with(SUFFIX) && p.is_file()
        })
        .collect()
}

/// `--force`: removes the event files embgraft wrote under `root` (one folder per run) and the
/// folders left empty. Returns how many files went.
pub fn clear(root: &Path) -> Result<usize> {
    let Ok(entries) = std::fs::read_dir(root) else { return Ok(0) };
    let mut removed = 0;
    for dir in entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()) {
        for f in own_files(&dir) {
            std::fs::remove_file(&f)
                .map_err(|e| Error::Output(format!("--force: cannot remove {}: {e}", f.display())))?;
            removed += 1;
        }
        let _ = std::fs::remove_dir(&dir); // only when empty
    }
    let _ = std::fs::remove_dir(root);
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_frame_and_check_what_they_hold() {
        let events = vec![scalars(1.5, 3, &[("loss/test", 2.25)]), text(2.0, 4, "thaw", "wte"), restart(3.0, 0)];
        let bytes: Vec<u8> = events.iter().flat_map(record).collect();
        assert_eq!(read_records(&bytes).unwrap(), events);
        // The masked CRC of nothing is the offset alone; CRC32C's published check value.
        assert_eq!(masked_crc(b""), 0xa282_ead8);
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        let mut broken = bytes.clone();
        broken[14] ^= 1;
        assert!(read_records(&broken).unwrap_err().to_string().contains("checksum"));
        assert!(read_records(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn a_new_file_replaces_only_embgraft_s_own_and_clear_leaves_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("B-0");
        let mut f = EventFile::create(&run, &[scalars(1.0, 1, &[("loss/train", 3.0)])]).unwrap();
        f.append(&[scalars(1.0, 2, &[("loss/train", 2.0)])]).unwrap();
        std::fs::write(run.join("events.out.tfevents.1.other"), b"a user's").unwrap();
        let old = own_files(&run);
        std::fs::rename(&old[0], run.join("events.out.tfevents.0000000001.x.embgraft")).unwrap();
        EventFile::create(&run, &[]).unwrap();
        let mine = own_files(&run);
        assert_eq!(mine.len(), 1);
        let events = read_records(&std::fs::read(&mine[0]).unwrap()).unwrap();
        assert_eq!(events.len(), 1, "only the version event: the old series went");
        assert_eq!(events[0].what, Some(What::FileVersion(FILE_VERSION.into())));
        assert_eq!(clear(dir.path()).unwrap(), 1);
        assert!(run.join("events.out.tfevents.1.other").is_file());
    }
}
