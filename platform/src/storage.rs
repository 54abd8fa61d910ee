//! Object storage on object_store 0.13: a local directory by default,
//! S3-compatible by URL (`s3://bucket/prefix`). Keys follow
//! `{bucket}/{owner}/{resource}/{file}` (a logical bucket such as `datasets`
//! or `outputs`), so one owner's objects share a prefix. Downloads go through
//! signed URLs valid for a limited time: presigned for S3, HMAC-signed for
//! local storage (verified by the server that streams the file).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use hmac::{Hmac, Mac};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use sha2::Sha256;
use tokio::io::AsyncReadExt;

use crate::settings::Settings;
use crate::util::{ct_eq, hex, now_ms, unhex};
use crate::{Error, Result};

/// Where objects live.
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    s3: Option<Arc<AmazonS3>>,
    prefix: String,
    url: String,
    key: Arc<Vec<u8>>,
    public_url: String,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// A time-limited download link.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SignedUrl {
    /// The URL.
    pub url: String,
    /// When it stops working, ms since the epoch.
    pub expires_at: i64,
}

/// `{bucket}/{owner}/{resource}/{file}`; each part must be a plain name.
pub fn object_key(bucket: &str, owner: &str, resource: &str, file: &str) -> String {
    format!("{bucket}/{owner}/{resource}/{file}")
}

