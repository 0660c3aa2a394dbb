//! Every way an RPC can fail, typed, and the one mapping from those errors to gRPC statuses.
//! Handlers return [`Error`]; tonic gets a `Status` only here, so a code is chosen once per
//! kind of failure and the `code` metric label follows from it. Messages say what to change
//! and never hold forgotten text.
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
            Error::Reload(_) => Code::InvalidArgument,
            Error::Unauthenticated(_) => Code::Unauthenticated,
        }
    }
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
            (Error::Reload(ReloadError::NotAFile("/x".into())), Code::InvalidArgument),
            (Error::Unauthenticated("a token"), Code::Unauthenticated),
        ];
        for (error, code) in cases {
            let message = error.to_string();
            let status = Status::from(error);
            assert_eq!(status.code(), code, "{message}");
            assert_eq!(status.message(), message);
        }
        let busy = Status::from(Error::QueueFull { running: 2, queued: 16 });
        assert_eq!(
            busy.message(),
            "server busy: 2 generations running and the queue of 16 is full; retry later"
        );
    }
}
