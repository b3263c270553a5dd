//! `s3://bucket/prefix`: Amazon S3 and the stores that speak its API, through the official SDK.

use aws_config::BehaviorVersion;
use aws_sdk_s3::config::Region;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, ObjectLockEnabled, ObjectLockMode,
    ObjectLockRetention, ObjectLockRetentionMode,
};
use aws_sdk_s3::Client;

use super::{check_key, unsupported, Destination, ObjectVersion, Pending};
use crate::error::{ArchiveError, Result};

/// Objects above this size are uploaded in parts of this size (S3's minimum part is 5 MiB).
const PART_SIZE: usize = 8 << 20;

/// Object Lock retention written on every object of an archive run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectLock {
    pub mode: LockMode,
    /// Days from the run; each object is retained until then.
    pub days: u32,
}

/// S3 Object Lock's two modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Nobody, the bucket's owner and the account's root included, can delete or overwrite a
    /// locked version, or shorten its retention, before the date.
    Compliance,
    /// As compliance, except for users granted `s3:BypassGovernanceRetention` who ask to.
    Governance,
}

/// An S3 bucket, or a prefix in one.
pub struct S3 {
    url: String,
    client: Client,
    bucket: String,
    /// Empty, or ends in `/`.
    prefix: String,
    part_size: usize,
    /// Mode and date of retention, fixed at open so that a run's objects share one date.
    retention: Option<(ObjectLockMode, DateTime)>,
}

/// The options a URL's query may hold.
#[derive(Default)]
struct Query {
    endpoint: Option<String>,
    region: Option<String>,
    part_size: Option<usize>,
}

fn parse(url: &str) -> Result<(String, String, Query)> {
    let rest = url.strip_prefix("s3://").expect("an s3 URL");
    let (path, query_text) = rest.split_once('?').unwrap_or((rest, ""));
    let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
    if bucket.is_empty() {
        return Err(unsupported(url, "expected s3://bucket/prefix"));
    }
    let prefix = prefix.trim_matches('/');
    let prefix = if prefix.is_empty() {
        String::new()
    } else {
        check_key(prefix)?;
        format!("{prefix}/")
    };
    let mut query = Query::default();
    for pair in query_text.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_encoding::percent_decode_str(value)
            .decode_utf8()
            .map_err(|_| unsupported(url, "a query value is not UTF-8"))?
            .into_owned();
        match name {
            "endpoint" => query.endpoint = Some(value),
            "region" => query.region = Some(value),
            "part_size" => {
                query.part_size = Some(
                    value
                        .parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| unsupported(url, "part_size is a number of bytes"))?,
                )
            }
            other => {
                return Err(unsupported(
                    url,
                    &format!("unknown option {other:?}: expected endpoint, region or part_size"),
                ))
            }
        }
    }
    Ok((bucket.to_owned(), prefix, query))
}

