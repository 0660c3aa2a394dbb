//! One configuration struct, filled from (lowest to highest precedence) built-in defaults, a
//! TOML file, `LETHE_*` environment variables and command-line flags.
use crate::forget::StoreMode;
use crate::guard::GuardConfig;
use crate::model::ServedFormat;
use anyhow::{Context, Result};
use clap::Args;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The model served when none is configured and no upstream is.
pub const DEFAULT_MODEL: &str = "models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// gRPC listen address (inference, health, reflection).
    pub listen: SocketAddr,
    /// Prometheus `/metrics` listen address.
    pub metrics_listen: SocketAddr,
    /// GGUF model file to serve. Unset: the default SmolLM2 file, unless upstreams are
    /// configured, in which case no local model is loaded (see [`Config::model_path`]).
    pub model: Option<PathBuf>,
    /// Weight format the model is served in.
    pub served_format: ServedFormat,
    /// Generations that run at once; more wait in the queue.
    pub max_concurrent_generations: usize,
    /// Requests that may wait for a generation slot; beyond it RESOURCE_EXHAUSTED.
    pub max_queued_requests: usize,
    /// CPU threads the model's matrix products use per call; 0 = the cores divided among the
    /// generation slots (see `Config::threads_per_generation`).
    pub threads_per_generation: usize,
    /// Upper limit a request may ask for in `max_new_tokens`.
    pub max_new_tokens_limit: u32,
    /// `max_new_tokens` when a request does not set it.
    pub default_max_new_tokens: u32,
    /// `temperature` when a request does not set it (0 = greedy).
    pub default_temperature: f32,
    /// Largest accepted request message, in bytes.
    pub max_request_bytes: usize,
    /// Largest text one `Check` call checks, in bytes (with the semantic layer a check costs
    /// about 0.15 CPU-s per KiB on 2 cores).
    pub max_check_bytes: usize,
    /// On SIGTERM, how long in-flight requests may run before the server exits anyway.
    pub drain_timeout_secs: f64,
    /// Open connections at most (both listeners each); 0: three quarters of the descriptor limit.
    pub max_connections: usize,
    /// A new connection that sends nothing for this long is closed.
    pub first_byte_timeout_secs: f64,
    pub log_format: LogFormat,
    /// Log prompts and outputs (debugging only: they may contain forgotten content).
    pub log_content: bool,
    /// The runtime suppression layer: forget list, per-set policies, layer parameters.
    pub guard: GuardConfig,
    /// Directory of the durable forget store (admin API changes). Unset: the admin API can
    /// read but not change forget lists.
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL URL of the forget store shared by every replica (`postgres://user@host/db`),
    /// instead of `data_dir`. Without a password in it, `database_password_file` gives one.
    pub database_url: Option<String>,
    /// File holding the database password.
    pub database_password_file: Option<PathBuf>,
    /// PEM CA certificate(s) of the database server: with it, TLS to the database, the server's
    /// certificate and host name verified (`sslmode=require` in the URL makes TLS mandatory).
    pub database_ca_file: Option<PathBuf>,
    /// File holding the admin bearer token (or set LETHE_ADMIN_TOKEN).
    pub admin_token_file: Option<PathBuf>,
    /// Serve ForgetAdmin on its own address instead of the inference listener.
    pub admin_listen: Option<SocketAddr>,
    /// File holding a bearer token that inference calls must present (or set
    /// LETHE_INFERENCE_TOKEN). Unset: inference is open.
    pub inference_token_file: Option<PathBuf>,
    /// Reload the forget file or folder when it changes.
    pub watch_forget: bool,
    /// What the durable store keeps of an entry: its text, or only its fingerprints.
    pub forget_store: StoreMode,
    /// Serve a forget store that holds fewer records than it acknowledged (a restored backup):
    /// a one-time decision of an operator, so a flag only, never in the config file.
    #[serde(skip)]
    pub accept_store_rollback: bool,
    /// TLS for the gRPC listeners (inference and admin): PEM certificate chain and its key.
    /// Unset: plaintext.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// PEM CA of client certificates (mTLS): a client presenting a certificate it signed may
    /// call ForgetAdmin without a token. Clients without a certificate are still accepted.
    pub tls_client_ca_file: Option<PathBuf>,
    /// OpenAI-compatible HTTP listen address (`/v1/...`, `/health`). Unset: no HTTP front door.
    pub http_listen: Option<SocketAddr>,
    /// OpenAI-compatible engines whose streams Lethe guards (`[[upstream]]` tables).
    pub upstream: Vec<UpstreamConfig>,
}

