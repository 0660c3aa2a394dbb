//! Parameter-level unlearning on a tiny fixture model (and the trainable forward on SmolLM2):
//! gradients reach every trainable tensor, a canary is memorized, then each method unlearns it
//! while the loss on retain text stays within 10%.
mod common;

use candle_core::quantized::GgmlDType;
use candle_core::{Device, Tensor};
use lethe::model::{Generator, Model, Sampling, ServedFormat, Step};
use lethe::unlearn::{greedy, nll, rouge_l, train, Objective, TrainConfig, Trainable, TrainableLlama};

const CANARY: &str = "the violet heron sings at dawn over quiet water";
const RETAIN: &str = "in the morning the baker opens the small shop on the corner";

fn verbmem(model: &TrainableLlama, tok: &Model, text: &str) -> f64 {
    let ids = tok.encode(text).unwrap();
    let half = ids.len() / 2;
    let out = greedy(model, &ids[..half], ids.len() - half).unwrap();
    rouge_l(&tok.decode(&out).unwrap(), &tok.decode(&ids[half..]).unwrap())
}

#[test]
fn every_trainable_tensor_receives_a_gradient() {
    let dir = tempfile::tempdir().unwrap();
    let path = common::tiny_model(dir.path());
    let tok = Model::load(&path, ServedFormat::AsStored).unwrap();
    let model = TrainableLlama::load(&path, Trainable::All).unwrap();
    let loss = nll(&model, &tok.encode(CANARY).unwrap()).unwrap();
    let grads = loss.backward().unwrap();
    assert!(model.trainable_names().len() > 10);
    for (name, var) in model.trainable_names().iter().zip(model.trainable_vars()) {
        let g = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("no gradient for {name}"));
        let norm = g.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(norm > 0.0, "zero gradient for {name}");
    }
    let mlp = TrainableLlama::load(&path, Trainable::Mlp).unwrap();
    assert!(mlp.trainable_names().iter().all(|n| n.contains("ffn_")), "{:?}", mlp.trainable_names());
    let last = TrainableLlama::load(&path, Trainable::LastBlocks(1)).unwrap();
    assert!(last.trainable_names().iter().all(|n| n.starts_with("blk.1.")), "{:?}", last.trainable_names());
}

#[test]
fn a_canary_is_memorized_then_each_method_unlearns_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = common::tiny_model(dir.path());
    let tok = Model::load(&path, ServedFormat::AsStored).unwrap();
    let canary = tok.encode(CANARY).unwrap();
    let retain = vec![tok.encode(RETAIN).unwrap()];

    let model = TrainableLlama::load(&path, Trainable::All).unwrap();
    let learn =
        TrainConfig { objective: Objective::Learn, lr: 1e-2, steps: 120, max_grad_norm: 1.0, beta: 0.1 };
    train(&model, &[canary.clone()], &retain, &learn, |_, _| {}).unwrap();
    let memorized = verbmem(&model, &tok, CANARY);
    assert!(memorized >= 0.9, "VerbMem after learning: {memorized}");
    let target = dir.path().join("target.gguf");
    model.write_gguf(&target, GgmlDType::F32, &[]).unwrap();

    for objective in [Objective::GradAscent, Objective::GradDiff, Objective::Npo] {
        let model = TrainableLlama::load(&target, Trainable::All).unwrap();
        let retain_before = nll(&model, &retain[0]).unwrap().to_scalar::<f32>().unwrap();
        let cfg = TrainConfig { objective, lr: 1e-3, steps: 0, max_grad_norm: 1.0, beta: 0.1 };
        let mut steps = 0;
        while verbmem(&model, &tok, CANARY) > 0.2 && steps < 200 {
            train(&model, &[canary.clone()], &retain, &TrainConfig { steps: 5, ..cfg.clone() }, |_, _| {})
                .unwrap();
            steps += 5;
        }
        let forgotten = verbmem(&model, &tok, CANARY);
        let retain_after = nll(&model, &retain[0]).unwrap().to_scalar::<f32>().unwrap();
        println!("{objective:?}: {steps} steps, VerbMem {forgotten:.2}, retain NLL {retain_before:.3} -> {retain_after:.3}");
        assert!(forgotten <= 0.2, "{objective:?}: VerbMem {forgotten} after {steps} steps");
        assert!(
            retain_after <= retain_before * 1.1,
            "{objective:?}: retain NLL {retain_before} -> {retain_after}"
        );
    }
}

