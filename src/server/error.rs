//! Every way a request can fail, typed, and the one mapping from those errors to gRPC statuses
//! and to HTTP statuses with OpenAI-shaped bodies (the `/v1` front door). Handlers return
//! [`Error`]; tonic gets a `Status` and HTTP a status code only here, so a code is chosen once
//! per kind of failure and the metric labels follow from it. Messages say what to change and
//! never hold forgotten text (an upstream's messages are cut short and only passed on for
//! errors about the request).
use super::validate::ValidationError;
use crate::live::ChangeError;
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("server busy: {running} generations running and the queue of {queued} is full; retry later")]
    QueueFull { running: usize, queued: usize },
    /// The client's deadline passed; the message says where.
    #[error("deadline exceeded {0}")]
    DeadlineExceeded(String),
    #[error("client went away")]
    Cancelled,
    #[error("the guard failed and this server fails closed; nothing more was delivered")]
    GuardFailedClosed,
    #[error("the guard failed while checking the text")]
    CheckFailed,
    #[error("generation failed inside the model runtime")]
    Model,
    #[error(transparent)]
    Change(#[from] ChangeError),
    #[error(transparent)]
    Reload(#[from] ReloadError),
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// A server-side fault with nothing the client can change (a task aborted, ...).
    #[error("{0}")]
    Internal(String),
    /// A request field the HTTP front door cannot honour or parse; `param` names it.
    #[error("{message}")]
    BadRequest { param: Option<String>, message: String },
    #[error("the model {0:?} is not served here (GET /v1/models lists the models)")]
    UnknownModel(String),
    /// A request for the served model on a server that loads none (it only guards upstreams).
    #[error(
        "this server loads no local model (`model` is unset and upstreams are configured): set the request's \
         `model` to a model of an upstream (GET /v1/models lists them), or start the server with --model"
    )]
    NoLocalModel,
    #[error("no route {0:?}: the API is /v1/chat/completions, /v1/completions, /v1/models and /health")]
    NoRoute(String),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("the server is shutting down; retry on another replica")]
    Draining,
}

/// Why an upstream engine did not give a complete, well-formed stream. `upstream` is the
/// configured name, never a client-supplied string.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream {0} cannot be reached")]
    Unreachable(String),
    #[error("upstream {upstream} did not answer within {secs} s")]
    Timeout { upstream: String, secs: f64 },
    /// The upstream refused the request itself (4xx other than 401/403/429): the client's to fix.
    #[error("upstream {upstream} rejected the request: {message}")]
    Rejected { upstream: String, status: u16, message: String },
    #[error("upstream {0} refused this server's credentials (its api_key_file)")]
    Auth(String),
    #[error("upstream {upstream} is busy; retry later")]
    Busy { upstream: String, retry_after: Option<u64> },
    #[error("upstream {upstream} failed with HTTP {status}")]
    Failed { upstream: String, status: u16 },
    /// The stream broke after it began: `kind` is one of `truncated`, `error_event`,
    /// `malformed`, `too_large`, `idle_timeout`.
    #[error("the stream from upstream {upstream} broke ({kind}); the text held back was not delivered")]
    Stream { upstream: String, kind: &'static str },
}

/// An error as the HTTP front door answers it: status, OpenAI `type`, `code`, `param`, and
/// the seconds a client should wait before retrying.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpError {
    pub status: u16,
    pub kind: &'static str,
    pub code: Option<String>,
    pub param: Option<String>,
    pub retry_after: Option<u64>,
    pub message: String,
}

impl HttpError {
    /// The body: `{"error": {"message", "type", "param", "code"}}`, as OpenAI clients parse it.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

/// Why `ReloadModel` did not swap a model in.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0} is not a file on the server")]
    NotAFile(String),
    #[error("{path} cannot be served: {reason}")]
    Unservable { path: String, reason: String },
}

