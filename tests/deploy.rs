//! The deployment files: the Prometheus alert rules (promtool); the container image (hadolint on
//! deploy/Dockerfile, its config, and `lethe health`, its HEALTHCHECK); the Kubernetes manifests
//! (rendered by kubectl's built-in kustomize, validated offline by kubernetes-validate, and
//! checked against each other and against the config the server reads).
//!
//! hadolint, kubernetes-validate and PyYAML come from deploy/requirements-lint.txt, installed in
//! the project's .venv by `make pydeps`; kubectl from Debian's kubernetes-client (`make sysdeps`).
mod common;

use common::{free_port, tiny_model, Server};
use lethe::config::Config;
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// Where the image puts the models; below it, the layout of `models/` (scripts/models.sha256).
const IMAGE_MODELS: &str = "/opt/lethe/models/";
/// The oldest and newest Kubernetes schemas kubernetes-validate 1.37 ships (native gRPC probes
/// need 1.24; its schemas start at 1.25).
const KUBERNETES_VERSIONS: [&str; 2] = ["1.25.0", "1.37.0"];

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn promtool(args: &[&str]) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus");
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running promtool: install Debian's `prometheus` package (make test does)");
    assert!(out.status.success(), "promtool {args:?}:\n{}", text(&out));
}

#[test]
fn alert_rules_are_valid_and_their_unit_tests_pass() {
    promtool(&["check", "rules", "alerts.yml"]);
    promtool(&["test", "rules", "alerts_test.yml"]);
    promtool(&["check", "config", "prometheus.yml"]);
}

/// A tool of the project's virtualenv: the folder of LETHE_PYTHON (which `make test` sets to
/// .venv/bin/python), else .venv/bin.
fn venv_tool(name: &str) -> PathBuf {
    let bin = match std::env::var_os("LETHE_PYTHON") {
        Some(python) => PathBuf::from(python).parent().map(Path::to_path_buf).unwrap_or_default(),
        None => Path::new(ROOT).join(".venv/bin"),
    };
    let tool = bin.join(name);
    assert!(
        tool.is_file(),
        "{} is missing: `make pydeps` installs deploy/requirements-lint.txt into .venv (make test does)",
        tool.display()
    );
    tool
}

/// Runs a command with `input` on stdin.
fn run_with_input(cmd: &mut Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// YAML documents (a stream of them) as JSON values, through the virtualenv's PyYAML.
fn yaml_documents(yaml: &[u8]) -> Vec<Value> {
    let script = "import json, sys, yaml\n\
                  json.dump([d for d in yaml.safe_load_all(sys.stdin) if d is not None], sys.stdout)";
    let out = run_with_input(Command::new(venv_tool("python")).args(["-c", script]), yaml);
    assert!(out.status.success(), "parsing YAML:\n{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// The files scripts/fetch-models.sh fetches and verifies, relative to the models folder.
fn fetched_model_files() -> Vec<String> {
    read("scripts/models.sha256")
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(String::from)
        .collect()
}

/// The model and embedder of a config live where the image puts the fetched models.
fn assert_models_are_in_the_image(cfg: &Config, what: &str) {
    let fetched = fetched_model_files();
    let model = cfg.model_path().expect("the image serves a model");
    let model = model.to_str().unwrap();
    let model = model.strip_prefix(IMAGE_MODELS).unwrap_or_else(|| panic!("{what}: model {model}"));
    assert!(fetched.iter().any(|f| f == model), "{what}: {model} is not fetched by fetch-models.sh");
    let embedder = cfg.guard.embedder.as_ref().expect("the semantic layer is on").to_str().unwrap();
    let embedder =
        embedder.strip_prefix(IMAGE_MODELS).unwrap_or_else(|| panic!("{what}: embedder {embedder}"));
    for file in ["model.safetensors", "tokenizer.json", "config.json"] {
        let path = format!("{embedder}/{file}");
        assert!(fetched.contains(&path), "{what}: {path} is not fetched by fetch-models.sh");
    }
}

/// The value of a Dockerfile instruction of the final stage (the last occurrence).
fn instruction<'a>(dockerfile: &'a str, name: &str) -> &'a str {
    dockerfile
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("deploy/Dockerfile has no {name}"))
        .trim()
}