#[test]
fn the_trainable_forward_agrees_with_the_serving_path_on_smollm2() {
    let path = common::smollm2();
    let served = Model::load(&path, ServedFormat::AsStored).unwrap();
    let trainable = TrainableLlama::load(&path, Trainable::Mlp).unwrap();
    let prompt = served.encode("The capital of France is").unwrap();
    let greedy_step = Sampling { temperature: 0.0, top_p: None, top_k: None, seed: 0 };
    let Step::Token { id: served_top1, .. } =
        Generator::new(&served, prompt.clone(), &greedy_step).step(|_| Vec::new()).unwrap()
    else {
        panic!("EOS")
    };
    let input = Tensor::new(prompt.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let logits = trainable.forward(&input).unwrap().squeeze(0).unwrap();
    let top1 = logits.get(prompt.len() - 1).unwrap().argmax(0).unwrap().to_scalar::<u32>().unwrap();
    assert_eq!(top1, served_top1, "{:?} vs {:?}", served.decode(&[top1]), served.decode(&[served_top1]));
}

fn lethe() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_lethe"))
}

#[tokio::test]
async fn train_and_unlearn_write_a_model_the_server_serves_and_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let base = common::tiny_model(dir.path());
    let data = dir.path().join("canary.jsonl");
    std::fs::write(
        &data,
        format!("{{\"id\": \"c\", \"set\": \"s\", \"kind\": \"document\", \"text\": \"{CANARY}\"}}\n"),
    )
    .unwrap();
    let target = dir.path().join("target.gguf");
    let out = lethe()
        .args(["train", "--model", base.to_str().unwrap(), "--data", data.to_str().unwrap()])
        .args(["--out", target.to_str().unwrap(), "--steps", "30", "--lr", "1e-2", "--train", "all"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let unlearned = dir.path().join("unlearned.gguf");
    let report = dir.path().join("report.json");
    let eval = concat!(env!("CARGO_MANIFEST_DIR"), "/eval");
    let out = lethe()
        .args(["unlearn", "--model", target.to_str().unwrap(), "--forget", data.to_str().unwrap()])
        .args(["--retain", &format!("{eval}/retain.jsonl"), "--holdout", &format!("{eval}/holdout.jsonl")])
        .args(["--method", "gd", "--steps", "10", "--lr", "1e-3", "--train", "all"])
        .args(["--out", unlearned.to_str().unwrap(), "--report", report.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("| base |") && table.contains("unlearned (q8_0)"), "{table}");
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    for model in ["base", "unlearned_f32", "unlearned_served"] {
        assert!(r[model]["forget"]["verbmem"].is_number(), "{r}");
        assert!(r[model]["min_k_auc"].is_number(), "{r}");
    }
    assert_eq!(r["steps"], 10);

    // The written model carries its provenance and the server loads and serves it.
    let mut file = std::fs::File::open(&unlearned).unwrap();
    let content = candle_core::quantized::gguf_file::Content::read(&mut file).unwrap();
    assert_eq!(content.metadata["lethe.unlearn.method"].to_string().unwrap(), "gd");
    let server = common::Server::start(&unlearned, &["--no-semantic"]).await;
    let req =
        lethe::proto::GenerateRequest { prompt: "the".into(), max_new_tokens: Some(4), ..Default::default() };
    server.client().await.generate(req).await.unwrap();
}

#[test]
fn an_interrupted_run_leaves_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let base = common::tiny_model(dir.path());
    let data = dir.path().join("canary.jsonl");
    std::fs::write(&data, format!("{{\"text\": \"{CANARY}\"}}\n")).unwrap();
    let out = dir.path().join("out.gguf");
    let mut child = lethe()
        .args(["train", "--model", base.to_str().unwrap(), "--data", data.to_str().unwrap()])
        .args(["--out", out.to_str().unwrap(), "--steps", "1000000"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!out.exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 2, "only the inputs remain: {leftovers:?}");
}
