//! Where archives go. A [`Destination`] stores whole objects under slash-separated keys, the
//! way an object store does: [`LocalDirectory`] for `file://`, [`S3`] for `s3://` (and the
//! S3-compatible stores: MinIO, R2, GCS interoperability).

use std::fs;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use crate::error::{ArchiveError, Result};

mod s3;
#[cfg(feature = "testing")]
pub(crate) use s3::https_client;
pub use s3::{LockMode, ObjectLock, S3};

/// What a [`Destination`] method returns: the trait is used as `dyn`, so its futures are boxed.
pub type Pending<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// An archive's storage: objects by key (`2026-01/part-0000.parquet`).
pub trait Destination: Send + Sync {
    /// The URL it was opened from, for messages and reports.
    fn url(&self) -> &str;
    /// Stores `bytes` under `key` durably and atomically: a reader sees the whole object or
    /// none (on a filesystem: a temporary name, fsync, rename; on S3: one PUT, or a multipart
    /// upload that only exists once completed).
    fn put<'a>(&'a self, key: &'a str, bytes: &'a [u8]) -> Pending<'a, ()>;
    /// The object under `key`; `None` when there is none.
    fn get<'a>(&'a self, key: &'a str) -> Pending<'a, Option<Vec<u8>>>;
    /// `len` bytes of the object under `key` from byte `start` (a range read: how history reads
    /// a Parquet file's footer, filters and matching row groups, not the whole file); `None`
    /// when there is no such object. A range past its end is an error.
    fn get_range<'a>(&'a self, key: &'a str, start: u64, len: u64) -> Pending<'a, Option<Vec<u8>>>;
    /// The size of the object under `key`; `None` when there is none.
    fn size<'a>(&'a self, key: &'a str) -> Pending<'a, Option<u64>>;
    /// The keys directly under `prefix` (a folder, ending in `/`, or empty for the top), sorted:
    /// objects and, for folders, their name ending in `/`.
    fn list<'a>(&'a self, prefix: &'a str) -> Pending<'a, Vec<String>>;
    /// Every version of the object under `key` and every deletion of it, oldest first, where the
    /// store keeps versions (S3 buckets with versioning, which Object Lock turns on); empty where
    /// it keeps none (a directory, an unversioned bucket).
    fn versions<'a>(&'a self, key: &'a str) -> Pending<'a, Vec<ObjectVersion>>;
    /// Removes the object under `key`, if any.
    fn delete<'a>(&'a self, key: &'a str) -> Pending<'a, ()>;
    /// Discards writes an interrupted run left unfinished under `prefix` (S3: its multipart
    /// uploads, which are invisible to `list` yet billed until aborted).
    fn abandon<'a>(&'a self, prefix: &'a str) -> Pending<'a, ()>;
}

/// One version of an object in a versioned store, or a deletion (a delete marker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion {
    pub version_id: String,
    /// When it was written, as the store records it (S3: to the second).
    pub written_at: chrono::DateTime<chrono::Utc>,
    pub deleted: bool,
}

/// Opens the destination a URL names: `file:///absolute/dir`, or `s3://bucket/prefix` (see
/// [`S3::open`] for its query options and where credentials come from). `lock`, S3 only,
/// writes every object with that retention.
/// Errors: [`ArchiveError::Unsupported`] (another scheme, a relative path, a lock asked of a
/// file URL), [`ArchiveError::LockUnavailable`], [`ArchiveError::Storage`].
pub async fn open(url: &str, lock: Option<ObjectLock>) -> Result<Box<dyn Destination>> {
    if let Some(path) = url.strip_prefix("file://") {
        if lock.is_some() {
            return Err(unsupported(
                url,
                "object lock needs an s3:// destination whose bucket has S3 Object Lock",
            ));
        }
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
        return Ok(Box::new(S3::open(url, lock).await?));
    }
    Err(unsupported(
        url,
        "expected file:///absolute/dir or s3://bucket/prefix",
    ))
}

pub(crate) fn unsupported(url: &str, reason: &str) -> crate::Error {
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
        check_key(key)?;
        Ok(self.root.join(key))
    }
}