impl Error {
    pub fn code(&self) -> Code {
        match self {
            Error::Invalid(ValidationError::Unencodable(_)) => Code::Internal,
            Error::Invalid(_) => Code::InvalidArgument,
            Error::QueueFull { .. } => Code::ResourceExhausted,
            Error::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Error::Cancelled => Code::Cancelled,
            Error::GuardFailedClosed | Error::CheckFailed | Error::Model | Error::Internal(_) => {
                Code::Internal
            }
            Error::Change(ChangeError::Invalid(_)) => Code::InvalidArgument,
            Error::Change(ChangeError::FileManaged(_)) => Code::FailedPrecondition,
            Error::Change(ChangeError::Failed(_)) => Code::Internal,
            Error::Change(ChangeError::Unavailable(_)) => Code::Unavailable,
            Error::Reload(_) => Code::InvalidArgument,
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::BadRequest { .. } => Code::InvalidArgument,
            Error::UnknownModel(_) | Error::NoRoute(_) => Code::NotFound,
            Error::NoLocalModel => Code::FailedPrecondition,
            Error::Draining => Code::Unavailable,
            Error::Upstream(e) => match e {
                UpstreamError::Rejected { status: 404, .. } => Code::NotFound,
                UpstreamError::Rejected { .. } => Code::InvalidArgument,
                UpstreamError::Busy { .. } => Code::ResourceExhausted,
                UpstreamError::Timeout { .. } | UpstreamError::Stream { kind: "idle_timeout", .. } => {
                    Code::DeadlineExceeded
                }
                _ => Code::Unavailable,
            },
        }
    }

    /// The HTTP form of this error (front door `/v1`).
    pub fn http(&self) -> HttpError {
        let (status, kind, code, retry_after) = match self {
            Error::Invalid(ValidationError::Unencodable(_)) => (500, "server_error", None, None),
            Error::Invalid(_) | Error::BadRequest { .. } => (400, "invalid_request_error", None, None),
            Error::QueueFull { .. } => (429, "rate_limit_error", Some("queue_full"), Some(1)),
            Error::DeadlineExceeded(_) => (504, "timeout_error", Some("deadline_exceeded"), None),
            Error::Cancelled => (499, "cancelled", None, None),
            Error::GuardFailedClosed | Error::CheckFailed => {
                (500, "server_error", Some("guard_failed"), None)
            }
            Error::Model | Error::Internal(_) => (500, "server_error", None, None),
            Error::Change(ChangeError::Invalid(_)) | Error::Reload(_) => {
                (400, "invalid_request_error", None, None)
            }
            Error::Change(ChangeError::FileManaged(_)) => (409, "invalid_request_error", None, None),
            Error::Change(ChangeError::Failed(_)) => (500, "server_error", None, None),
            Error::Change(ChangeError::Unavailable(_)) => (503, "server_error", None, Some(1)),
            Error::Unauthenticated(_) => (401, "authentication_error", Some("invalid_api_key"), None),
            Error::UnknownModel(_) => (404, "invalid_request_error", Some("model_not_found"), None),
            Error::NoRoute(_) => (404, "invalid_request_error", Some("unknown_url"), None),
            Error::NoLocalModel => (400, "invalid_request_error", Some("no_local_model"), None),
            Error::Draining => (503, "server_error", Some("draining"), Some(1)),
            Error::Upstream(e) => match e {
                UpstreamError::Unreachable(_) => (502, "upstream_error", Some("upstream_unavailable"), None),
                UpstreamError::Timeout { .. } => (504, "upstream_error", Some("upstream_timeout"), None),
                UpstreamError::Rejected { status, .. } => (*status, "invalid_request_error", None, None),
                UpstreamError::Auth(_) => (502, "upstream_error", Some("upstream_auth_failed"), None),
                UpstreamError::Busy { retry_after, .. } => {
                    (429, "rate_limit_error", Some("upstream_busy"), Some(retry_after.unwrap_or(1)))
                }
                UpstreamError::Failed { .. } => (502, "upstream_error", Some("upstream_error"), None),
                UpstreamError::Stream { kind: "idle_timeout", .. } => {
                    (504, "upstream_error", Some("upstream_timeout"), None)
                }
                UpstreamError::Stream { .. } => (502, "upstream_error", Some("upstream_truncated"), None),
            },
        };
        let param = match self {
            Error::BadRequest { param, .. } => param.clone(),
            Error::Invalid(v) => validation_param(v).map(String::from),
            Error::UnknownModel(_) | Error::NoLocalModel => Some("model".into()),
            _ => None,
        };
        HttpError {
            status,
            kind,
            code: code.map(String::from),
            param,
            retry_after,
            message: self.to_string(),
        }
    }
}

