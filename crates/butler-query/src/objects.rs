//! Reports in a JetStream object store bucket (`reports.object_store`): each report is
//! put there under the name of its file, so a client on any host of the NATS system
//! can fetch it, however large, where a file on the pipeline's disk helps no one.

use async_nats::jetstream;
use async_nats::jetstream::object_store::{ObjectMetadata, ObjectStore};
use serde::Serialize;
use tokio::io::AsyncReadExt;

use crate::QueryError;

/// The largest chunk an object is cut into (async-nats' default).
const MAX_CHUNK: usize = 128 * 1024;

/// The bucket reports are put in.
#[derive(Clone)]
pub struct ReportObjects {
    store: ObjectStore,
    bucket: String,
    chunk_size: usize,
}

impl std::fmt::Debug for ReportObjects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportObjects")
            .field("bucket", &self.bucket)
            .field("chunk_size", &self.chunk_size)
            .finish_non_exhaustive()
    }
}

/// A report's object, as a reply or an announcement names it: enough to fetch it
/// (`butler-analytics report --fetch <name>`, `nats object get <bucket> <name>`) and
/// check what was fetched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredObject {
    /// The bucket.
    pub bucket: String,
    /// The object, `<propertyId>/<type>_<start>_<end>.<format>`.
    pub name: String,
    /// Its length in bytes.
    pub size: usize,
    /// `SHA-256=<base64url>` of its bytes, as the object store records it.
    pub digest: String,
}

/// Why a bucket could not be opened or an object read.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// The bucket is neither there nor can it be created.
    #[error("object store bucket {bucket}: {reason}")]
    Bucket {
        /// The bucket.
        bucket: String,
        /// What the server said.
        reason: String,
    },
    /// The object is not in the bucket, or could not be read whole.
    #[error("object {name} in bucket {bucket}: {reason}")]
    Object {
        /// The bucket.
        bucket: String,
        /// The object.
        name: String,
        /// What went wrong.
        reason: String,
    },
}

impl ReportObjects {
    /// Opens `bucket`, creating it (with `replicas` replicas) when absent. Objects are
    /// cut into chunks that fit well within `max_payload`, the server's limit on a
    /// message, so a server with a small limit stores them too.
    ///
    /// # Errors
    /// [`ObjectError::Bucket`] when the server refuses both.
    pub async fn open(
        js: &jetstream::Context,
        bucket: &str,
        replicas: usize,
        max_payload: usize,
    ) -> Result<ReportObjects, ObjectError> {
        let store = match js.get_object_store(bucket).await {
            Ok(store) => store,
            Err(_) => js
                .create_object_store(jetstream::object_store::Config {
                    bucket: bucket.to_owned(),
                    description: Some("Butler Analytics reports".into()),
                    num_replicas: replicas,
                    ..Default::default()
                })
                .await
                .map_err(|e| ObjectError::Bucket {
                    bucket: bucket.to_owned(),
                    reason: e.to_string(),
                })?,
        };
        Ok(ReportObjects {
            store,
            bucket: bucket.to_owned(),
            chunk_size: (max_payload / 2).clamp(256, MAX_CHUNK),
        })
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Puts `body` under `name`, replacing an older report of that name.
    ///
    /// # Errors
    /// `internal` when the server refuses it.
    pub async fn put(&self, name: &str, body: &[u8]) -> Result<StoredObject, QueryError> {
        let meta = ObjectMetadata {
            name: name.to_owned(),
            chunk_size: Some(self.chunk_size),
            ..Default::default()
        };
        let mut reader = body;
        let info = self.store.put(meta, &mut reader).await.map_err(|e| {
            QueryError::Internal(format!(
                "cannot put report {name} in object store bucket {}: {e}",
                self.bucket
            ))
        })?;
        Ok(StoredObject {
            bucket: self.bucket.clone(),
            name: info.name,
            size: info.size,
            digest: info.digest.unwrap_or_default(),
        })
    }
}

/// Reads the object `name` of `bucket` whole; the object store checks its digest as
/// the last chunk arrives.
///
/// # Errors
/// [`ObjectError`] naming the bucket or the object.
pub async fn fetch(
    js: &jetstream::Context,
    bucket: &str,
    name: &str,
) -> Result<Vec<u8>, ObjectError> {
    let store = js
        .get_object_store(bucket)
        .await
        .map_err(|e| ObjectError::Bucket {
            bucket: bucket.to_owned(),
            reason: e.to_string(),
        })?;
    let failed = |reason: String| ObjectError::Object {
        bucket: bucket.to_owned(),
        name: name.to_owned(),
        reason,
    };
    let mut object = store.get(name).await.map_err(|e| failed(e.to_string()))?;
    let mut body = Vec::with_capacity(object.info().size);
    object
        .read_to_end(&mut body)
        .await
        .map_err(|e| failed(e.to_string()))?;
    Ok(body)
}