/// One upstream engine (vLLM, TGI, llama.cpp, another Lethe) speaking the OpenAI HTTP API.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The `upstream` metric label and the name in logs.
    pub name: String,
    /// Base URL of its OpenAI API, as an OpenAI client's base_url: `http://host:8000/v1`, or
    /// `https://...` with `tls_ca_file`.
    pub url: String,
    /// PEM file of the CA certificates that may sign an `https://` upstream's certificate
    /// (required for `https://`; the system's bundle, e.g. /etc/ssl/certs/ca-certificates.crt,
    /// trusts the public CAs).
    pub tls_ca_file: Option<PathBuf>,
    /// Model ids routed to it. Empty: every model id the server does not serve itself.
    pub models: Vec<String>,
    /// File holding the key Lethe presents to it (`authorization: Bearer`).
    pub api_key_file: Option<PathBuf>,
    pub connect_timeout_secs: f64,
    /// From sending the request to the response head.
    pub first_byte_timeout_secs: f64,
    /// Longest silence inside a stream (keep-alive comments count as traffic).
    pub idle_timeout_secs: f64,
    /// Largest server-sent event accepted; a bigger one ends the stream (fail closed).
    pub max_event_bytes: usize,
    /// `mask` sets cannot mask another engine's decoding: `block` (default) or `monitor`.
    pub mask_as: MaskAs,
    /// Requests forwarded at once; more get 429 (each holds a guard thread and a connection).
    pub max_in_flight: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MaskAs {
    #[default]
    Block,
    Monitor,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            name: "upstream".into(),
            url: String::new(),
            tls_ca_file: None,
            models: Vec::new(),
            api_key_file: None,
            connect_timeout_secs: 5.0,
            first_byte_timeout_secs: 120.0,
            idle_timeout_secs: 60.0,
            max_event_bytes: 1 << 20,
            mask_as: MaskAs::Block,
            max_in_flight: 64,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:50051".parse().expect("valid literal"),
            metrics_listen: "127.0.0.1:9464".parse().expect("valid literal"),
            model: None,
            served_format: ServedFormat::default(),
            max_concurrent_generations: 2,
            max_queued_requests: 16,
            threads_per_generation: 0,
            max_new_tokens_limit: 1024,
            default_max_new_tokens: 256,
            default_temperature: 0.7,
            max_request_bytes: 1 << 20,
            max_check_bytes: 64 << 10,
            drain_timeout_secs: 30.0,
            max_connections: 0,
            first_byte_timeout_secs: 10.0,
            log_format: LogFormat::default(),
            log_content: false,
            guard: GuardConfig::default(),
            data_dir: None,
            database_url: None,
            database_password_file: None,
            database_ca_file: None,
            admin_token_file: None,
            admin_listen: None,
            inference_token_file: None,
            watch_forget: true,
            forget_store: StoreMode::default(),
            accept_store_rollback: false,
            tls_cert_file: None,
            tls_key_file: None,
            tls_client_ca_file: None,
            http_listen: None,
            upstream: Vec::new(),
        }
    }
}