/// The OpenAI request field a validation error is about.
fn validation_param(v: &ValidationError) -> Option<&'static str> {
    use ValidationError as V;
    Some(match v {
        V::NoPrompt | V::PromptAndMessages => "messages",
        V::WhitespacePrompt | V::PromptTooLong { .. } | V::PromptTooLarge { .. } => "prompt",
        V::UnknownRole { .. } | V::EmptyMessage(_) | V::Template(_) | V::TooManyMessages { .. } => "messages",
        V::MaxNewTokens { .. } | V::MinNewTokens { .. } | V::IgnoreEosAndMinNewTokens => "max_tokens",
        V::Temperature(_) => "temperature",
        V::TopP(_) => "top_p",
        V::TooManyStops { .. } | V::EmptyStop => "stop",
        _ => return None,
    })
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        Status::new(e.code(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_failure_has_its_code_and_message() {
        let cases = [
            (Error::Invalid(ValidationError::NoPrompt), Code::InvalidArgument),
            (Error::Invalid(ValidationError::Unencodable("x".into())), Code::Internal),
            (Error::QueueFull { running: 2, queued: 16 }, Code::ResourceExhausted),
            (Error::DeadlineExceeded("while queued".into()), Code::DeadlineExceeded),
            (Error::Change(ChangeError::FileManaged("s".into())), Code::FailedPrecondition),
            (Error::Change(ChangeError::Failed("disk".into())), Code::Internal),
            (Error::Change(ChangeError::Unavailable("database".into())), Code::Unavailable),
            (Error::Reload(ReloadError::NotAFile("/x".into())), Code::InvalidArgument),
            (Error::Unauthenticated("a token"), Code::Unauthenticated),
            (Error::NoLocalModel, Code::FailedPrecondition),
        ];
        for (error, code) in cases {
            let message = error.to_string();
            let status = Status::from(error);
            assert_eq!(status.code(), code, "{message}");
            assert_eq!(status.message(), message);
        }
        let http = |e: Error| e.http();
        assert_eq!(http(Error::QueueFull { running: 2, queued: 16 }).retry_after, Some(1));
        let bad = http(Error::Invalid(ValidationError::TopP(2.0)));
        assert_eq!((bad.status, bad.param.as_deref()), (400, Some("top_p")));
        assert_eq!(http(Error::UnknownModel("x".into())).status, 404);
        let no_local = http(Error::NoLocalModel);
        assert_eq!((no_local.status, no_local.param.as_deref()), (400, Some("model")));
        assert_eq!(http(Error::Unauthenticated("a token")).status, 401);
        assert_eq!(http(Error::GuardFailedClosed).status, 500);
        assert_eq!((http(Error::Draining).status, http(Error::Draining).retry_after), (503, Some(1)));
        let up = |e: UpstreamError| Error::Upstream(e).http().status;
        assert_eq!(up(UpstreamError::Unreachable("u".into())), 502);
        assert_eq!(up(UpstreamError::Timeout { upstream: "u".into(), secs: 1.0 }), 504);
        assert_eq!(up(UpstreamError::Auth("u".into())), 502);
        assert_eq!(
            up(UpstreamError::Rejected { upstream: "u".into(), status: 422, message: "m".into() }),
            422
        );
        assert_eq!(up(UpstreamError::Busy { upstream: "u".into(), retry_after: Some(3) }), 429);
        let body = http(Error::UnknownModel("gpt".into())).body();
        assert_eq!(body["error"]["code"], "model_not_found");
        assert_eq!(body["error"]["param"], "model");
        let busy = Status::from(Error::QueueFull { running: 2, queued: 16 });
        assert_eq!(
            busy.message(),
            "server busy: 2 generations running and the queue of 16 is full; retry later"
        );
    }
}
