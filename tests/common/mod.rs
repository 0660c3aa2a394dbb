//! Test harness: runs the real `lethe` binary on 127.0.0.1 ports picked by the test and
//! talks to it with the generated tonic client.
#![allow(dead_code)]
pub mod http;
pub mod passage;
pub mod postgres;
use lethe::proto::inference_client::InferenceClient;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

/// The default generator, fetched by `scripts/fetch-models.sh` (which `make test` runs).
pub fn smollm2() -> PathBuf {
    let dir = std::env::var_os("LETHE_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models"));
    let path = dir.join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(path.exists(), "{} is missing: run scripts/fetch-models.sh (make test does it)", path.display());
    path
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct Server {
    child: Child,
    pub addr: String,
    pub metrics_addr: String,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts `lethe serve --model MODEL EXTRA...` and waits until health says SERVING.
    pub async fn start(model: &std::path::Path, extra: &[&str]) -> Server {
        Self::start_env(model, extra, &[]).await
    }

    /// As `start`, with extra environment variables.
    pub async fn start_env(model: &std::path::Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        Self::launch_serving(Some(model), extra, env).await
    }

    /// Launches until the server serves: a port `free_port` picked can be taken by another
    /// test's process before the server binds it, and then a new pair of ports is tried.
    async fn launch_serving(model: Option<&std::path::Path>, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut attempt = 1;
        loop {
            let mut server = Self::launch(model, extra, env, None);
            match server.serving().await {
                Ok(()) => return server,
                Err(logs) if attempt < 5 && logs.contains("Address already in use") => attempt += 1,
                Err(logs) => panic!("lethe exited during start-up:\n{logs}"),
            }
        }
    }

    /// Starts the process without waiting for it to serve.
    pub fn spawn(model: &std::path::Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        Self::spawn_with_descriptors(model, extra, env, None)
    }

    /// Starts `lethe serve EXTRA...` without `--model` (a server that only guards upstreams)
    /// and waits until health says SERVING.
    pub async fn start_without_model(extra: &[&str]) -> Server {
        Self::launch_serving(None, extra, &[]).await
    }

    /// As `spawn`, with the process's descriptor limit (RLIMIT_NOFILE) set to `nofile`.
    pub fn spawn_with_descriptors(
        model: &std::path::Path,
        extra: &[&str],
        env: &[(&str, &str)],
        nofile: Option<u64>,
    ) -> Server {
        Self::launch(Some(model), extra, env, nofile)
    }

    fn launch(
        model: Option<&std::path::Path>,
        extra: &[&str],
        env: &[(&str, &str)],
        nofile: Option<u64>,
    ) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("server.log");
        let (port, metrics_port) = (free_port(), free_port());
        let addr = format!("127.0.0.1:{port}");
        let metrics_addr = format!("127.0.0.1:{metrics_port}");
        let mut command = Command::new(env!("CARGO_BIN_EXE_lethe"));
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt;
            let limit = libc::rlimit { rlim_cur: n, rlim_max: n };
            // SAFETY: setrlimit is async-signal-safe and touches only the child's limits.
            unsafe {
                command.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        command.args(["serve", "--listen", &addr, "--metrics-listen", &metrics_addr]);
        match model {
            Some(model) => command.arg("--model").arg(model),
            // An inherited LETHE_MODEL would give the server a model after all.
            None => command.env_remove("LETHE_MODEL"),
        };
        let child = command
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawning lethe");
        Server { child, addr, metrics_addr, log, _dir: dir }
    }

    pub async fn wait_serving(&mut self) {
        if let Err(logs) = self.serving().await {
            panic!("lethe exited during start-up:\n{logs}");
        }
    }

    /// Waits until health says SERVING; the server's log if it exited first.
    async fn serving(&mut self) -> Result<(), String> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(format!("{status}\n{}", self.logs()));
            }
            if let Ok(channel) =
                Channel::from_shared(format!("http://{}", self.addr)).unwrap().connect().await
            {
                let reply =
                    HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await;
                if reply.is_ok_and(|r| r.get_ref().status == ServingStatus::Serving as i32) {
                    return Ok(());
                }
            }
            assert!(started.elapsed() < Duration::from_secs(120), "lethe did not start:\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr)).unwrap().connect().await.unwrap()
    }

    pub async fn client(&self) -> InferenceClient<Channel> {
        InferenceClient::new(self.channel().await)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn child_alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn greedy(prompt: &str, max_new_tokens: u32) -> lethe::proto::GenerateRequest {
    lethe::proto::GenerateRequest {
        prompt: prompt.into(),
        max_new_tokens: Some(max_new_tokens),
        temperature: Some(0.0),
        ..Default::default()
    }
}

/// A greedy raw-prompt request that generates exactly `new_tokens` tokens whatever the model
/// would say (`ignore_eos`): for tests whose point is duration, cancellation, deadlines,
/// queueing or draining. Greedy tokens differ between CPUs whose kernels differ (AVX2 and
/// AVX-512 VNNI hosts), so such tests must not hope the model talks long enough.
pub fn exactly(prompt: &str, new_tokens: u32) -> lethe::proto::GenerateRequest {
    lethe::proto::GenerateRequest { ignore_eos: true, ..greedy(prompt, new_tokens) }
}

/// A chat turn with an explicit system message: SmolLM2-135M (Q4_1) answers oddly under the
/// default system prompt its template inserts, and well under this one.
pub fn chat(user: &str, max_new_tokens: u32) -> lethe::proto::GenerateRequest {
    let message =
        |role: &str, content: &str| lethe::proto::ChatMessage { role: role.into(), content: content.into() };
    lethe::proto::GenerateRequest {
        messages: vec![message("system", "You are a helpful assistant."), message("user", user)],
        max_new_tokens: Some(max_new_tokens),
        temperature: Some(0.0),
        ..Default::default()
    }
}

pub fn send_signal(pid: u32, signal: &str) {
    let ok = Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]).status().unwrap();
    assert!(ok.success());
}

/// The Prometheus text exposition of a running server.
pub fn scrape(metrics_addr: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(metrics_addr).expect("connecting to /metrics");
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {metrics_addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).unwrap();
    body
}

/// The value of one sample line (`name{labels} value`) whose name and labels contain `parts`.
pub fn metric_value(exposition: &str, parts: &[&str]) -> f64 {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && parts.iter().all(|p| l.contains(p)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A tiny random llama GGUF (see `lethe::model::fixture`), for tests that need a server but
/// not a real model's output.
pub fn tiny_model(dir: &std::path::Path) -> PathBuf {
    let path = dir.join("tiny.gguf");
    lethe::model::fixture::write_tiny_llama(&path, 11).unwrap();
    path
}
