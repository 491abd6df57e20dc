//! A PoS validator's consensus write-ahead log: what Malachite's core asks to persist
//! (`Effect::WalAppend`: received votes and proposals, elapsed timeouts, proposed values)
//! and a record of every vote this validator signed, for the height in progress.
//!
//! One append-only file, `consensus.wal` in the node's data directory. A record is framed
//! as `len: u32 LE | check: u32 LE | payload` with `check` the first four bytes of the
//! payload's sha256, and the payload the positional msgpack of a [`WalRecord`]. Every
//! append is written and `fsync`ed before it returns, so a record the engine was told is
//! stored survives `kill -9`. A torn or corrupt tail (the crash hit mid-write) is detected
//! on open and cut off; the records before it are kept. Starting a new height replaces the
//! file (write a fresh one, `fsync`, rename, `fsync` the directory), so the log holds one
//! height and never grows past it.
//!
//! The log never decides anything: [`crate::pos::PosEngine`] replays it into Malachite's
//! core after a restart, and refuses to sign a vote that conflicts with a recorded one.

use crate::block::Block;
use crate::pos::VoteWire;
use crate::tx::encode_canonical;
use isthmus_core::{Hash32, HashAlgo, NodeId, Signature};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The log's file name in the data directory.
pub const FILE: &str = "consensus.wal";
/// A record longer than this is corruption, not data (a block is bounded well below).
const MAX_RECORD: usize = 128 * 1024 * 1024;
const FRAME: usize = 8;

/// Why the log could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// The file system refused; retrying may help (a full disk freed, a permission fixed).
    #[error("consensus wal {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// One thing the log remembers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WalRecord {
    /// The height the log is for (always its first record).
    Height(u64),
    /// A vote the core took in (ours included), as signed.
    Vote {
        vote: VoteWire,
        signature: Signature,
    },
    /// A signed proposal the core took in, with its block.
    Proposal {
        height: u64,
        round: i64,
        pol_round: i64,
        proposer: NodeId,
        hash: Hash32,
        block: Block,
        signature: Signature,
    },
    /// A propose (0), prevote (1) or precommit (2) timeout that elapsed.
    Timeout { kind: u8, round: i64 },
    /// A full proposed value (ours, or a received proposal's).
    ProposedValue {
        height: u64,
        round: i64,
        valid_round: i64,
        proposer: NodeId,
        hash: Hash32,
        block: Block,
        valid: bool,
    },
    /// A vote this validator signed: it signs no other for this round and type.
    Signed {
        round: i64,
        precommit: bool,
        value: Option<Hash32>,
    },
}

/// What a log held when opened: its height and that height's records (`None`: nothing
/// usable).
pub type Recovered = Option<(u64, Vec<WalRecord>)>;

/// The open log.
pub struct ConsensusWal {
    path: PathBuf,
    file: File,
}

fn checksum(payload: &[u8]) -> u32 {
    let d = HashAlgo::Sha256.digest(payload);
    u32::from_le_bytes([d.0[0], d.0[1], d.0[2], d.0[3]])
}