/// Flags of `lethe serve`; each also reads a `LETHE_*` environment variable.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// TOML config file (keys as the long flags, with `_` for `-`).
    #[arg(long, env = "LETHE_CONFIG")]
    pub config: Option<PathBuf>,
    /// gRPC listen address [default: 127.0.0.1:50051].
    #[arg(long, env = "LETHE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Prometheus /metrics listen address [default: 127.0.0.1:9464].
    #[arg(long, env = "LETHE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// GGUF model file [default: models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf, or none
    /// when an upstream is configured].
    #[arg(long, env = "LETHE_MODEL")]
    pub model: Option<PathBuf>,
    /// Weight format to serve in [default: q8_0].
    #[arg(long, env = "LETHE_SERVED_FORMAT")]
    pub served_format: Option<ServedFormat>,
    /// Generations running at once [default: 2].
    #[arg(long, env = "LETHE_MAX_CONCURRENT_GENERATIONS")]
    pub max_concurrent_generations: Option<usize>,
    /// Requests allowed to wait for a slot; more get RESOURCE_EXHAUSTED [default: 16].
    #[arg(long, env = "LETHE_MAX_QUEUED_REQUESTS")]
    pub max_queued_requests: Option<usize>,
    /// CPU threads per model call; 0 = cores / max_concurrent_generations [default: 0].
    #[arg(long, env = "LETHE_THREADS_PER_GENERATION")]
    pub threads_per_generation: Option<usize>,
    /// Largest max_new_tokens a request may ask for [default: 1024].
    #[arg(long, env = "LETHE_MAX_NEW_TOKENS_LIMIT")]
    pub max_new_tokens_limit: Option<u32>,
    /// max_new_tokens for requests that do not set it [default: 256].
    #[arg(long, env = "LETHE_DEFAULT_MAX_NEW_TOKENS")]
    pub default_max_new_tokens: Option<u32>,
    /// temperature for requests that do not set it [default: 0.7].
    #[arg(long, env = "LETHE_DEFAULT_TEMPERATURE")]
    pub default_temperature: Option<f32>,
    /// Largest request message in bytes [default: 1048576].
    #[arg(long, env = "LETHE_MAX_REQUEST_BYTES")]
    pub max_request_bytes: Option<usize>,
    /// Largest text a Check call checks, in bytes [default: 65536].
    #[arg(long, env = "LETHE_MAX_CHECK_BYTES")]
    pub max_check_bytes: Option<usize>,
    /// Open connections at most per listener [default: 0 = 3/4 of the descriptor limit].
    #[arg(long, env = "LETHE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Seconds a new connection may stay silent before it is closed [default: 10].
    #[arg(long, env = "LETHE_FIRST_BYTE_TIMEOUT_SECS")]
    pub first_byte_timeout_secs: Option<f64>,
    /// Seconds in-flight requests may take to finish after SIGTERM [default: 30].
    #[arg(long, env = "LETHE_DRAIN_TIMEOUT_SECS")]
    pub drain_timeout_secs: Option<f64>,
    /// Log format [default: text].
    #[arg(long, env = "LETHE_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Log prompt and output text (debugging only; it may contain forgotten content).
    #[arg(long, env = "LETHE_LOG_CONTENT")]
    pub log_content: Option<bool>,
    /// Forget list: a .jsonl file or a folder of them [default: none].
    #[arg(long, env = "LETHE_FORGET")]
    pub forget: Option<PathBuf>,
    /// Sentence-embedder folder for the semantic layer [default: models/minilm].
    #[arg(long, env = "LETHE_EMBEDDER")]
    pub embedder: Option<PathBuf>,
    /// Turn the semantic layer off (no embedder is loaded).
    #[arg(long, env = "LETHE_NO_SEMANTIC")]
    pub no_semantic: bool,
    /// Newest words of a stream held back until the guard has cleared them [default: 12].
    #[arg(long, env = "LETHE_HOLD_BACK_WORDS")]
    pub hold_back_words: Option<usize>,
    /// Directory of the durable forget store (admin API changes) [default: none].
    #[arg(long, env = "LETHE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL URL of the forget store shared by every replica, instead of --data-dir.
    #[arg(long, env = "LETHE_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// File holding the database password (not in the URL).
    #[arg(long, env = "LETHE_DATABASE_PASSWORD_FILE")]
    pub database_password_file: Option<PathBuf>,
    /// PEM CA of the database server: TLS to the database, its certificate verified.
    #[arg(long, env = "LETHE_DATABASE_CA_FILE")]
    pub database_ca_file: Option<PathBuf>,
    /// File holding the admin bearer token; LETHE_ADMIN_TOKEN gives the token itself.
    #[arg(long, env = "LETHE_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Serve ForgetAdmin on its own address [default: the gRPC listener].
    #[arg(long, env = "LETHE_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// File holding a token inference calls must present; LETHE_INFERENCE_TOKEN gives the token itself.
    #[arg(long, env = "LETHE_INFERENCE_TOKEN_FILE")]
    pub inference_token_file: Option<PathBuf>,
    /// Reload the forget file or folder when it changes [default: true].
    #[arg(long, env = "LETHE_WATCH_FORGET")]
    pub watch_forget: Option<bool>,
    /// What the durable store keeps: text, or fingerprints only [default: text].
    #[arg(long, env = "LETHE_FORGET_STORE")]
    pub forget_store: Option<StoreMode>,
    /// Start even if the forget store holds fewer records than it acknowledged (after
    /// restoring a backup on purpose); logged and counted.
    #[arg(long)]
    pub accept_store_rollback: bool,
    /// PEM certificate chain for TLS on the gRPC listeners [default: plaintext].
    #[arg(long, env = "LETHE_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of --tls-cert-file.
    #[arg(long, env = "LETHE_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// PEM CA whose client certificates authenticate admin calls (mTLS).
    #[arg(long, env = "LETHE_TLS_CLIENT_CA_FILE")]
    pub tls_client_ca_file: Option<PathBuf>,
    /// OpenAI-compatible HTTP front door (/v1) listen address [default: none].
    #[arg(long, env = "LETHE_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,
    /// Base URL (…/v1) of an OpenAI-compatible engine to guard; it gets every model id not
    /// served here. Several engines: `[[upstream]]` tables in the config file.
    #[arg(long, env = "LETHE_UPSTREAM")]
    pub upstream: Option<String>,
    /// PEM CA bundle that verifies an https:// --upstream (its tls_ca_file).
    #[arg(long, env = "LETHE_UPSTREAM_TLS_CA_FILE")]
    pub upstream_tls_ca_file: Option<PathBuf>,
}

