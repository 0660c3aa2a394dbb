//! RPC telemetry as a tower layer around every service of a listener: each call is counted by
//! method and gRPC status code (`lethe_requests_total`) and timed
//! (`lethe_request_duration_seconds`), rejected authentication and early validation errors
//! included. A status comes in the response headers (an error before any message) or in the
//! trailers that end the body; a stream is counted at its end, and a body dropped before its
//! trailers (the client went away) counts as CANCELLED.
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;

#[derive(Debug, Clone, Copy, Default)]
pub struct TelemetryLayer;

impl<S> tower::Layer<S> for TelemetryLayer {
    type Service = Telemetry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Telemetry { inner }
    }
}

#[derive(Debug, Clone)]
pub struct Telemetry<S> {
    inner: S,
}

impl<S, B, RB> tower::Service<http::Request<B>> for Telemetry<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
{
    type Response = http::Response<Counted<RB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let call = Call { method: method_label(request.uri().path()), started: Instant::now() };
        ResponseFuture { inner: self.inner.call(request), call: Some(call) }
    }
}

/// One call being measured; dropped before it learnt its status, it was cancelled.
struct Call {
    method: &'static str,
    started: Instant,
}

impl Call {
    fn finish(self, code: &'static str) {
        crate::metrics::request_done(self.method, code, self.started.elapsed());
        std::mem::forget(self);
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        crate::metrics::request_done(self.method, "CANCELLED", self.started.elapsed());
    }
}

pin_project! {
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        call: Option<Call>,
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<RB>, E>>,
{
    type Output = Result<http::Response<Counted<RB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let call = this.call.take();
        Poll::Ready(result.map(|response| {
            let call = match (call, grpc_status(response.headers())) {
                (Some(call), Some(code)) => {
                    call.finish(code);
                    None
                }
                (call, _) => call,
            };
            response.map(|inner| Counted { inner, call })
        }))
    }
}

pin_project! {
    /// A response body that records the call when its trailers (the gRPC status) go out.
    pub struct Counted<B> {
        #[pin]
        inner: B,
        call: Option<Call>,
    }
}

impl<B: Body> Body for Counted<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        let code = match &frame {
            Some(Ok(frame)) => frame.trailers_ref().map(|t| grpc_status(t).unwrap_or("UNKNOWN")),
            // The body failed on the way out, or ended without a status.
            Some(Err(_)) | None => Some("UNKNOWN"),
        };
        if let Some(code) = code {
            if let Some(call) = this.call.take() {
                call.finish(code);
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The `grpc-status` of headers or trailers, as its canonical name.
fn grpc_status(headers: &http::HeaderMap) -> Option<&'static str> {
    let code: usize = headers.get("grpc-status")?.to_str().ok()?.parse().ok()?;
    Some(CODES.get(code).copied().unwrap_or("UNKNOWN"))
}

/// gRPC status codes by number (the `code` label).
const CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The `method` label of a request path. Paths are client input: only the methods this
/// server serves get a label of their own, anything else is `unknown` (bounded cardinality).
fn method_label(path: &str) -> &'static str {
    let Some((service, method)) = path.strip_prefix('/').and_then(|p| p.split_once('/')) else {
        return "unknown";
    };
    let known = match service {
        "lethe.v1.Inference" => INFERENCE_METHODS,
        "lethe.v1.ForgetAdmin" => ADMIN_METHODS,
        "grpc.health.v1.Health" => return health_label(method),
        "grpc.reflection.v1.ServerReflection" | "grpc.reflection.v1alpha.ServerReflection" => {
            return if method == "ServerReflectionInfo" { "ServerReflectionInfo" } else { "unknown" };
        }
        _ => return "unknown",
    };
    known.iter().find(|m| **m == method).copied().unwrap_or("unknown")
}

fn health_label(method: &str) -> &'static str {
    match method {
        "Check" => "Health/Check",
        "Watch" => "Health/Watch",
        _ => "unknown",
    }
}

/// The RPCs of `proto/lethe/v1/*.proto` (a test keeps these lists equal to the files).
const INFERENCE_METHODS: &[&str] = &["Generate", "GenerateStream", "Check", "GetModelInfo"];
const ADMIN_METHODS: &[&str] =
    &["PutSet", "AddEntries", "RemoveEntries", "DeleteSet", "ListSets", "Status", "ReloadModel"];

#[cfg(test)]
mod tests {
    use super::*;

    fn rpcs(proto: &str) -> Vec<String> {
        proto
            .lines()
            .filter_map(|l| l.trim().strip_prefix("rpc "))
            .map(|l| l.split('(').next().unwrap().trim().to_string())
            .collect()
    }

    #[test]
    fn every_rpc_of_the_protos_has_its_label() {
        assert_eq!(rpcs(include_str!("../../proto/lethe/v1/inference.proto")), INFERENCE_METHODS);
        assert_eq!(rpcs(include_str!("../../proto/lethe/v1/admin.proto")), ADMIN_METHODS);
    }

    #[test]
    fn labels_are_bounded_whatever_the_path() {
        assert_eq!(method_label("/lethe.v1.Inference/Generate"), "Generate");
        assert_eq!(method_label("/lethe.v1.ForgetAdmin/Status"), "Status");
        assert_eq!(method_label("/grpc.health.v1.Health/Check"), "Health/Check");
        assert_eq!(method_label("/lethe.v1.Inference/SomethingElse"), "unknown");
        assert_eq!(method_label("/x/y"), "unknown");
        assert_eq!(method_label("garbage"), "unknown");
    }

    #[test]
    fn the_status_comes_from_headers_or_trailers() {
        let mut h = http::HeaderMap::new();
        assert_eq!(grpc_status(&h), None);
        h.insert("grpc-status", "16".parse().unwrap());
        assert_eq!(grpc_status(&h), Some("UNAUTHENTICATED"));
        h.insert("grpc-status", "99".parse().unwrap());
        assert_eq!(grpc_status(&h), Some("UNKNOWN"));
    }
}
