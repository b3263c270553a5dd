//! Where archives go. A [`Destination`] stores whole objects under slash-separated keys, the
//! way an object store does, so that S3 (multipart, object lock) can be added beside
//! [`LocalDirectory`] without touching the archiver.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{ArchiveError, Result};

/// An archive's storage: objects by key (`2026-01/part-0000.parquet`).
pub trait Destination: Send + Sync {
    /// The URL it was opened from, for messages and reports.
    fn url(&self) -> &str;
    /// Stores `bytes` under `key` durably and atomically: a reader sees the whole object or
    /// none (on a filesystem: a temporary name, fsync, rename).
    fn put(&self, key: &str, bytes: &[u8]) -> Result<()>;
    /// The object under `key`; `None` when there is none.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;
    /// The size of the object under `key`; `None` when there is none.
    fn size(&self, key: &str) -> Result<Option<u64>>;
    /// The keys directly under `prefix` (a folder, ending in `/`, or empty for the top), sorted:
    /// objects and, for folders, their name ending in `/`.
    fn list(&self, prefix: &str) -> Result<Vec<String>>;
    /// Removes the object under `key`, if any.
    fn delete(&self, key: &str) -> Result<()>;
}

/// Opens the destination a URL names: `file:///absolute/dir` today. `s3://` is refused with
/// [`ArchiveError::Unsupported`] until it is implemented.
pub fn open(url: &str) -> Result<Box<dyn Destination>> {
    if let Some(path) = url.strip_prefix("file://") {
        let path = percent_encoding::percent_decode_str(path)
            .decode_utf8()
            .map_err(|_| unsupported(url, "the path is not UTF-8"))?;
        if !path.starts_with('/') {
            return Err(unsupported(
                url,
                "a file URL needs an absolute path: file:///var/archive/audit",
            ));
        }
        return Ok(Box::new(LocalDirectory {
            url: url.to_owned(),
            root: PathBuf::from(path.as_ref()),
        }));
    }
    if url.starts_with("s3://") {
        return Err(unsupported(
            url,
            "S3 is not yet supported by this version; archive to file:///dir and copy it to the bucket",
        ));
    }
    Err(unsupported(url, "expected file:///absolute/dir"))
}

fn unsupported(url: &str, reason: &str) -> crate::Error {
    ArchiveError::Unsupported {
        url: url.to_owned(),
        reason: reason.to_owned(),
    }
    .into()
}

/// A directory of the local filesystem (or a mounted one).
pub struct LocalDirectory {
    url: String,
    root: PathBuf,
}

impl LocalDirectory {
    fn path(&self, key: &str) -> Result<PathBuf> {
        // Keys come from the archiver and manifests: refuse any that would leave the root.
        if key.is_empty()
            || key.starts_with('/')
            || key
                .split('/')
                .any(|part| part.is_empty() || part == "." || part == "..")
        {
            return Err(ArchiveError::Invalid {
                path: key.to_owned(),
                reason: "not a key of this archive".into(),
            }
            .into());
        }
        Ok(self.root.join(key))
    }
}

fn storage(path: &Path, source: std::io::Error) -> crate::Error {
    ArchiveError::Storage {
        path: path.display().to_string(),
        source,
    }
    .into()
}

impl Destination for LocalDirectory {
    fn url(&self) -> &str {
        &self.url
    }

    fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let path = self.path(key)?;
        let dir = path.parent().expect("a key has a folder");
        fs::create_dir_all(dir).map_err(|e| storage(dir, e))?;
        let temp = path.with_extension("tmp");
        let mut file = fs::File::create(&temp).map_err(|e| storage(&temp, e))?;
        file.write_all(bytes).map_err(|e| storage(&temp, e))?;
        file.sync_all().map_err(|e| storage(&temp, e))?;
        drop(file);
        fs::rename(&temp, &path).map_err(|e| storage(&path, e))?;
        // The rename itself is durable only once its folder is synced.
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| storage(dir, e))
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path(key)?;
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(storage(&path, e)),
        }
    }

    fn size(&self, key: &str) -> Result<Option<u64>> {
        let path = self.path(key)?;
        match fs::metadata(&path) {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(storage(&path, e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let dir = if prefix.is_empty() {
            self.root.clone()
        } else {
            self.path(prefix.trim_end_matches('/'))?
        };
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(storage(&dir, e)),
        };
        let mut keys = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| storage(&dir, e))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let is_dir = entry.file_type().map_err(|e| storage(&dir, e))?.is_dir();
            keys.push(format!("{prefix}{name}{}", if is_dir { "/" } else { "" }));
        }
        keys.sort();
        Ok(keys)
    }

    fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(storage(&path, e)),
        }
    }
}
