//! Requests to etcd with what etcd-client does not do itself: a timeout on every request (a
//! SIGSTOPped leader otherwise hangs the call) and retries of the failures that another
//! attempt (often another member) may not have: `Unavailable`, `Cancelled`, timeouts, broken
//! connections (etcd-client keeps sending part of the requests to a dead member).

use std::future::Future;
use std::time::{Duration, Instant};

use etcd_client::Error as EtcdError;
use tonic::Code;

/// How long one request may take before it is abandoned and retried.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How long all attempts of one call may take: enough for a 3-member cluster to elect a new
/// leader (about 1.5 s measured) a few times over.
pub const CALL_BUDGET: Duration = Duration::from_secs(15);

/// Why a call failed, in words for an `io` error value.
#[derive(Debug)]
pub struct Failed {
    /// What went wrong last.
    pub message: String,
}

/// Whether `e` may pass on another attempt.
fn retryable(e: &EtcdError) -> bool {
    match e {
        EtcdError::GRpcStatus(s) => matches!(
            s.code(),
            Code::Unavailable | Code::Cancelled | Code::DeadlineExceeded | Code::Unknown
        ),
        EtcdError::TransportError(_) | EtcdError::IoError(_) => true,
        EtcdError::LeaseKeepAliveError(_) | EtcdError::WatchError(_) => true,
        _ => false,
    }
}

/// A readable message for `e`: the gRPC message without internals.
pub fn describe(e: &EtcdError) -> String {
    match e {
        EtcdError::GRpcStatus(s) => format!("{} ({:?})", s.message(), s.code()),
        other => other.to_string(),
    }
}

/// Run `attempt` until it succeeds, fails for good, or [`CALL_BUDGET`] (or `budget`) runs out.
/// Reports whether an earlier attempt may have been applied by the server (it timed out, or
/// the connection broke after sending): a write's effect must then be checked, not assumed.
pub async fn retrying<T, F, Fut>(budget: Duration, mut attempt: F) -> Result<(T, bool), Failed>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, EtcdError>>,
{
    let until = Instant::now() + budget.min(CALL_BUDGET);
    let mut ambiguous = false;
    let mut pause = Duration::from_millis(20);
    loop {
        let message = match tokio::time::timeout(REQUEST_TIMEOUT, attempt()).await {
            Ok(Ok(v)) => return Ok((v, ambiguous)),
            Ok(Err(e)) if retryable(&e) => {
                // A refused connection sent nothing; anything else may have been applied.
                ambiguous |=
                    !matches!(&e, EtcdError::GRpcStatus(s) if s.code() == Code::Unavailable);
                describe(&e)
            }
            Ok(Err(e)) => {
                return Err(Failed {
                    message: describe(&e),
                });
            }
            Err(_) => {
                ambiguous = true;
                format!("no answer within {} s", REQUEST_TIMEOUT.as_secs())
            }
        };
        if Instant::now() + pause >= until {
            return Err(Failed { message });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}