impl Storage {
    /// Open the store the settings name.
    pub fn open(settings: &Settings, signing_key: Vec<u8>) -> Result<Storage> {
        let url = settings.storage_url()?;
        let parsed = url::Url::parse(&url).map_err(|e| Error::Settings(format!("storage.url {url}: {e}")))?;
        let (store, s3, prefix): (Arc<dyn ObjectStore>, Option<Arc<AmazonS3>>, String) = match parsed.scheme() {
            "file" => {
                let dir = parsed
                    .to_file_path()
                    .map_err(|()| Error::Settings(format!("storage.url {url}: not a local path")))?;
                std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
                    path: dir.display().to_string(),
                    source,
                })?;
                (Arc::new(LocalFileSystem::new_with_prefix(&dir)?), None, String::new())
            }
            "s3" => {
                let bucket = parsed
                    .host_str()
                    .ok_or_else(|| Error::Settings(format!("storage.url {url}: no bucket")))?;
                let s = &settings.storage;
                let mut b = AmazonS3Builder::new()
                    .with_bucket_name(bucket)
                    .with_region(&s.region)
                    .with_allow_http(s.allow_http);
                if !s.endpoint.is_empty() {
                    b = b.with_endpoint(&s.endpoint).with_virtual_hosted_style_request(false);
                }
                if !s.access_key_id.is_empty() {
                    b = b
                        .with_access_key_id(&s.access_key_id)
                        .with_secret_access_key(s.secret_access_key.expose());
                }
                let s3 = Arc::new(b.build()?);
                let prefix = parsed.path().trim_matches('/').to_owned();
                (Arc::clone(&s3) as Arc<dyn ObjectStore>, Some(s3), prefix)
            }
            other => {
                return Err(Error::Settings(format!(
                    "storage.url {url}: unsupported scheme `{other}` (use file:// or s3://)"
                )));
            }
        };
        Ok(Storage {
            store,
            s3,
            prefix,
            url,
            key: Arc::new(signing_key),
            public_url: settings.public_url(),
        })
    }

    /// The store's URL (for logs and `/readyz`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The underlying store with the prefix applied by [`Storage::path`]
    /// (for query engines that read objects directly).
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        Arc::clone(&self.store)
    }

    /// The store path of `key`.
    pub fn path(&self, key: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(key)
        } else {
            ObjectPath::from(format!("{}/{key}", self.prefix))
        }
    }

    /// Store bytes under `key`.
    pub async fn put_bytes(&self, key: &str, data: Bytes) -> Result<()> {
        self.store.put(&self.path(key), PutPayload::from(data)).await?;
        Ok(())
    }

    /// Upload a local file under `key` in parts (never all in memory).
    /// Returns its size.
    pub async fn put_file(&self, key: &str, file: &Path) -> Result<u64> {
        let io = |source| Error::Io {
            path: file.display().to_string(),
            source,
        };
        let mut f = tokio::fs::File::open(file).await.map_err(io)?;
        let upload = self.store.put_multipart(&self.path(key)).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, 8 << 20);
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = f.read(&mut buf).await.map_err(io)?;
            if n == 0 {
                break;
            }
            size += n as u64;
            writer.wait_for_capacity(4).await?;
            writer.write(&buf[..n]);
        }
        writer.finish().await?;
        Ok(size)
    }

    /// The object's bytes.
    pub async fn get_bytes(&self, key: &str) -> Result<Bytes> {
        match self.store.get(&self.path(key)).await {
            Ok(r) => Ok(r.bytes().await?),
            Err(object_store::Error::NotFound { .. }) => Err(Error::NotFound(format!("object {key}"))),
            Err(e) => Err(e.into()),
        }
    }

    /// The object as a stream of chunks, with its size.
    pub async fn get_stream(&self, key: &str) -> Result<(u64, BoxStream<'static, Result<Bytes>>)> {
        match self.store.get(&self.path(key)).await {
            Ok(r) => {
                let size = r.meta.size;
                Ok((size, r.into_stream().map(|c| c.map_err(Error::from)).boxed()))
            }
            Err(object_store::Error::NotFound { .. }) => Err(Error::NotFound(format!("object {key}"))),
            Err(e) => Err(e.into()),
        }
    }

    /// Download the object to a local file.
    pub async fn get_to_file(&self, key: &str, file: &Path) -> Result<u64> {
        use tokio::io::AsyncWriteExt;
        let io = |source| Error::Io {
            path: file.display().to_string(),
            source,
        };
        let (_, mut stream) = self.get_stream(key).await?;
        let mut f = tokio::fs::File::create(file).await.map_err(io)?;
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            size += chunk.len() as u64;
            f.write_all(&chunk).await.map_err(io)?;
        }
        f.flush().await.map_err(io)?;
        Ok(size)
    }

    /// Size of an object, or `None` if it does not exist.
    pub async fn size(&self, key: &str) -> Result<Option<u64>> {
        match self.store.head(&self.path(key)).await {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Delete every object under `prefix` (a resource's folder).
    pub async fn delete_prefix(&self, prefix: &str) -> Result<()> {
        let base = self.path(prefix);
        let mut listing = self.store.list(Some(&base));
        let mut paths = Vec::new();
        while let Some(meta) = listing.next().await {
            paths.push(meta?.location);
        }
        for p in paths {
            match self.store.delete(&p).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Whether the store answers (for `/readyz`).
    pub async fn ping(&self) -> Result<()> {
        let mut listing = self.store.list(Some(&self.path("healthz")));
        if let Some(Err(e)) = listing.next().await {
            return Err(e.into());
        }
        Ok(())
    }

    /// A download link for `key` valid for `ttl`. Call only after deciding
    /// the caller may read the object: the link itself is the permission.
    pub async fn signed_url(&self, key: &str, ttl: Duration) -> Result<SignedUrl> {
        let expires_at = now_ms() + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
        if let Some(s3) = &self.s3 {
            use object_store::signer::Signer;
            let url = s3.signed_url(http::Method::GET, &self.path(key), ttl).await?;
            return Ok(SignedUrl {
                url: url.to_string(),
                expires_at,
            });
        }
        let exp = expires_at / 1000;
        let sig = self.local_signature(key, exp);
        let encoded: Vec<String> = key
            .split('/')
            .map(|seg| url::form_urlencoded::byte_serialize(seg.as_bytes()).collect())
            .collect();
        Ok(SignedUrl {
            url: format!(
                "{}/v1/downloads/{}?expires={exp}&signature={sig}",
                self.public_url,
                encoded.join("/")
            ),
            expires_at: exp * 1000,
        })
    }

    /// A signed link to a route of this server rather than to an object
    /// (`/v1/purchase-downloads/pur_…`): the route checks the signature with
    /// [`Storage::verify_route`] *and* re-checks the permission behind it on
    /// every fetch, so taking that permission away (a refund) ends the link
    /// at once instead of when it expires.
    pub fn signed_route(&self, route: &str, ttl: Duration) -> SignedUrl {
        let exp = (now_ms() + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2)) / 1000;
        let sig = self.local_signature(&format!("route:{route}"), exp);
        SignedUrl {
            url: format!("{}{route}?expires={exp}&signature={sig}", self.public_url),
            expires_at: exp * 1000,
        }
    }

    /// Check a link made by [`Storage::signed_route`] for `route`.
    pub fn verify_route(&self, route: &str, expires: i64, signature: &str) -> Result<()> {
        // Object keys never start with `route:`, so neither kind of link
        // verifies as the other.
        self.verify_local(&format!("route:{route}"), expires, signature)
    }

    fn local_signature(&self, key: &str, exp: i64) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(format!("GET\n{key}\n{exp}").as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// Check a local signed link: the signature must match the key and expiry
    /// exactly, and the expiry must be in the future.
    pub fn verify_local(&self, key: &str, expires: i64, signature: &str) -> Result<()> {
        let bad = || Error::Forbidden("this download link is invalid or has expired".into());
        let given = unhex(signature).ok_or_else(bad)?;
        let want = unhex(&self.local_signature(key, expires)).ok_or_else(bad)?;
        if !ct_eq(&given, &want) || expires * 1000 <= now_ms() {
            return Err(bad());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_round_trip_and_signed_links() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings {
            data_dir: dir.path().to_owned(),
            ..Settings::default()
        };
        let s = Storage::open(&settings, vec![7; 32]).unwrap();
        let key = object_key("outputs", "acct_1", "job_1", "a b.csv");
        s.put_bytes(&key, Bytes::from_static(b"x,y\n1,2\n")).await.unwrap();
        assert_eq!(s.get_bytes(&key).await.unwrap(), Bytes::from_static(b"x,y\n1,2\n"));
        assert_eq!(s.size(&key).await.unwrap(), Some(8));

        let link = s.signed_url(&key, Duration::from_secs(3600)).await.unwrap();
        assert!(
            link.url.contains("/v1/downloads/outputs/acct_1/job_1/a+b.csv?expires="),
            "{}",
            link.url
        );
        let exp = link.expires_at / 1000;
        let sig = link.url.rsplit("signature=").next().unwrap();
        s.verify_local(&key, exp, sig).unwrap();
        assert!(s.verify_local(&key, exp + 1, sig).is_err(), "changed expiry");
        assert!(
            s.verify_local("outputs/acct_2/job_1/a b.csv", exp, sig).is_err(),
            "changed key"
        );
        let mut tampered = sig.to_owned();
        tampered.replace_range(0..1, if sig.starts_with('0') { "1" } else { "0" });
        assert!(s.verify_local(&key, exp, &tampered).is_err(), "changed signature");
        assert!(
            s.verify_local(&key, now_ms() / 1000 - 1, &s.local_signature(&key, now_ms() / 1000 - 1))
                .is_err(),
            "expired"
        );

        s.delete_prefix("outputs/acct_1/job_1").await.unwrap();
        assert_eq!(s.size(&key).await.unwrap(), None);
    }
}