/// Keys come from the archiver and from manifests: refuse any that would leave the root.
pub(crate) fn check_key(key: &str) -> Result<()> {
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
    Ok(())
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

    fn put<'a>(&'a self, key: &'a str, bytes: &'a [u8]) -> Pending<'a, ()> {
        Box::pin(async move { self.put_now(key, bytes) })
    }

    fn get<'a>(&'a self, key: &'a str) -> Pending<'a, Option<Vec<u8>>> {
        Box::pin(async move { self.get_now(key) })
    }

    fn get_range<'a>(&'a self, key: &'a str, start: u64, len: u64) -> Pending<'a, Option<Vec<u8>>> {
        Box::pin(async move { self.get_range_now(key, start, len) })
    }

    fn size<'a>(&'a self, key: &'a str) -> Pending<'a, Option<u64>> {
        Box::pin(async move { self.size_now(key) })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> Pending<'a, Vec<String>> {
        Box::pin(async move { self.list_now(prefix) })
    }

    fn versions<'a>(&'a self, _key: &'a str) -> Pending<'a, Vec<ObjectVersion>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn delete<'a>(&'a self, key: &'a str) -> Pending<'a, ()> {
        Box::pin(async move { self.delete_now(key) })
    }

    fn abandon<'a>(&'a self, _prefix: &'a str) -> Pending<'a, ()> {
        // A temporary file is an object to `list`: the archiver deletes it with the rest.
        Box::pin(async { Ok(()) })
    }
}

// Plain blocking calls: archives are written and read a file at a time, and a local disk
// answers fast enough not to need a blocking pool.
impl LocalDirectory {
    fn put_now(&self, key: &str, bytes: &[u8]) -> Result<()> {
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

    fn get_now(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path(key)?;
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(storage(&path, e)),
        }
    }

    fn get_range_now(&self, key: &str, start: u64, len: u64) -> Result<Option<Vec<u8>>> {
        use std::io::{Read, Seek, SeekFrom};
        let path = self.path(key)?;
        let mut file = match fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(storage(&path, e)),
        };
        // The range is the caller's (a Parquet footer's offsets): checked against the file
        // before anything is allocated for it.
        let size = file.metadata().map_err(|e| storage(&path, e))?.len();
        if start.checked_add(len).is_none_or(|end| end > size) {
            let past = format!("bytes {start}..+{len} are past its end ({size} bytes)");
            return Err(storage(&path, std::io::Error::other(past)));
        }
        let mut bytes = vec![0; len as usize];
        file.seek(SeekFrom::Start(start))
            .and_then(|_| file.read_exact(&mut bytes))
            .map_err(|e| storage(&path, e))?;
        Ok(Some(bytes))
    }

    fn size_now(&self, key: &str) -> Result<Option<u64>> {
        let path = self.path(key)?;
        match fs::metadata(&path) {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(storage(&path, e)),
        }
    }

    fn list_now(&self, prefix: &str) -> Result<Vec<String>> {
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

    fn delete_now(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(storage(&path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A range comes from a file's own footer: one past the end is refused before anything is
    /// allocated for it (a length near u64::MAX would otherwise abort the process).
    #[tokio::test]
    async fn a_range_past_the_end_of_a_file_is_a_storage_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"0123456789").unwrap();
        let dest = open(&format!("file://{}", dir.path().display()), None)
            .await
            .unwrap();
        assert_eq!(
            dest.get_range("f", 2, 3).await.unwrap(),
            Some(b"234".to_vec())
        );
        assert_eq!(dest.get_range("f", 0, 10).await.unwrap().unwrap().len(), 10);
        assert_eq!(dest.get_range("absent", 0, 1).await.unwrap(), None);
        for (start, len) in [(5, 6), (11, 0), (1, u64::MAX / 2), (u64::MAX, 2)] {
            let err = dest.get_range("f", start, len).await.unwrap_err();
            assert!(
                matches!(err, crate::Error::Archive(ArchiveError::Storage { .. })),
                "{start}+{len}: {err:?}"
            );
        }
    }
}
