//! JSON lines from a response body.

use futures_util::Stream;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::de::DeserializeOwned;

use crate::ClientError;

/// Each line of the body as a `T`; the stream ends with the body.
pub(crate) fn ndjson<T: DeserializeOwned + Send + 'static>(
    body: Incoming,
) -> impl Stream<Item = Result<T, ClientError>> + Send + Unpin {
    Box::pin(futures_util::stream::unfold(
        (body, Vec::<u8>::new(), false),
        |(mut body, mut buf, done)| async move {
            loop {
                if let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=nl).collect();
                    let line = &line[..line.len() - 1];
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    let item = serde_json::from_slice(line)
                        .map_err(|e| ClientError::Decode(format!("stream line: {e}")));
                    return Some((item, (body, buf, done)));
                }
                if done {
                    if buf.iter().all(u8::is_ascii_whitespace) {
                        return None;
                    }
                    let rest = std::mem::take(&mut buf);
                    let item = serde_json::from_slice(&rest)
                        .map_err(|e| ClientError::Decode(format!("stream line: {e}")));
                    return Some((item, (body, buf, true)));
                }
                match body.frame().await {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            buf.extend_from_slice(&data);
                        }
                    }
                    Some(Err(e)) => {
                        let err = ClientError::Decode(format!("stream broke: {e}"));
                        return Some((Err(err), (body, Vec::new(), true)));
                    }
                    None => {
                        return if buf.is_empty() {
                            None
                        } else {
                            let rest = std::mem::take(&mut buf);
                            let item = serde_json::from_slice(&rest)
                                .map_err(|e| ClientError::Decode(format!("stream line: {e}")));
                            Some((item, (body, buf, true)))
                        };
                    }
                }
            }
        },
    ))
}
