//! The model's event stream for one request, sent once.
//!
//! reqwest-eventsource's `EventSource` keeps the request it was made from, to
//! reconnect; we turn reconnecting off (a retry would replay the whole answer), yet it
//! still held the request's JSON body — the prompt, the lesson sections, the
//! conversation so far: up to tens of KB — for each answer's whole stream. This stream
//! sends the request once and lets it go when the response comes. It yields the same
//! items as `EventSource` (`Event::Open` on a 200 `text/event-stream`, then the
//! messages, then `Error::StreamEnded`), so the answer's code reads them as before.
//! (Its content-type check allows what HTTP allows and the `mime` crate does not:
//! a space before `;`, an empty parameter.)

use std::pin::Pin;
use std::task::{Context, Poll};

use eventsource_stream::{EventStream, Eventsource};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::Stream;
use reqwest::header::{HeaderValue, CONTENT_TYPE};
use reqwest::{RequestBuilder, Response, StatusCode};
use reqwest_eventsource::{Error, Event};

type Body = BoxStream<'static, reqwest::Result<bytes::Bytes>>;

pub enum OneShotSource {
    /// The request is on its way; the future owns it until the response's head comes.
    Sending(BoxFuture<'static, reqwest::Result<Response>>),
    Streaming(Box<EventStream<Body>>),
    Closed,
}

impl OneShotSource {
    /// Fails at once for a request that cannot be built (an API key that is no header
    /// value): the answer is refused before it starts, not after.
    pub fn new(request: RequestBuilder) -> Result<OneShotSource, reqwest::Error> {
        let request = request.header(reqwest::header::ACCEPT, HeaderValue::from_static("text/event-stream"));
        let (client, request) = request.build_split();
        Ok(OneShotSource::Sending(Box::pin(client.execute(request?))))
    }

    /// Stops reading; dropping the response cancels the request.
    pub fn close(&mut self) {
        *self = OneShotSource::Closed;
    }
}

/// The checks `EventSource` makes: exactly 200, and a `text/event-stream` body.
fn check_response(response: Response) -> Result<Response, Error> {
    if response.status() != StatusCode::OK {
        return Err(Error::InvalidStatusCode(response.status(), response));
    }
    let content_type = response.headers().get(CONTENT_TYPE).cloned().unwrap_or(HeaderValue::from_static(""));
    let essence = content_type.to_str().unwrap_or("").split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("text/event-stream") {
        Ok(response)
    } else {
        Err(Error::InvalidContentType(content_type, response))
    }
}

impl Stream for OneShotSource {
    type Item = Result<Event, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match this {
            OneShotSource::Sending(sending) => match sending.as_mut().poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Err(error)) => {
                    this.close();
                    Poll::Ready(Some(Err(Error::Transport(error))))
                }
                Poll::Ready(Ok(response)) => match check_response(response) {
                    Ok(response) => {
                        let body: Body = Box::pin(response.bytes_stream());
                        *this = OneShotSource::Streaming(Box::new(body.eventsource()));
                        Poll::Ready(Some(Ok(Event::Open)))
                    }
                    Err(error) => {
                        this.close();
                        Poll::Ready(Some(Err(error)))
                    }
                },
            },
            OneShotSource::Streaming(events) => match Pin::new(events.as_mut()).poll_next(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Some(Ok(message))) => Poll::Ready(Some(Ok(Event::Message(message)))),
                Poll::Ready(Some(Err(error))) => {
                    this.close();
                    Poll::Ready(Some(Err(error.into())))
                }
                Poll::Ready(None) => {
                    this.close();
                    Poll::Ready(Some(Err(Error::StreamEnded)))
                }
            },
            OneShotSource::Closed => Poll::Ready(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, content_type: Option<&str>) -> Response {
        let mut builder = axum::http::Response::builder().status(status);
        if let Some(value) = content_type {
            builder = builder.header(CONTENT_TYPE, value);
        }
        Response::from(builder.body(String::new()).unwrap())
    }

    #[test]
    fn only_a_200_event_stream_opens() {
        for opens in [
            "text/event-stream",
            "text/event-stream; charset=utf-8",
            "text/event-stream ; charset=utf-8",
            "Text/Event-Stream",
        ] {
            assert!(check_response(response(200, Some(opens))).is_ok(), "{opens}");
        }
        for (content_type, shown) in [(Some("text/html; charset=utf-8"), "text/html; charset=utf-8"), (None, "")] {
            match check_response(response(200, content_type)) {
                Err(Error::InvalidContentType(value, _)) => assert_eq!(value, shown),
                other => panic!("{content_type:?}: {other:?}"),
            }
        }
        match check_response(response(503, Some("text/event-stream"))) {
            Err(Error::InvalidStatusCode(status, _)) => assert_eq!(status, 503),
            other => panic!("{other:?}"),
        }
    }
}
