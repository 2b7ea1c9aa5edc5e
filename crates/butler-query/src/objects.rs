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

/// The bucket reports are put in, opened (or created) on the first put, so that a
/// pipeline started before NATS answers starts all the same, as its consumer does.
#[derive(Clone)]
pub struct ReportObjects {
    client: async_nats::Client,
    bucket: String,
    replicas: usize,
    store: std::sync::Arc<tokio::sync::OnceCell<ObjectStore>>,
}

impl std::fmt::Debug for ReportObjects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportObjects")
            .field("bucket", &self.bucket)
            .field("replicas", &self.replicas)
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
    /// Reports go to `bucket`, created with `replicas` replicas when absent.
    pub fn new(client: async_nats::Client, bucket: &str, replicas: usize) -> ReportObjects {
        ReportObjects {
            client,
            bucket: bucket.to_owned(),
            replicas,
            store: std::sync::Arc::default(),
        }
    }

    /// The bucket, opened or created now if not yet.
    ///
    /// # Errors
    /// [`ObjectError::Bucket`] when the server refuses both.
    async fn store(&self) -> Result<&ObjectStore, ObjectError> {
        self.store
            .get_or_try_init(|| async {
                let js = jetstream::new(self.client.clone());
                if let Ok(store) = js.get_object_store(&self.bucket).await {
                    return Ok(store);
                }
                js.create_object_store(jetstream::object_store::Config {
                    bucket: self.bucket.clone(),
                    description: Some("Butler Analytics reports".into()),
                    num_replicas: self.replicas,
                    ..Default::default()
                })
                .await
                .map_err(|e| ObjectError::Bucket {
                    bucket: self.bucket.clone(),
                    reason: e.to_string(),
                })
            })
            .await
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Puts `body` under `name`, replacing an older report of that name, in chunks that
    /// fit well within the server's max payload (so a server with a small limit stores
    /// it too).
    ///
    /// # Errors
    /// `internal` when the server refuses the bucket or the object.
    pub async fn put(&self, name: &str, body: &[u8]) -> Result<StoredObject, QueryError> {
        let store = self
            .store()
            .await
            .map_err(|e| QueryError::Internal(e.to_string()))?;
        let max_payload = self.client.server_info().max_payload;
        let meta = ObjectMetadata {
            name: name.to_owned(),
            chunk_size: Some((max_payload / 2).clamp(256, MAX_CHUNK)),
            ..Default::default()
        };
        let mut reader = body;
        let info = store.put(meta, &mut reader).await.map_err(|e| {
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