#[test]
fn dockerfile_passes_hadolint_and_agrees_with_the_image_config() {
    let out =
        Command::new(venv_tool("hadolint")).arg("deploy/Dockerfile").current_dir(ROOT).output().unwrap();
    assert!(out.status.success(), "hadolint deploy/Dockerfile:\n{}", text(&out));

    let dockerfile = read("deploy/Dockerfile");
    // The config the image starts with: parses, listens where EXPOSE says, finds the models.
    assert_eq!(instruction(&dockerfile, "ENV"), "LETHE_CONFIG=/etc/lethe/lethe.toml");
    assert!(dockerfile.contains("\nCOPY deploy/lethe.toml /etc/lethe/lethe.toml\n"));
    assert!(dockerfile
        .contains(&format!("\nCOPY --from=builder /models {}\n", IMAGE_MODELS.trim_end_matches('/'))));
    let cfg = Config::from_file(&Path::new(ROOT).join("deploy/lethe.toml")).unwrap();
    assert_models_are_in_the_image(&cfg, "deploy/lethe.toml");
    assert!(cfg.listen.ip().is_unspecified() && cfg.metrics_listen.ip().is_unspecified());
    let exposed = format!("{} {}", cfg.listen.port(), cfg.metrics_listen.port());
    assert_eq!(instruction(&dockerfile, "EXPOSE"), exposed);
    // Without a token the server only serves ForgetAdmin on loopback: the image must start.
    assert!(cfg.admin_listen.is_some_and(|a| a.ip().is_loopback()));
    // The health check asks the port the server listens on (lethe health's default address).
    assert_eq!(cfg.listen.port(), 50051);
    assert!(instruction(&dockerfile, "USER").starts_with("10001:"), "fixed numeric non-root UID");

    // Everything the build copies from the context is let through by .dockerignore, and exists.
    let ignore = read(".dockerignore");
    let allowed: BTreeSet<&str> =
        ignore.lines().filter_map(|l| l.strip_prefix('!')).map(|p| p.trim_end_matches('/')).collect();
    assert!(ignore.lines().any(|l| l.trim() == "*"), ".dockerignore starts from nothing");
    for line in dockerfile.lines().filter(|l| l.starts_with("COPY ") && !l.contains("--from=")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        for source in &words[1..words.len() - 1] {
            let source = source.trim_end_matches('/');
            assert!(allowed.contains(source), ".dockerignore leaves out {source}, which `{line}` copies");
            assert!(Path::new(ROOT).join(source).exists(), "{source} (`{line}`) does not exist");
        }
    }
}

fn lethe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lethe")).args(args).output().unwrap()
}

