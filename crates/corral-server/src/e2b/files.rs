//! envd's HTTP file API (`/files`): download as a stream, upload as
//! `application/octet-stream` or `multipart/form-data` (one or many files), parsed
//! as it arrives so no file is ever held whole in memory.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt, TryStreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_util::io::{ReaderStream, StreamReader};

use super::error::E2bError;
use super::{abs_path, sandbox_caller};
use crate::AppState;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct FileQuery {
    path: Option<String>,
    #[allow(dead_code)]
    username: Option<String>,
}

/// `GET /health`: envd is up (corral answers for every sandbox).
pub(crate) async fn health() -> StatusCode {
    StatusCode::NO_CONTENT
}

pub(crate) async fn download(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<FileQuery>,
) -> Result<Response, E2bError> {
    let (caller, id) = sandbox_caller(&st, &headers)?;
    let path = abs_path(
        q.path
            .as_deref()
            .ok_or_else(|| E2bError::bad_request("path is required"))?,
        &headers,
    );
    let (file, size) = st.manager.read_file(&caller.tenant, &id, &path).await?;
    let mut resp = Body::from_stream(ReaderStream::new(file)).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    Ok(resp)
}

fn written(path: &str) -> Value {
    let name = path.rsplit('/').next().unwrap_or(path);
    json!({"name": name, "type": "file", "path": path})
}

pub(crate) async fn upload(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<FileQuery>,
    body: Body,
) -> Result<Response, E2bError> {
    let (caller, id) = sandbox_caller(&st, &headers)?;
    if headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes() != b"identity")
    {
        return Err(E2bError::unsupported(
            "compressed uploads (Content-Encoding)",
        ));
    }
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    if let Some(boundary) = ct.strip_prefix("multipart/form-data").and_then(|rest| {
        rest.split(';')
            .find_map(|p| p.trim().strip_prefix("boundary="))
    }) {
        let boundary = boundary.trim_matches('"').to_string();
        let mut mp = Multipart::new(Box::pin(stream), &boundary);
        let mut out = Vec::new();
        while let Some(part) = mp.next_part().await? {
            let name = q.path.clone().or_else(|| filename(&part)).ok_or_else(|| {
                E2bError::bad_request("a multipart file part has no filename and no path was given")
            })?;
            let path = abs_path(&name, &headers);
            let chunks = futures_util::stream::unfold(&mut mp, |mp| async move {
                match mp.chunk().await {
                    Ok(Some(c)) => Some((Ok(Bytes::from(c)), mp)),
                    Ok(None) => None,
                    Err(e) => Some((Err(std::io::Error::other(e.message)), mp)),
                }
            });
            let reader = StreamReader::new(Box::pin(chunks));
            st.manager
                .write_file(&caller.tenant, &id, &path, reader)
                .await?;
            out.push(written(&path));
        }
        if out.is_empty() {
            return Err(E2bError::bad_request("the multipart body holds no file"));
        }
        return Ok(axum::Json(out).into_response());
    }
    let path = abs_path(
        q.path
            .as_deref()
            .ok_or_else(|| E2bError::bad_request("path is required for an octet-stream upload"))?,
        &headers,
    );
    let reader = StreamReader::new(Box::pin(stream));
    st.manager
        .write_file(&caller.tenant, &id, &path, reader)
        .await?;
    Ok(axum::Json(vec![written(&path)]).into_response())
}

fn filename(headers: &str) -> Option<String> {
    headers.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        if !k.trim().eq_ignore_ascii_case("content-disposition") {
            return None;
        }
        v.split(';').find_map(|p| {
            p.trim()
                .strip_prefix("filename=")
                .map(|f| f.trim_matches('"').to_string())
        })
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A streaming `multipart/form-data` reader: part headers, then the part's bytes in
/// chunks, holding back only what might be the start of the next delimiter.
struct Multipart<S> {
    body: S,
    buf: Vec<u8>,
    delim: Vec<u8>,
    in_part: bool,
    finished: bool,
}

const HOLD: usize = 64 << 10;

impl<S> Multipart<S>
where
    S: Stream<Item = Result<Bytes, std::io::Error>> + Unpin,
{
    fn new(body: S, boundary: &str) -> Self {
        Multipart {
            body,
            // The first delimiter has no CRLF before it; pretend it had.
            buf: b"\r\n".to_vec(),
            delim: format!("\r\n--{boundary}").into_bytes(),
            in_part: false,
            finished: false,
        }
    }

    async fn fill(&mut self) -> Result<bool, E2bError> {
        match self.body.next().await {
            Some(Ok(b)) => {
                self.buf.extend_from_slice(&b);
                Ok(true)
            }
            Some(Err(e)) => Err(E2bError::bad_request(format!(
                "reading the upload failed: {e}"
            ))),
            None => Ok(false),
        }
    }

    fn truncated() -> E2bError {
        E2bError::bad_request("malformed multipart body: it ends before its closing boundary")
    }

    /// The next part's header block, or None after the closing boundary.
    async fn next_part(&mut self) -> Result<Option<String>, E2bError> {
        while self.in_part {
            self.chunk().await?;
        }
        if self.finished {
            return Ok(None);
        }
        loop {
            if let Some(i) = find(&self.buf, &self.delim) {
                self.buf.drain(..i + self.delim.len());
                break;
            }
            let keep = self.buf.len().saturating_sub(self.delim.len());
            self.buf.drain(..keep);
            if !self.fill().await? {
                return Err(Self::truncated());
            }
        }
        while self.buf.len() < 2 {
            if !self.fill().await? {
                return Err(Self::truncated());
            }
        }
        if self.buf.starts_with(b"--") {
            self.finished = true;
            return Ok(None);
        }
        loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                let h = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 4);
                self.in_part = true;
                return Ok(Some(h));
            }
            if self.buf.len() > HOLD {
                return Err(E2bError::bad_request(
                    "malformed multipart body: part headers too long",
                ));
            }
            if !self.fill().await? {
                return Err(Self::truncated());
            }
        }
    }

    /// The next bytes of the current part, or None at its end.
    async fn chunk(&mut self) -> Result<Option<Vec<u8>>, E2bError> {
        loop {
            if !self.in_part {
                return Ok(None);
            }
            if let Some(i) = find(&self.buf, &self.delim) {
                let data: Vec<u8> = self.buf.drain(..i).collect();
                self.in_part = false;
                return Ok((!data.is_empty()).then_some(data));
            }
            if self.buf.len() >= HOLD {
                let n = self.buf.len() - (self.delim.len() - 1);
                return Ok(Some(self.buf.drain(..n).collect()));
            }
            if !self.fill().await? {
                return Err(Self::truncated());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn multipart_parts_split_across_chunks() {
        let body = b"--XB\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\nhello\r\n--XB\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b\"\r\n\r\nworld!\r\n--XB--\r\n".to_vec();
        for split in [1usize, 3, 7, 1000] {
            let chunks: Vec<Result<Bytes, std::io::Error>> = body
                .chunks(split)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            let mut mp = Multipart::new(futures_util::stream::iter(chunks), "XB");
            let mut got = Vec::new();
            while let Some(h) = mp.next_part().await.unwrap() {
                let mut data = Vec::new();
                while let Some(c) = mp.chunk().await.unwrap() {
                    data.extend(c);
                }
                got.push((filename(&h).unwrap(), String::from_utf8(data).unwrap()));
            }
            assert_eq!(
                got,
                vec![
                    ("a.txt".into(), "hello".into()),
                    ("b".into(), "world!".into())
                ],
                "split {split}"
            );
        }
    }
}
