//! `lethe health`: one `grpc.health.v1.Health/Check` call against a running server, for the
//! container image's HEALTHCHECK and for scripts. Exits 0 only when the answer is SERVING.
use anyhow::{bail, Context, Result};
use std::time::Duration;
use tonic::transport::Endpoint;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

#[derive(Debug, Clone, clap::Args)]
pub struct HealthArgs {
    /// Server to check (`http://` is added when no scheme is given).
    #[arg(long, env = "LETHE_HEALTH_ADDR", default_value = "http://127.0.0.1:50051")]
    pub addr: String,
    /// Service to ask about; empty: the whole server. `lethe.v1.Inference` turns NOT_SERVING
    /// as soon as the server starts draining.
    #[arg(long, default_value = "")]
    pub service: String,
    /// Seconds allowed for connecting and answering, together.
    #[arg(long, default_value_t = 5.0)]
    pub timeout_secs: f64,
}

pub async fn run(args: &HealthArgs) -> Result<()> {
    let addr = if args.addr.contains("://") { args.addr.clone() } else { format!("http://{}", args.addr) };
    anyhow::ensure!(
        args.timeout_secs.is_finite() && args.timeout_secs > 0.0,
        "--timeout-secs must be a positive number"
    );
    let timeout = Duration::from_secs_f64(args.timeout_secs);
    let service =
        if args.service.is_empty() { "the server".to_string() } else { format!("{:?}", args.service) };
    let status = tokio::time::timeout(timeout, check(&addr, &args.service, timeout))
        .await
        .map_err(|_| anyhow::anyhow!("{addr}: no health answer within {} s", args.timeout_secs))??;
    match status {
        ServingStatus::Serving => {
            println!("{addr}: {service} is SERVING");
            Ok(())
        }
        other => bail!("{addr}: {service} is {} (not serving)", other.as_str_name()),
    }
}

async fn check(addr: &str, service: &str, timeout: Duration) -> Result<ServingStatus> {
    let channel = Endpoint::from_shared(addr.to_string())
        .with_context(|| format!("{addr:?} is not a valid address"))?
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect()
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    let reply = HealthClient::new(channel)
        .check(HealthCheckRequest { service: service.to_string() })
        .await
        .map_err(|status| match status.code() {
        tonic::Code::NotFound => {
            anyhow::anyhow!("{addr}: the server does not know the service {service:?} (NOT_FOUND)")
        }
        code => anyhow::anyhow!("{addr}: health check failed: {code:?}: {}", status.message()),
    })?;
    let raw = reply.into_inner().status;
    Ok(ServingStatus::try_from(raw).unwrap_or(ServingStatus::Unknown))
}
