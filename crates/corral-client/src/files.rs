//! File contents: uploads from an `AsyncRead`, downloads into an `AsyncWrite`, both
//! streamed with a progress callback.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use corral_types::api::FileWriteResponse;
use futures_util::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::header::CONTENT_LENGTH;
use hyper::Method;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::io::ReaderStream;

use crate::http::{encode, read_json};
use crate::{seg, Client, ClientError};

impl Client {
    /// `PUT /v1/sandboxes/{id}/files?path=`: streams `reader` into the file.
    /// `progress` is called with the bytes sent so far.
    pub async fn upload<R>(
        &self,
        id: &str,
        path: &str,
        reader: R,
        progress: impl Fn(u64) + Send + Sync + 'static,
    ) -> Result<FileWriteResponse, ClientError>
    where
        R: AsyncRead + Send + 'static,
    {
        let sent = Arc::new(AtomicU64::new(0));
        let stream = ReaderStream::with_capacity(reader, 64 * 1024).map(move |chunk| {
            chunk.map(|bytes| {
                let n = sent.fetch_add(bytes.len() as u64, Ordering::Relaxed) + bytes.len() as u64;
                progress(n);
                Frame::data(bytes)
            })
        });
        let body = StreamBody::new(stream).boxed_unsync();
        let p = format!(
            "/v1/sandboxes/{}/files?path={}",
            seg(id),
            encode(path, true)
        );
        let resp = self
            .t
            .send(
                Method::PUT,
                &p,
                body,
                Some("application/octet-stream"),
                None,
            )
            .await?;
        read_json(resp).await
    }

    /// `GET /v1/sandboxes/{id}/files?path=`: streams the file into `writer`; returns
    /// the bytes written. `progress` gets (bytes so far, total when known).
    pub async fn download<W>(
        &self,
        id: &str,
        path: &str,
        writer: &mut W,
        mut progress: impl FnMut(u64, Option<u64>),
    ) -> Result<u64, ClientError>
    where
        W: AsyncWrite + Unpin,
    {
        let p = format!(
            "/v1/sandboxes/{}/files?path={}",
            seg(id),
            encode(path, true)
        );
        let resp = self
            .t
            .send(Method::GET, &p, crate::http::empty(), None, None)
            .await?;
        let total = resp
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let mut body = resp.into_body();
        let mut done = 0u64;
        progress(0, total);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ClientError::Decode(format!("download broke: {e}")))?;
            if let Ok(data) = frame.into_data() {
                writer.write_all(&data).await?;
                done += data.len() as u64;
                progress(done, total);
            }
        }
        writer.flush().await?;
        if let Some(t) = total {
            if t != done {
                return Err(ClientError::Decode(format!(
                    "download ended after {done} of {t} bytes"
                )));
            }
        }
        Ok(done)
    }
}