/// The SDK's HTTP client on this package's TLS stack (rustls with ring).
pub(crate) fn https_client() -> aws_sdk_s3::config::SharedHttpClient {
    use aws_smithy_http_client::tls;
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

impl S3 {
    /// Opens `s3://bucket/prefix[?endpoint=URL&region=NAME&part_size=BYTES]`.
    ///
    /// Credentials and region come from where AWS tools look: `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_PROFILE` and
    /// `~/.aws/config` and `credentials`, web identity, ECS and EC2 instance roles. The endpoint
    /// of an S3-compatible store comes from `?endpoint=`, else `AWS_ENDPOINT_URL_S3` or
    /// `AWS_ENDPOINT_URL` (or a profile's `endpoint_url`); with one, requests are path-style
    /// (`endpoint/bucket/key`, which MinIO, R2 and GCS accept) and the region defaults to
    /// `us-east-1`. With `lock`, checks that the bucket has Object Lock enabled.
    /// Errors: [`ArchiveError::Unsupported`] (a malformed URL, no region),
    /// [`ArchiveError::LockUnavailable`], [`ArchiveError::Storage`].
    pub async fn open(url: &str, lock: Option<ObjectLock>) -> Result<S3> {
        let (bucket, prefix, query) = parse(url)?;
        let mut loader =
            aws_config::defaults(BehaviorVersion::latest()).http_client(https_client());
        if let Some(region) = &query.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(endpoint) = &query.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let sdk = loader.load().await;
        let custom_endpoint =
            sdk.endpoint_url().is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
        let mut config = aws_sdk_s3::config::Builder::from(&sdk).force_path_style(custom_endpoint);
        if sdk.region().is_none() {
            if !custom_endpoint {
                return Err(unsupported(
                    url,
                    "no AWS region: set AWS_REGION, a profile's region, or ?region=",
                ));
            }
            // S3-compatible stores mostly ignore it, but a request must be signed for one.
            config = config.region(Region::new("us-east-1"));
        }
        let mut s3 = S3 {
            url: url.to_owned(),
            client: Client::from_conf(config.build()),
            bucket,
            prefix,
            part_size: query.part_size.unwrap_or(PART_SIZE),
            retention: None,
        };
        if let Some(lock) = lock {
            s3.check_lock().await?;
            let until = chrono::Utc::now() + chrono::Duration::days(lock.days.into());
            let mode = match lock.mode {
                LockMode::Compliance => ObjectLockMode::Compliance,
                LockMode::Governance => ObjectLockMode::Governance,
            };
            s3.retention = Some((mode, DateTime::from_secs(until.timestamp())));
        }
        Ok(s3)
    }

    /// The SDK client, as configured from the URL and environment.
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The object key of an archive key (the prefix prepended).
    pub fn object_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Until when objects written through this destination are retained (RFC 3339).
    pub fn retained_until(&self) -> Option<String> {
        self.retention.as_ref().map(|(_, until)| {
            chrono::DateTime::from_timestamp(until.secs(), 0)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        })
    }

    async fn check_lock(&self) -> Result<()> {
        let unavailable = |reason: String| ArchiveError::LockUnavailable {
            bucket: self.bucket.clone(),
            reason,
        };
        match self
            .client
            .get_object_lock_configuration()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(out)
                if out
                    .object_lock_configuration()
                    .and_then(|c| c.object_lock_enabled())
                    == Some(&ObjectLockEnabled::Enabled) =>
            {
                Ok(())
            }
            Ok(_) => Err(unavailable("its Object Lock is not enabled".into()).into()),
            Err(e) if e.code() == Some("ObjectLockConfigurationNotFoundError") => {
                Err(unavailable("it has no Object Lock configuration".into()).into())
            }
            Err(e) => Err(self.failed("", e)),
        }
    }

    fn failed<E>(&self, key: &str, e: E) -> crate::Error
    where
        E: std::error::Error,
    {
        ArchiveError::Storage {
            path: format!("s3://{}/{}{key}", self.bucket, self.prefix),
            source: std::io::Error::other(DisplayErrorContext(e).to_string()),
        }
        .into()
    }

    async fn put_object(&self, key: &str, bytes: &[u8]) -> Result<()> {
        check_key(key)?;
        let object = self.object_key(key);
        let (mode, until) = self.retention.clone().unzip();
        if bytes.len() <= self.part_size {
            // A checksum on every write: S3 requires one (or Content-MD5) with a retention.
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&object)
                .body(ByteStream::from(bytes.to_vec()))
                .checksum_algorithm(ChecksumAlgorithm::Crc32)
                .set_object_lock_mode(mode)
                .set_object_lock_retain_until_date(until)
                .send()
                .await
                .map_err(|e| self.failed(key, e))?;
            return Ok(());
        }
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&object)
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .set_object_lock_mode(mode)
            .set_object_lock_retain_until_date(until)
            .send()
            .await
            .map_err(|e| self.failed(key, e))?;
        let id = upload.upload_id().unwrap_or_default().to_owned();
        let uploaded = self.upload_parts(key, &object, &id, bytes).await;
        if uploaded.is_err() {
            // Best effort: what is left is aborted by the next run's `abandon`.
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&object)
                .upload_id(&id)
                .send()
                .await;
        }
        uploaded
    }

    async fn upload_parts(&self, key: &str, object: &str, id: &str, bytes: &[u8]) -> Result<()> {
        let mut parts = Vec::new();
        for (n, chunk) in bytes.chunks(self.part_size).enumerate() {
            let number = n as i32 + 1;
            let out = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(object)
                .upload_id(id)
                .part_number(number)
                .body(ByteStream::from(chunk.to_vec()))
                .checksum_algorithm(ChecksumAlgorithm::Crc32)
                .send()
                .await
                .map_err(|e| self.failed(key, e))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(out.e_tag().map(str::to_owned))
                    .set_checksum_crc32(out.checksum_crc32().map(str::to_owned))
                    .build(),
            );
        }
        let done = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(object)
            .upload_id(id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.failed(key, e))?;
        if let Some((mode, until)) = &self.retention {
            self.ensure_retention(key, object, done.version_id(), mode, until)
                .await?;
        }
        Ok(())
    }

    /// S3 locks a multipart upload's object as `create_multipart_upload` asked; some
    /// S3-compatible stores ignore the headers there (moto does), so the version is read back
    /// and, unlocked, given its retention (which needs `s3:PutObjectRetention`).
    async fn ensure_retention(
        &self,
        key: &str,
        object: &str,
        version: Option<&str>,
        mode: &ObjectLockMode,
        until: &DateTime,
    ) -> Result<()> {
        let head = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(object)
            .set_version_id(version.map(str::to_owned))
            .send()
            .await
            .map_err(|e| self.failed(key, e))?;
        if head.object_lock_mode() == Some(mode)
            && head.object_lock_retain_until_date().map(DateTime::secs) == Some(until.secs())
        {
            return Ok(());
        }
        self.client
            .put_object_retention()
            .bucket(&self.bucket)
            .key(object)
            .set_version_id(version.map(str::to_owned))
            .retention(
                ObjectLockRetention::builder()
                    .mode(ObjectLockRetentionMode::from(mode.as_str()))
                    .retain_until_date(*until)
                    .build(),
            )
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .send()
            .await
            .map_err(|e| self.failed(key, e))?;
        Ok(())
    }

    async fn get_object(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.read_object(key, None).await
    }

    async fn get_object_range(&self, key: &str, start: u64, len: u64) -> Result<Option<Vec<u8>>> {
        if len == 0 {
            check_key(key)?;
            return Ok(Some(Vec::new()));
        }
        let range = format!("bytes={start}-{}", start + len - 1);
        let Some(bytes) = self.read_object(key, Some(range)).await? else {
            return Ok(None);
        };
        if bytes.len() as u64 != len {
            let short = format!("asked for {len} bytes from {start}, got {}", bytes.len());
            return Err(self.failed(key, std::io::Error::other(short)));
        }
        Ok(Some(bytes))
    }

    /// The object under `key`, or the `range` of it (an HTTP Range); `None` when there is none.
    async fn read_object(&self, key: &str, range: Option<String>) -> Result<Option<Vec<u8>>> {
        check_key(key)?;
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.object_key(key))
            .set_range(range)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(self.failed(key, e)),
        };
        let body = out.body.collect().await.map_err(|e| self.failed(key, e))?;
        Ok(Some(body.into_bytes().to_vec()))
    }

    async fn object_size(&self, key: &str) -> Result<Option<u64>> {
        check_key(key)?;
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.object_key(key))
            .send()
            .await
        {
            Ok(out) => Ok(Some(out.content_length().unwrap_or(0).max(0) as u64)),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
            Err(e) => Err(self.failed(key, e)),
        }
    }

    async fn list_keys(&self, prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(self.object_key(prefix))
                .delimiter("/")
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| self.failed(prefix, e))?;
            let folders = out.common_prefixes().iter().filter_map(|p| p.prefix());
            let objects = out.contents().iter().filter_map(|o| o.key());
            for key in folders.chain(objects) {
                if let Some(key) = key.strip_prefix(&self.prefix) {
                    keys.push(key.to_owned());
                }
            }
            match out.next_continuation_token() {
                Some(next) if out.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => break,
            }
        }
        keys.sort();
        Ok(keys)
    }

    async fn object_versions(&self, key: &str) -> Result<Vec<ObjectVersion>> {
        check_key(key)?;
        let object = self.object_key(key);
        let written_at = |at: Option<&DateTime>| {
            at.and_then(|at| chrono::DateTime::from_timestamp(at.secs(), at.subsec_nanos()))
                .unwrap_or_default()
        };
        let mut versions = Vec::new();
        let (mut key_marker, mut version_marker) = (None, None);
        loop {
            let out = self
                .client
                .list_object_versions()
                .bucket(&self.bucket)
                .prefix(&object)
                .set_key_marker(key_marker)
                .set_version_id_marker(version_marker)
                .send()
                .await
                .map_err(|e| self.failed(key, e))?;
            for v in out.versions() {
                if v.key() == Some(object.as_str()) {
                    versions.push(ObjectVersion {
                        version_id: v.version_id().unwrap_or("null").to_owned(),
                        written_at: written_at(v.last_modified()),
                        deleted: false,
                    });
                }
            }
            for m in out.delete_markers() {
                if m.key() == Some(object.as_str()) {
                    versions.push(ObjectVersion {
                        version_id: m.version_id().unwrap_or("null").to_owned(),
                        written_at: written_at(m.last_modified()),
                        deleted: true,
                    });
                }
            }
            if out.is_truncated() != Some(true) {
                break;
            }
            key_marker = out.next_key_marker().map(str::to_owned);
            version_marker = out.next_version_id_marker().map(str::to_owned);
        }
        versions.sort_by_key(|v| v.written_at);
        Ok(versions)
    }

    async fn delete_object(&self, key: &str) -> Result<()> {
        check_key(key)?;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.object_key(key))
            .send()
            .await
            .map_err(|e| self.failed(key, e))?;
        Ok(())
    }

    async fn abort_uploads(&self, prefix: &str) -> Result<()> {
        // Aborted, not resumed: the month is read again from the database and the parts
        // already sent cannot be trusted to be those bytes.
        loop {
            let out = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(self.object_key(prefix))
                .send()
                .await
                .map_err(|e| self.failed(prefix, e))?;
            if out.uploads().is_empty() {
                return Ok(());
            }
            for upload in out.uploads() {
                let (Some(object), Some(id)) = (upload.key(), upload.upload_id()) else {
                    continue;
                };
                self.client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(object)
                    .upload_id(id)
                    .send()
                    .await
                    .map_err(|e| self.failed(prefix, e))?;
            }
        }
    }
}