fn frame(rec: &WalRecord) -> Vec<u8> {
    let payload = encode_canonical(rec);
    let mut out = Vec::with_capacity(FRAME + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&checksum(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// The records of `bytes` and the length of its intact prefix (where a torn or corrupt
/// record, if any, begins).
pub fn decode_records(bytes: &[u8]) -> (Vec<WalRecord>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(head) = bytes.get(at..at + FRAME) {
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let check = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len > MAX_RECORD {
            break;
        }
        let Some(payload) = bytes.get(at + FRAME..at + FRAME + len) else {
            break;
        };
        if checksum(payload) != check {
            break;
        }
        let Ok(rec) = rmp_serde::from_slice::<WalRecord>(payload) else {
            break;
        };
        out.push(rec);
        at += FRAME + len;
    }
    (out, at)
}

impl ConsensusWal {
    /// Open (or create) the log in `dir`. Returns it and the height it holds with that
    /// height's records (`None`: empty). A damaged tail is truncated and logged.
    pub fn open(dir: &Path) -> Result<(ConsensusWal, Recovered), WalError> {
        let path = dir.join(FILE);
        let io = |source| WalError::Io {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(e)),
        };
        let (records, intact) = decode_records(&bytes);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        if intact < bytes.len() {
            tracing::warn!(
                path = %path.display(),
                kept = records.len(),
                cut_bytes = bytes.len() - intact,
                "consensus wal ends in a torn or corrupt record; truncating it"
            );
            file.set_len(intact as u64).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        let wal = ConsensusWal { path, file };
        let mut it = records.into_iter();
        let loaded = match it.next() {
            Some(WalRecord::Height(h)) => Some((h, it.collect())),
            // A log without its height record is from no height we can use.
            _ => None,
        };
        Ok((wal, loaded))
    }

    fn io(&self, source: std::io::Error) -> WalError {
        WalError::Io {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// Start the log afresh for `height`, durably, dropping the previous height's records.
    pub fn reset(&mut self, height: u64) -> Result<(), WalError> {
        let tmp = self.path.with_extension("wal.tmp");
        let write = || -> std::io::Result<File> {
            let mut f = File::create(&tmp)?;
            f.write_all(&frame(&WalRecord::Height(height)))?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            if let Some(dir) = self.path.parent() {
                File::open(dir)?.sync_all()?;
            }
            OpenOptions::new().append(true).open(&self.path)
        };
        self.file = write().map_err(|e| self.io(e))?;
        Ok(())
    }

    /// Append one record and `fsync` it before returning.
    pub fn append(&mut self, rec: &WalRecord) -> Result<(), WalError> {
        let bytes = frame(rec);
        self.file.write_all(&bytes).map_err(|e| self.io(e))?;
        self.file.sync_data().map_err(|e| self.io(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(round: i64) -> WalRecord {
        WalRecord::Signed {
            round,
            precommit: round % 2 == 0,
            value: Some(Hash32([round as u8; 32])),
        }
    }

    #[test]
    fn records_survive_reopen_and_reset_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, loaded) = ConsensusWal::open(dir.path()).unwrap();
        assert_eq!(loaded, None);
        w.reset(7).unwrap();
        for r in 0..3 {
            w.append(&signed(r)).unwrap();
        }
        drop(w);
        let (mut w, loaded) = ConsensusWal::open(dir.path()).unwrap();
        assert_eq!(loaded, Some((7, (0..3).map(signed).collect())));
        w.reset(8).unwrap();
        w.append(&signed(5)).unwrap();
        let (_, loaded) = ConsensusWal::open(dir.path()).unwrap();
        assert_eq!(loaded, Some((8, vec![signed(5)])));
    }

    #[test]
    fn a_torn_or_corrupt_tail_is_cut_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let (mut w, _) = ConsensusWal::open(dir.path()).unwrap();
        w.reset(3).unwrap();
        w.append(&signed(0)).unwrap();
        w.append(&signed(1)).unwrap();
        drop(w);
        let whole = std::fs::read(&path).unwrap();
        let last = frame(&signed(1)).len();
        // every cut inside the last record (a torn write) keeps the first two records
        for cut in 1..last {
            std::fs::write(&path, &whole[..whole.len() - cut]).unwrap();
            let (_, loaded) = ConsensusWal::open(dir.path()).unwrap();
            assert_eq!(loaded, Some((3, vec![signed(0)])), "cut {cut}");
            assert_eq!(
                std::fs::metadata(&path).unwrap().len() as usize,
                whole.len() - last,
                "truncated to the intact prefix"
            );
        }
        // a flipped bit in the last record's payload: same outcome
        let mut bad = whole.clone();
        let n = bad.len();
        bad[n - 2] ^= 0x40;
        std::fs::write(&path, &bad).unwrap();
        let (mut w, loaded) = ConsensusWal::open(dir.path()).unwrap();
        assert_eq!(loaded, Some((3, vec![signed(0)])));
        // and appending after the cut continues a readable log
        w.append(&signed(4)).unwrap();
        let (_, loaded) = ConsensusWal::open(dir.path()).unwrap();
        assert_eq!(loaded, Some((3, vec![signed(0), signed(4)])));
        // garbage with a huge length is corruption too, never an allocation
        std::fs::write(&path, [0xff; 64]).unwrap();
        let (_, loaded) = ConsensusWal::open(dir.path()).unwrap();
        assert_eq!(loaded, None);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }
}