#[tokio::test]
async fn health_subcommand_reports_serving_unknown_services_and_unreachable_servers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&tiny_model(dir.path()), &["--no-semantic"]).await;
    let url = format!("http://{}", server.addr);

    for addr in [url.as_str(), server.addr.as_str()] {
        let out = lethe(&["health", "--addr", addr]);
        assert!(out.status.success(), "{}", text(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("SERVING"), "{}", text(&out));
    }
    let out = lethe(&["health", "--addr", &url, "--service", "lethe.v1.Inference"]);
    assert!(out.status.success(), "{}", text(&out));

    let out = lethe(&["health", "--addr", &url, "--service", "no.such.Service"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"no.such.Service\"") && err.contains("NOT_FOUND"), "{err}");

    let closed = format!("http://127.0.0.1:{}", free_port());
    let out = lethe(&["health", "--addr", &closed, "--timeout-secs", "2"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot connect to") && err.contains(&closed), "{err}");
}

/// A service that answers NOT_SERVING (Lethe's own health says so only while it drains, when it no
/// longer accepts connections): a health service of the test's own.
#[tokio::test]
async fn health_subcommand_fails_on_not_serving() {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter.set_service_status("test.Down", tonic_health::ServingStatus::NotServing).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let (down, up) = tokio::task::spawn_blocking(move || {
        (lethe(&["health", "--addr", &url, "--service", "test.Down"]), lethe(&["health", "--addr", &url]))
    })
    .await
    .unwrap();
    assert!(!down.status.success());
    let err = String::from_utf8_lossy(&down.stderr);
    assert!(err.contains("\"test.Down\" is NOT_SERVING"), "{err}");
    assert!(up.status.success(), "{}", text(&up));
}

/// `kubectl kustomize DIR`: the rendered YAML.
fn kustomize(dir: &str) -> Vec<u8> {
    let out = Command::new("kubectl")
        .args(["kustomize", dir])
        .current_dir(ROOT)
        .output()
        .expect("running kubectl: install Debian's `kubernetes-client` package (make test does)");
    assert!(out.status.success(), "kubectl kustomize {dir}:\n{}", text(&out));
    out.stdout
}

/// kubernetes-validate --strict against each version; returns its report lines. (It reads a
/// file once per version, so not stdin.)
fn validate(rendered: &[u8]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rendered.yaml");
    std::fs::write(&file, rendered).unwrap();
    let mut cmd = Command::new(venv_tool("kubernetes-validate"));
    cmd.arg("--strict");
    for v in KUBERNETES_VERSIONS {
        cmd.args(["-k", v]);
    }
    let out = cmd.arg(&file).output().unwrap();
    assert!(out.status.success(), "kubernetes-validate --strict:\n{}", text(&out));
    String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect()
}

fn kind_name(doc: &Value) -> String {
    format!("{}/{}", doc["kind"].as_str().unwrap().to_lowercase(), doc["metadata"]["name"].as_str().unwrap())
}

/// Every resource of `docs` passed schema validation against every version, except the kinds in
/// `no_schema`, which kubernetes-validate must report as unvalidated (and nothing else may be).
fn assert_validated(report: &[String], docs: &[Value], no_schema: &[&str]) {
    for doc in docs {
        let kind = doc["kind"].as_str().unwrap();
        if no_schema.contains(&kind) {
            continue;
        }
        for v in KUBERNETES_VERSIONS {
            let minor = &v[..v.rfind('.').unwrap()];
            let passed = format!("passed for resource {} against version {minor}", kind_name(doc));
            assert!(report.iter().any(|l| l.contains(&passed)), "no `{passed}` in:\n{}", report.join("\n"));
        }
    }
    let unvalidated: Vec<&String> = report.iter().filter(|l| !l.starts_with("INFO ")).collect();
    for line in &unvalidated {
        assert!(
            no_schema.iter().any(|k| line.contains(&format!("Couldn't find schema for kind {k} "))),
            "unexpected: {line}"
        );
    }
    assert_eq!(unvalidated.len(), no_schema.len() * KUBERNETES_VERSIONS.len(), "{}", report.join("\n"));
}

fn find<'a>(docs: &'a [Value], kind: &str, name_prefix: &str) -> &'a Value {
    let found: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == kind && d["metadata"]["name"].as_str().unwrap().starts_with(name_prefix))
        .collect();
    assert_eq!(found.len(), 1, "one {kind} named {name_prefix}*");
    found[0]
}

fn named<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {list}"))
}

fn mount_path(container: &Value, volume: &str) -> PathBuf {
    let mount = named(&container["volumeMounts"], volume);
    assert!(mount.get("subPath").is_none(), "{volume}: a subPath mount is never updated by the kubelet");
    PathBuf::from(mount["mountPath"].as_str().unwrap())
}

fn port(container: &Value, name: &str) -> u16 {
    named(&container["ports"], name)["containerPort"].as_u64().unwrap() as u16
}