impl Destination for S3 {
    fn url(&self) -> &str {
        &self.url
    }

    fn put<'a>(&'a self, key: &'a str, bytes: &'a [u8]) -> Pending<'a, ()> {
        Box::pin(self.put_object(key, bytes))
    }

    fn get<'a>(&'a self, key: &'a str) -> Pending<'a, Option<Vec<u8>>> {
        Box::pin(self.get_object(key))
    }

    fn get_range<'a>(&'a self, key: &'a str, start: u64, len: u64) -> Pending<'a, Option<Vec<u8>>> {
        Box::pin(self.get_object_range(key, start, len))
    }

    fn size<'a>(&'a self, key: &'a str) -> Pending<'a, Option<u64>> {
        Box::pin(self.object_size(key))
    }

    fn list<'a>(&'a self, prefix: &'a str) -> Pending<'a, Vec<String>> {
        Box::pin(self.list_keys(prefix))
    }

    fn versions<'a>(&'a self, key: &'a str) -> Pending<'a, Vec<ObjectVersion>> {
        Box::pin(self.object_versions(key))
    }

    fn delete<'a>(&'a self, key: &'a str) -> Pending<'a, ()> {
        Box::pin(self.delete_object(key))
    }

    fn abandon<'a>(&'a self, prefix: &'a str) -> Pending<'a, ()> {
        Box::pin(self.abort_uploads(prefix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_bucket_a_prefix_and_known_options() {
        let (bucket, prefix, query) = parse(
            "s3://audit/archive/prod/?endpoint=http%3A%2F%2F127.0.0.1%3A9000&region=eu-west-3",
        )
        .unwrap();
        assert_eq!(
            (bucket.as_str(), prefix.as_str()),
            ("audit", "archive/prod/")
        );
        assert_eq!(query.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(query.region.as_deref(), Some("eu-west-3"));
        assert_eq!(parse("s3://audit").unwrap().1, "");
        for bad in [
            "s3:///prefix",
            "s3://b/p?colour=blue",
            "s3://b/../x",
            "s3://b/p?part_size=0",
        ] {
            let err = parse(bad).err().unwrap();
            assert!(
                matches!(
                    err,
                    crate::Error::Archive(
                        ArchiveError::Unsupported { .. } | ArchiveError::Invalid { .. }
                    )
                ),
                "{bad}: {err}"
            );
        }
    }
}
