//! Reads retried on the transport errors `object_store`'s own retry loop gives
//! up on at once.
//!
//! `object_store` retries a request whose connection could not be made or was
//! cut (`HttpErrorKind::Connect`, `Request`, and `Interrupted` for idempotent
//! requests), but an error it cannot classify (`HttpErrorKind::Unknown`, e.g.
//! hyper's "connection closed" on a pooled connection whose server just went
//! away) is returned on the first try. A scanner is not latency-bound, and a
//! restarting server is the common case, so [`RetryReads`] tries such a read
//! again with the same backoff the source configured; writes and deletes are
//! passed through unchanged (the sweep decides about those itself).

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::client::HttpErrorKind;
use object_store::path::Path;
use object_store::{
    GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use std::sync::Arc;
use std::time::Duration;

/// An [`ObjectStore`] whose reads (`get*`, `head`, `list_with_delimiter`) are
/// retried on transport errors `object_store` did not retry.
#[derive(Debug)]
pub struct RetryReads {
    inner: Arc<dyn ObjectStore>,
    /// Extra attempts after the first.
    max_retries: usize,
    /// Wait before the first extra attempt; doubled each time up to `max_backoff`.
    init_backoff: Duration,
    max_backoff: Duration,
}

impl RetryReads {
    pub fn new(
        inner: Arc<dyn ObjectStore>,
        max_retries: usize,
        init_backoff: Duration,
        max_backoff: Duration,
    ) -> Self {
        RetryReads {
            inner,
            max_retries,
            init_backoff,
            max_backoff,
        }
    }

    async fn retried<T, F, Fut>(&self, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut wait = self.init_backoff;
        let mut attempt = 0;
        loop {
            match op().await {
                Err(e) if attempt < self.max_retries && unclassified_transport_error(&e) => {
                    attempt += 1;
                    tracing::debug!(attempt, error = %e, "object read failed in transport: retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(self.max_backoff);
                }
                other => return other,
            }
        }
    }
}

impl std::fmt::Display for RetryReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RetryReads({})", self.inner)
    }
}

/// True when `e` comes from an HTTP transport error that `object_store`
/// classified as `Unknown` (and so did not retry).
pub fn unclassified_transport_error(e: &object_store::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(h) = s.downcast_ref::<object_store::client::HttpError>() {
            return h.kind() == HttpErrorKind::Unknown;
        }
        source = s.source();
    }
    false
}

#[async_trait]
impl ObjectStore for RetryReads {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.retried(|| self.inner.get_opts(location, options.clone()))
            .await
    }

    async fn get_range(
        &self,
        location: &Path,
        range: std::ops::Range<u64>,
    ) -> Result<bytes::Bytes> {
        self.retried(|| self.inner.get_range(location, range.clone()))
            .await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> Result<Vec<bytes::Bytes>> {
        self.retried(|| self.inner.get_ranges(location, ranges))
            .await
    }

    async fn head(&self, location: &Path) -> Result<ObjectMeta> {
        self.retried(|| self.inner.head(location)).await
    }

    async fn delete(&self, location: &Path) -> Result<()> {
        self.inner.delete(location).await
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.retried(|| self.inner.list_with_delimiter(prefix))
            .await
    }

    async fn copy(&self, from: &Path, to: &Path) -> Result<()> {
        self.inner.copy(from, to).await
    }

    async fn copy_if_not_exists(&self, from: &Path, to: &Path) -> Result<()> {
        self.inner.copy_if_not_exists(from, to).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    #[test]
    fn errors_other_than_unclassified_transport_ones_are_not_retried() {
        let nf = object_store::Error::NotFound {
            path: "k".into(),
            source: "gone".into(),
        };
        assert!(!unclassified_transport_error(&nf));
        let generic = object_store::Error::Generic {
            store: "S3",
            source: Box::new(object_store::client::HttpError::new(
                HttpErrorKind::Unknown,
                std::io::Error::other("connection closed"),
            )),
        };
        assert!(unclassified_transport_error(&generic));
        let connect = object_store::Error::Generic {
            store: "S3",
            source: Box::new(object_store::client::HttpError::new(
                HttpErrorKind::Connect,
                std::io::Error::other("refused"),
            )),
        };
        // object_store retried that one already.
        assert!(!unclassified_transport_error(&connect));
    }

    #[test]
    fn reads_pass_through() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        rt.block_on(mem.put(&Path::from("a/b.txt"), "hello".into()))
            .unwrap();
        let s = RetryReads::new(mem, 3, Duration::from_millis(1), Duration::from_millis(2));
        assert_eq!(
            &rt.block_on(s.get_range(&Path::from("a/b.txt"), 1..4))
                .unwrap()[..],
            b"ell"
        );
        assert_eq!(rt.block_on(s.head(&Path::from("a/b.txt"))).unwrap().size, 5);
        assert!(matches!(
            rt.block_on(s.head(&Path::from("a/none"))),
            Err(object_store::Error::NotFound { .. })
        ));
    }
}