#[test]
fn kubernetes_manifests_validate_and_agree_with_the_server_config() {
    let rendered = kustomize("deploy/k8s/base");
    let docs = yaml_documents(&rendered);
    let kinds: BTreeSet<String> = docs.iter().map(|d| d["kind"].as_str().unwrap().to_string()).collect();
    let expected = ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service"];
    assert_eq!(kinds, expected.iter().map(|k| k.to_string()).collect());
    assert_validated(&validate(&rendered), &docs, &[]);

    let deployment = find(&docs, "Deployment", "lethe");
    let pod = &deployment["spec"]["template"];
    let spec = &pod["spec"];
    let container = &spec["containers"][0];
    let volume = |name: &str| named(&spec["volumes"], name);

    // The config ConfigMap is renamed after its content (a change rolls the pods) and the
    // Deployment refers to that name; the forget ConfigMap keeps its name (updated in place).
    let config_map = find(&docs, "ConfigMap", "lethe-config-");
    assert_eq!(volume("config")["configMap"]["name"], config_map["metadata"]["name"]);
    find(&docs, "ConfigMap", "lethe-forget");
    assert_eq!(volume("forget")["configMap"]["name"], "lethe-forget");
    assert!(docs.iter().all(|d| d["metadata"]["name"] != "lethe-admin-token"), "no Secret is committed");
    assert_eq!(volume("admin-token")["secret"]["secretName"], "lethe-admin-token");

    // The server reads that config, and it agrees with the pod: ports, mounts, the Secret's key.
    let dir = tempfile::tempdir().unwrap();
    let (file, toml) = config_map["data"].as_object().unwrap().iter().next().unwrap();
    std::fs::write(dir.path().join(file), toml.as_str().unwrap()).unwrap();
    let cfg = Config::from_file(&dir.path().join(file)).unwrap();
    let env = named(&container["env"], "LETHE_CONFIG")["value"].as_str().unwrap();
    assert_eq!(Path::new(env), mount_path(container, "config").join(file));
    assert_eq!(cfg.guard.forget.as_deref(), Some(mount_path(container, "forget").as_path()));
    assert!(cfg.watch_forget);
    // The store is a folder the server creates in the volume and restricts to 0700, which it
    // could not do to the volume's root (owned by root, with the pod's fsGroup).
    assert_eq!(cfg.data_dir.as_deref().and_then(Path::parent), Some(mount_path(container, "data").as_path()));
    assert_eq!(
        cfg.admin_token_file.as_deref(),
        Some(mount_path(container, "admin-token").join("token").as_path())
    );
    assert_models_are_in_the_image(&cfg, "the lethe-config ConfigMap");
    let image_cfg = Config::from_file(&Path::new(ROOT).join("deploy/lethe.toml")).unwrap();
    assert_eq!((&cfg.model, &cfg.guard.embedder), (&image_cfg.model, &image_cfg.guard.embedder));
    assert_eq!(cfg.listen.port(), port(container, "grpc"));
    assert_eq!(cfg.metrics_listen.port(), port(container, "metrics"));
    assert_eq!(cfg.admin_listen.map(|a| a.port()), Some(port(container, "admin")));

    // Native gRPC probes on the gRPC port; readiness on the service that turns NOT_SERVING when
    // the server drains.
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        assert_eq!(container[probe]["grpc"]["port"].as_u64(), Some(cfg.listen.port() as u64), "{probe}");
    }
    assert_eq!(container["readinessProbe"]["grpc"]["service"], "lethe.v1.Inference");
    let grace = spec["terminationGracePeriodSeconds"].as_f64().unwrap();
    let pre_stop: f64 =
        container["lifecycle"]["preStop"]["exec"]["command"][1].as_str().unwrap().parse().unwrap();
    assert!(grace > pre_stop + cfg.drain_timeout_secs, "the pod is killed before the drain ends");

    // Non-root (the image's UID), read-only root, no capabilities; requests and limits set.
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    assert_eq!(spec["securityContext"]["runAsUser"], 10001);
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(container["resources"][kind][resource].is_string(), "resources.{kind}.{resource}");
        }
    }
    // candle's thread pool follows RAYON_NUM_THREADS, else the node's cores: the CPU limit.
    let threads = &named(&container["env"], "RAYON_NUM_THREADS")["valueFrom"]["resourceFieldRef"];
    assert_eq!((&threads["resource"], &threads["divisor"]), (&Value::from("limits.cpu"), &Value::from("1")));

    // Service, PodDisruptionBudget and autoscaler all point at these pods; the autoscaler owns
    // the replica count; the admin port stays off the load-balanced Service.
    let labels = pod["metadata"]["labels"].as_object().unwrap();
    let selects =
        |selector: &Value| selector.as_object().unwrap().iter().all(|(k, v)| labels.get(k) == Some(v));
    let service = find(&docs, "Service", "lethe");
    assert!(selects(&service["spec"]["selector"]));
    let service_ports: Vec<&str> = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["targetPort"].as_str().unwrap())
        .collect();
    assert_eq!(service_ports, ["grpc", "metrics"]);
    assert!(selects(&find(&docs, "PodDisruptionBudget", "lethe")["spec"]["selector"]["matchLabels"]));
    assert!(selects(&deployment["spec"]["selector"]["matchLabels"]));
    let hpa = find(&docs, "HorizontalPodAutoscaler", "lethe");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], deployment["metadata"]["name"]);
    assert!(hpa["spec"]["minReplicas"].as_u64() >= Some(2));
    assert!(deployment["spec"].get("replicas").is_none(), "the autoscaler owns the replica count");
}