impl Config {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("config file {}", path.display()))
    }

    /// Defaults, then the config file, then environment and flags (clap merges those two).
    pub fn load(args: &ServeArgs) -> Result<Self> {
        let mut cfg = match &args.config {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        macro_rules! overlay {
            ($($field:ident),*) => {$(
                if let Some(v) = &args.$field { cfg.$field = v.clone(); }
            )*};
        }
        overlay!(
            listen,
            metrics_listen,
            served_format,
            max_concurrent_generations,
            max_queued_requests,
            threads_per_generation,
            max_new_tokens_limit,
            default_max_new_tokens,
            default_temperature,
            max_request_bytes,
            max_check_bytes,
            drain_timeout_secs,
            max_connections,
            first_byte_timeout_secs,
            log_format,
            log_content,
            forget_store
        );
        for (flag, field) in [
            (&args.tls_cert_file, &mut cfg.tls_cert_file),
            (&args.tls_key_file, &mut cfg.tls_key_file),
            (&args.tls_client_ca_file, &mut cfg.tls_client_ca_file),
        ] {
            if flag.is_some() {
                field.clone_from(flag);
            }
        }
        if let Some(path) = &args.model {
            cfg.model = Some(path.clone());
        }
        if let Some(dir) = &args.data_dir {
            cfg.data_dir = Some(dir.clone());
        }
        if let Some(url) = &args.database_url {
            cfg.database_url = Some(url.clone());
        }
        if let Some(path) = &args.database_password_file {
            cfg.database_password_file = Some(path.clone());
        }
        if let Some(path) = &args.database_ca_file {
            cfg.database_ca_file = Some(path.clone());
        }
        cfg.accept_store_rollback = args.accept_store_rollback;
        if let Some(path) = &args.admin_token_file {
            cfg.admin_token_file = Some(path.clone());
        }
        if let Some(addr) = args.admin_listen {
            cfg.admin_listen = Some(addr);
        }
        if let Some(path) = &args.inference_token_file {
            cfg.inference_token_file = Some(path.clone());
        }
        if let Some(watch) = args.watch_forget {
            cfg.watch_forget = watch;
        }
        if let Some(path) = &args.forget {
            cfg.guard.forget = Some(path.clone());
        }
        if let Some(path) = &args.embedder {
            cfg.guard.embedder = Some(path.clone());
        }
        if args.no_semantic || cfg.guard.embedder.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            cfg.guard.embedder = None;
        }
        if let Some(addr) = args.http_listen {
            cfg.http_listen = Some(addr);
        }
        if let Some(url) = &args.upstream {
            cfg.upstream.push(UpstreamConfig {
                url: url.clone(),
                tls_ca_file: args.upstream_tls_ca_file.clone(),
                ..Default::default()
            });
        }
        anyhow::ensure!(
            args.upstream_tls_ca_file.is_none() || args.upstream.is_some(),
            "--upstream-tls-ca-file is the CA of --upstream: give both (an [[upstream]] table has its own tls_ca_file)"
        );
        if let Some(n) = args.hold_back_words {
            cfg.guard.hold_back_words = n;
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// The model file this server loads. A server that only guards upstream engines should
    /// not spend the memory and start-up time of a generator it never runs: with `model`
    /// unset (no `model` key, no `--model` / `LETHE_MODEL`) and at least one upstream, there is
    /// no local model. Without upstreams, an unset `model` is the shipped SmolLM2 file.
    pub fn model_path(&self) -> Option<PathBuf> {
        match (&self.model, self.upstream.is_empty()) {
            (Some(path), _) => Some(path.clone()),
            (None, true) => Some(PathBuf::from(DEFAULT_MODEL)),
            (None, false) => None,
        }
    }

    /// Threads for candle's quantized matrix products. candle runs them on one process-wide
    /// pool whose callers take turns, so two generations sharing it are no faster than one
    /// (docs/benchmarks.md, "Threads per generation"). Auto splits the cores among the slots:
    /// one slot gets every core (lowest latency), as many slots as cores get one each and run
    /// side by side (highest throughput).
    pub fn threads_per_generation(&self, cores: usize) -> usize {
        match self.threads_per_generation {
            0 => (cores / self.max_concurrent_generations).max(1),
            n => n,
        }
    }

    fn validate(&self) -> Result<()> {
        anyhow::ensure!(
            self.max_concurrent_generations >= 1,
            "max_concurrent_generations must be at least 1"
        );
        anyhow::ensure!(self.max_new_tokens_limit >= 1, "max_new_tokens_limit must be at least 1");
        anyhow::ensure!(
            (1..=self.max_new_tokens_limit).contains(&self.default_max_new_tokens),
            "default_max_new_tokens must be between 1 and max_new_tokens_limit ({})",
            self.max_new_tokens_limit
        );
        anyhow::ensure!(
            self.default_temperature.is_finite() && self.default_temperature >= 0.0,
            "default_temperature must be a finite number >= 0"
        );
        anyhow::ensure!(
            self.drain_timeout_secs.is_finite() && self.drain_timeout_secs >= 0.0,
            "drain_timeout_secs must be a finite number >= 0"
        );
        anyhow::ensure!(
            self.first_byte_timeout_secs.is_finite() && self.first_byte_timeout_secs > 0.0,
            "first_byte_timeout_secs must be a finite number > 0"
        );
        anyhow::ensure!(
            self.tls_cert_file.is_some() == self.tls_key_file.is_some(),
            "tls_cert_file and tls_key_file go together: set both for TLS, or neither"
        );
        anyhow::ensure!(
            self.tls_client_ca_file.is_none() || self.tls_cert_file.is_some(),
            "tls_client_ca_file (mTLS) needs TLS: set tls_cert_file and tls_key_file too"
        );
        anyhow::ensure!(
            self.data_dir.is_none() || self.database_url.is_none(),
            "data_dir (the embedded store) and database_url (the shared store) exclude each other: set one"
        );
        anyhow::ensure!(
            self.forget_store == StoreMode::Text || self.data_dir.is_some() || self.database_url.is_some(),
            "forget_store = \"fingerprints\" needs a store: data_dir or database_url"
        );
        let mut names = std::collections::BTreeSet::new();
        for u in &self.upstream {
            anyhow::ensure!(names.insert(u.name.as_str()), "two [[upstream]] tables are named {:?}", u.name);
            anyhow::ensure!(
                !u.name.is_empty() && u.name.len() <= 64 && u.name != "local",
                "an [[upstream]] name must be 1 to 64 characters and not \"local\""
            );
            let https = u.url.starts_with("https://");
            anyhow::ensure!(
                https || u.url.starts_with("http://"),
                "upstream {:?}: url must be an http:// or https:// base URL such as http://host:8000/v1",
                u.name
            );
            anyhow::ensure!(
                !https || u.tls_ca_file.is_some(),
                "upstream {:?}: an https:// url needs tls_ca_file, the PEM CA bundle to verify the engine's certificate with (the system's, e.g. /etc/ssl/certs/ca-certificates.crt, for a public CA)",
                u.name
            );
            anyhow::ensure!(
                https || u.tls_ca_file.is_none(),
                "upstream {:?}: tls_ca_file is set but the url is http:// (plaintext): use https://",
                u.name
            );
            u.url.parse::<http::Uri>().with_context(|| format!("upstream {:?}: url {:?}", u.name, u.url))?;
            for (what, secs) in [
                ("connect_timeout_secs", u.connect_timeout_secs),
                ("first_byte_timeout_secs", u.first_byte_timeout_secs),
                ("idle_timeout_secs", u.idle_timeout_secs),
            ] {
                anyhow::ensure!(secs.is_finite() && secs > 0.0, "upstream {:?}: {what} must be > 0", u.name);
            }
            anyhow::ensure!(
                u.max_event_bytes >= 1024,
                "upstream {:?}: max_event_bytes must be >= 1024",
                u.name
            );
        }
        anyhow::ensure!(
            self.upstream.iter().filter(|u| u.models.is_empty()).count() <= 1,
            "at most one [[upstream]] may leave `models` empty (it gets every other model id)"
        );
        self.guard.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_and_file_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lethe.toml");
        std::fs::write(&path, "max_queued_requests = 3\nlisten = \"127.0.0.1:7000\"\n").unwrap();
        let args = ServeArgs {
            config: Some(path),
            listen: Some("127.0.0.1:7001".parse().unwrap()),
            ..Default::default()
        };
        let cfg = Config::load(&args).unwrap();
        assert_eq!(cfg.max_queued_requests, 3);
        assert_eq!(cfg.listen.port(), 7001);
        assert_eq!(cfg.max_concurrent_generations, Config::default().max_concurrent_generations);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lethe.toml");
        std::fs::write(&path, "max_queue = 3\n").unwrap();
        let err = Config::from_file(&path).unwrap_err();
        assert!(format!("{err:#}").contains("max_queue"), "{err:#}");

        let args = ServeArgs { default_temperature: Some(f32::NAN), ..Default::default() };
        assert!(Config::load(&args).is_err());
    }

    #[test]
    fn upstream_tables_and_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lethe.toml");
        std::fs::write(
            &path,
            "http_listen = \"127.0.0.1:8080\"\n[[upstream]]\nname = \"vllm\"\nurl = \"http://10.0.0.1:8000/v1\"\nmodels = [\"llama\"]\nmask_as = \"monitor\"\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            upstream: Some("http://127.0.0.1:9/v1".into()),
            ..Default::default()
        };
        let cfg = Config::load(&args).unwrap();
        assert_eq!(cfg.http_listen.unwrap().port(), 8080);
        assert_eq!(cfg.upstream.len(), 2);
        assert_eq!((cfg.upstream[0].name.as_str(), cfg.upstream[0].mask_as), ("vllm", MaskAs::Monitor));
        assert_eq!(cfg.upstream[1].name, "upstream");
        assert_eq!(cfg.upstream[1].first_byte_timeout_secs, 120.0);
        assert_eq!(cfg.model_path(), None, "upstreams and no model: no local model");
        let with_model =
            ServeArgs { config: Some(path.clone()), model: Some("m.gguf".into()), ..Default::default() };
        assert_eq!(Config::load(&with_model).unwrap().model_path(), Some(PathBuf::from("m.gguf")));
        assert_eq!(Config::default().model_path(), Some(PathBuf::from(DEFAULT_MODEL)));

        let load = |toml: &str| {
            std::fs::write(&path, toml).unwrap();
            Config::load(&ServeArgs { config: Some(path.clone()), ..Default::default() })
        };
        let err = load("[[upstream]]\nname = \"x\"\nurl = \"ftp://a/v1\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("http://"), "{err:#}");
        let err = load("[[upstream]]\nname = \"x\"\nurl = \"https://a/v1\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("tls_ca_file"), "{err:#}");
        let err = load("[[upstream]]\nname = \"x\"\nurl = \"http://a/v1\"\ntls_ca_file = \"ca.pem\"\n")
            .unwrap_err();
        assert!(format!("{err:#}").contains("https://"), "{err:#}");
        let flag = ServeArgs {
            upstream: Some("https://engine:8443/v1".into()),
            upstream_tls_ca_file: Some("ca.pem".into()),
            ..Default::default()
        };
        assert_eq!(
            Config::load(&flag).unwrap().upstream[0].tls_ca_file.as_deref(),
            Some(Path::new("ca.pem"))
        );
        let alone = ServeArgs { upstream_tls_ca_file: Some("ca.pem".into()), ..Default::default() };
        assert!(Config::load(&alone).is_err());
        let ok =
            load("[[upstream]]\nname = \"x\"\nurl = \"https://a/v1\"\ntls_ca_file = \"ca.pem\"\n").unwrap();
        assert_eq!(ok.upstream[0].tls_ca_file.as_deref(), Some(Path::new("ca.pem")));
    }

    #[test]
    fn the_file_store_and_the_shared_store_exclude_each_other() {
        let url = Some("postgres://lethe@db/lethe".to_string());
        let both =
            ServeArgs { data_dir: Some("/tmp/x".into()), database_url: url.clone(), ..Default::default() };
        assert!(format!("{:#}", Config::load(&both).unwrap_err()).contains("exclude each other"));
        let shared = ServeArgs {
            database_url: url,
            forget_store: Some(StoreMode::Fingerprints),
            ..Default::default()
        };
        assert!(Config::load(&shared).is_ok(), "the fingerprint-only mode works with the shared store");
        let nowhere = ServeArgs { forget_store: Some(StoreMode::Fingerprints), ..Default::default() };
        assert!(Config::load(&nowhere).is_err());
    }

    #[test]
    fn threads_per_generation_splits_the_cores_among_the_slots() {
        let cfg = |slots, threads| Config {
            max_concurrent_generations: slots,
            threads_per_generation: threads,
            ..Default::default()
        };
        assert_eq!(cfg(1, 0).threads_per_generation(2), 2);
        assert_eq!(cfg(2, 0).threads_per_generation(2), 1);
        assert_eq!(cfg(2, 0).threads_per_generation(8), 4);
        assert_eq!(cfg(4, 0).threads_per_generation(2), 1);
        assert_eq!(cfg(2, 3).threads_per_generation(2), 3);
    }
}
