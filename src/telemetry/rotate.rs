//! Log files that cannot fill the disk.
//!
//! Each file is named for when it was started and the level the gateway logs at
//! (`mcp-gateway-20261122T101500Z-info.log`), so a directory listing reads as a history. A file
//! that reaches its size limit is closed and a new one started; the oldest files beyond the
//! cap are deleted, counting those left by earlier runs. Rotation is by size rather than by
//! time (as `tracing-appender`'s rolling files do) because size is what fills a disk.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

const PREFIX: &str = "mcp-gateway-";
const SUFFIX: &str = ".log";

pub struct RotatingFile {
    dir: PathBuf,
    level: String,
    max_bytes: u64,
    max_files: usize,
    file: File,
    written: u64,
}

// === impl RotatingFile ===

impl RotatingFile {
    /// Start a file in `dir` (created if missing), pruning old ones down to `max_files`.
    pub fn open(dir: &Path, level: &str, max_bytes: u64, max_files: usize) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let level: String = level
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_ascii_lowercase();
        let (file, _) = create(dir, &level)?;
        let me = Self {
            dir: dir.to_owned(),
            level,
            max_bytes: max_bytes.max(1),
            max_files: max_files.max(1),
            file,
            written: 0,
        };
        me.prune();
        Ok(me)
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        let (file, _) = create(&self.dir, &self.level)?;
        self.file = file;
        self.written = 0;
        self.prune();
        Ok(())
    }

    /// Delete the oldest log files until at most `max_files` remain (the current one included).
    fn prune(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        let mut logs: Vec<(SystemTime, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.starts_with(PREFIX) && name.ends_with(SUFFIX)
            })
            .filter_map(|e| {
                let modified = e.metadata().and_then(|m| m.modified()).ok()?;
                Some((modified, e.path()))
            })
            .collect();
        if logs.len() <= self.max_files {
            return;
        }
        logs.sort();
        let excess = logs.len() - self.max_files;
        for (_, path) in logs.into_iter().take(excess) {
            // Best effort: a file someone else removed or locked is not worth failing over.
            let _ = fs::remove_file(path);
        }
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written > 0 && self.written + buf.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        let n = self.file.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// A new file named for now; a second file in the same second gets a sequence number.
fn create(dir: &Path, level: &str) -> io::Result<(File, PathBuf)> {
    let stamp = timestamp(SystemTime::now());
    for seq in 0u32.. {
        let name = match seq {
            0 => format!("{PREFIX}{stamp}-{level}{SUFFIX}"),
            n => format!("{PREFIX}{stamp}-{level}-{n}{SUFFIX}"),
        };
        let path = dir.join(name);
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(f) => return Ok((f, path)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("no free log file name"))
}

/// `20261122T101500Z`: ISO 8601 basic format, UTC, to the second.
pub fn timestamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Year, month, day of a day count since 1970-01-01 (proleptic Gregorian calendar).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_utc_basic_format() {
        let at = |s: u64| timestamp(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "19700101T000000Z");
        assert_eq!(at(1_795_343_700), "20261122T103500Z");
        assert_eq!(at(951_782_400), "20000229T000000Z");
        assert_eq!(at(4_107_542_399), "21000228T235959Z");
    }

    fn logs_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn files_rotate_by_size_and_old_ones_are_pruned() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("unrelated.txt"), "keep me").expect("write");
        // A file from an earlier run, older than anything written now.
        let old = dir.path().join("mcp-gateway-19700101T000000Z-info.log");
        std::fs::write(&old, "old run\n").expect("write");
        let past = SystemTime::now() - Duration::from_secs(3600);
        File::options()
            .write(true)
            .open(&old)
            .and_then(|f| f.set_modified(past))
            .expect("age the old file");

        let mut w = RotatingFile::open(dir.path(), "INFO", 100, 3).expect("open");
        let line = [b'x'; 39];
        for i in 0..10 {
            w.write_all(&line).expect("write");
            w.write_all(format!("{i}\n").as_bytes()).expect("write");
        }
        w.flush().expect("flush");

        let names = logs_in(dir.path());
        let logs: Vec<&String> = names.iter().filter(|n| n.ends_with(".log")).collect();
        assert_eq!(logs.len(), 3, "capped at 3 files: {names:?}");
        assert!(
            names.contains(&"unrelated.txt".to_owned()),
            "other files stay"
        );
        assert!(
            !old.exists(),
            "the earlier run's file was the oldest: pruned"
        );
        for n in &logs {
            assert!(
                n.starts_with("mcp-gateway-") && n.contains("T") && n.contains("Z-info"),
                "named for start time and level: {n}"
            );
            let size = fs::metadata(dir.path().join(n)).expect("meta").len();
            assert!(size <= 100, "{n} is {size} bytes, over the limit");
        }
        let newest: String = logs
            .iter()
            .map(|n| fs::read_to_string(dir.path().join(n)).expect("read"))
            .collect();
        assert!(newest.contains("x9\n"), "the last line is kept: {newest}");
        assert!(!newest.contains("x0\n"), "the first lines rotated away");
    }
}