/// The monitoring overlay: the base plus a ServiceMonitor and a PrometheusRule. kubernetes-validate
/// has no schemas for the Prometheus Operator's CRDs (monitoring.coreos.com) and none is shipped
/// for offline use here, so those two are checked by what they must do instead: the rule groups
/// are exactly deploy/prometheus/alerts.yml (and pass promtool), and the ServiceMonitor scrapes the
/// Service's metrics port.
#[test]
fn monitoring_overlay_carries_the_alert_rules_and_scrapes_the_metrics_port() {
    let rendered = kustomize("deploy/k8s/monitoring");
    let docs = yaml_documents(&rendered);
    assert_validated(&validate(&rendered), &docs, &["PrometheusRule", "ServiceMonitor"]);
    let base = yaml_documents(&kustomize("deploy/k8s/base"));
    for doc in &base {
        assert!(docs.contains(doc), "the overlay changed {}", kind_name(doc));
    }
    assert_eq!(docs.len(), base.len() + 2);

    let rule = find(&docs, "PrometheusRule", "lethe");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    let alerts = &yaml_documents(read("deploy/prometheus/alerts.yml").as_bytes())[0];
    assert!(
        rule["spec"] == *alerts,
        "deploy/k8s/monitoring/prometheusrule.yaml differs from deploy/prometheus/alerts.yml: run `make k8s-rules`"
    );
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, serde_json::to_vec(&rule["spec"]).unwrap()).unwrap();
    let out =
        Command::new("promtool").args(["check", "rules"]).arg(&rules).output().expect("running promtool");
    assert!(out.status.success(), "promtool check rules on the PrometheusRule:\n{}", text(&out));

    let monitor = find(&docs, "ServiceMonitor", "lethe");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    let service = find(&docs, "Service", "lethe");
    let service_labels = service["metadata"]["labels"].as_object().unwrap();
    let selector = monitor["spec"]["selector"]["matchLabels"].as_object().unwrap();
    assert!(selector.iter().all(|(k, v)| service_labels.get(k) == Some(v)), "{selector:?}");
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!(named(&service["spec"]["ports"], endpoint["port"].as_str().unwrap())["targetPort"], "metrics");
}

/// The shared-store overlay: the base with the database URL from a Secret, its CA mounted for
/// database_ca_file, no per-pod store volume, and the admin port on the Service (any replica
/// may take a change now).
#[test]
fn shared_store_overlay_takes_the_database_from_a_secret_and_keeps_no_store_volume() {
    let rendered = kustomize("deploy/k8s/shared");
    let docs = yaml_documents(&rendered);
    assert_validated(&validate(&rendered), &docs, &[]);
    let deployment = find(&docs, "Deployment", "lethe");
    let spec = &deployment["spec"]["template"]["spec"];
    let container = &spec["containers"][0];
    let url = &named(&container["env"], "LETHE_DATABASE_URL")["valueFrom"]["secretKeyRef"];
    assert_eq!((&url["name"], &url["key"]), (&Value::from("lethe-database"), &Value::from("url")));
    let volumes: Vec<&str> =
        spec["volumes"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert!(!volumes.contains(&"data"), "no per-pod store: {volumes:?}");
    assert!(volumes.contains(&"forget"), "the ConfigMap path stays for GitOps sets");
    assert!(docs.iter().all(|d| d["kind"] != "Secret"), "no Secret is committed");

    let config_map = find(&docs, "ConfigMap", "lethe-config-");
    let dir = tempfile::tempdir().unwrap();
    let (file, toml) = config_map["data"].as_object().unwrap().iter().next().unwrap();
    std::fs::write(dir.path().join(file), toml.as_str().unwrap()).unwrap();
    let cfg = Config::from_file(&dir.path().join(file)).unwrap();
    assert!(cfg.data_dir.is_none());
    assert_eq!(
        cfg.database_ca_file.as_deref(),
        Some(mount_path(container, "database").join("ca.crt").as_path())
    );
    let service = find(&docs, "Service", "lethe");
    let admin = named(&service["spec"]["ports"], "admin");
    assert_eq!(admin["targetPort"], "admin");
    assert_eq!(cfg.admin_listen.map(|a| a.port()), Some(port(container, "admin")));
}
