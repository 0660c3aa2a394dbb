"""The peers' side of bench/peers.sh, and the report.

    python bench/peers.py prep   OUT_DIR             texts, HNSW vectors and queries, Q8_0 GGUF
    python bench/peers.py llama  MODEL.gguf ...      llama.cpp decode speed (one JSON line)
    python bench/peers.py embed  TEXTS.json ...      sentence-transformers throughput (one JSON line)
    python bench/peers.py hnsw   X.npy Q.npy GT.npy  hnswlib build time and recall/speed sweep
    python bench/peers.py report RESULTS.jsonl OUT.json   median figures, ratios, Markdown table

Every measurement prints one JSON object on stdout. Threads: 2 everywhere (llama.cpp n_threads,
torch.set_num_threads, hnswlib num_threads for building), queries single-threaded.
"""

import argparse
import glob
import json
import os
import statistics
import sys
import time

import numpy as np

PROMPT = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    "Write a long story about a lighthouse keeper and a storm.<|im_end|>\n<|im_start|>assistant\n"
)
EOS_TOKENS = ["<|im_end|>", "<|endoftext|>", "<|eot_id|>"]


def eval_windows(root, words_per_window, stride, limit=None):
    """Windows of `words_per_window` words every `stride` words of every text in eval/*.jsonl;
    `limit` of them, evenly spaced, if given."""
    out = []
    for path in sorted(glob.glob(os.path.join(root, "eval", "*.jsonl"))):
        with open(path) as f:
            for line in f:
                if not line.strip():
                    continue
                words = json.loads(line)["text"].split()
                for s in range(0, len(words) - words_per_window + 1, stride):
                    out.append(" ".join(words[s : s + words_per_window]))
    if limit:
        limit = min(limit, len(out))
        out = [out[i * len(out) // limit] for i in range(limit)]
    return out


def sentence_transformer(model_dir, threads):
    """all-MiniLM-L6-v2 as Lethe runs it: BERT, mean pooling over real tokens, L2 norm, 256 max."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules as models

    torch.set_num_threads(threads)
    bert = models.Transformer(model_dir, max_seq_length=256)
    if hasattr(type(bert), "get_embedding_dimension"):
        dim = bert.get_embedding_dimension()
    else:
        dim = bert.get_word_embedding_dimension()
    pooling = models.Pooling(dim, pooling_mode="mean")
    return SentenceTransformer(modules=[bert, pooling, models.Normalize()], device="cpu")


def unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def noisy(rng, x, scale):
    """x plus isotropic Gaussian noise of expected norm `scale` (per row), normalized."""
    scale = np.asarray(scale, dtype=np.float32).reshape(-1, 1)
    return unit(x + rng.standard_normal(x.shape).astype(np.float32) * scale / np.sqrt(x.shape[1]))


def hnsw_vectors(rng, centers, n):
    """n structured unit vectors: the real embeddings first, then near-duplicates of one of them
    (noise 0.1-0.6) and blends of two (noise 0.1-0.4), half and half."""
    out = [centers[:n]]
    rest = n - len(out[0])
    if rest > 0:
        a = rest // 2
        picks = rng.integers(0, len(centers), a)
        out.append(noisy(rng, centers[picks], rng.uniform(0.1, 0.6, a)))
        b = rest - a
        i, j = rng.integers(0, len(centers), b), rng.integers(0, len(centers), b)
        w = rng.uniform(0.2, 0.8, (b, 1)).astype(np.float32)
        out.append(noisy(rng, unit(w * centers[i] + (1 - w) * centers[j]), rng.uniform(0.1, 0.4, b)))
    return np.ascontiguousarray(np.concatenate(out)[:n], dtype=np.float32)


def hnsw_queries(rng, data, centers, q):
    """q queries: half perturbed members of the data (noise 0.05-0.3), half fresh vectors (blends
    of three real embeddings plus noise 0.2-0.5, not built from any data vector)."""
    a = q // 2
    members = noisy(rng, data[rng.integers(0, len(data), a)], rng.uniform(0.05, 0.3, a))
    b = q - a
    idx = rng.integers(0, len(centers), (b, 3))
    w = rng.dirichlet(np.ones(3), b).astype(np.float32)
    fresh = noisy(rng, unit(np.einsum("bk,bkd->bd", w, centers[idx])), rng.uniform(0.2, 0.5, b))
    return np.ascontiguousarray(np.concatenate([members, fresh]), dtype=np.float32)


def ground_truth(data, queries, k):
    sims = queries @ data.T
    top = np.argpartition(-sims, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1)
    return np.ascontiguousarray(np.take_along_axis(top, order, axis=1), dtype=np.int32)


def prep(args):
    os.makedirs(args.out, exist_ok=True)
    root = args.root
    # b. The embedder's inputs: 256 windows of 24 words (stride 8) of the eval texts.
    texts = eval_windows(root, 24, 8, 256)
    with open(os.path.join(args.out, "texts.json"), "w") as f:
        json.dump(texts, f)
    # c. HNSW vectors: real MiniLM embeddings of every 24-word window (stride 1) of the eval
    # texts, then structured synthetic vectors around them.
    centers_path = os.path.join(args.out, "centers.npy")
    if not os.path.exists(centers_path):
        windows = eval_windows(root, 24, 1)
        model = sentence_transformer(os.path.join(root, "models", "minilm"), args.threads)
        centers = model.encode(windows, batch_size=32, convert_to_numpy=True).astype(np.float32)
        np.save(centers_path, centers)
    centers = np.load(centers_path)
    rng = np.random.default_rng(20261128)
    full = hnsw_vectors(rng, centers, max(args.sizes))
    for n in args.sizes:
        stem = os.path.join(args.out, f"hnsw{n}")
        if os.path.exists(stem + "-gt.npy"):
            continue
        data = full[:n]
        queries = hnsw_queries(np.random.default_rng(n), data, centers, args.queries)
        np.save(stem + "-data.npy", data)
        np.save(stem + "-queries.npy", queries)
        np.save(stem + "-gt.npy", ground_truth(data, queries, 100))
    # a. The same weights in Q8_0, requantized by llama.cpp itself.
    q8 = os.path.join(args.out, "SmolLM2-135M-Instruct.Q8_0.gguf")
    if not os.path.exists(q8):
        import llama_cpp

        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
        params.nthread = args.threads
        params.allow_requantize = True
        rc = llama_cpp.llama_model_quantize(args.gguf.encode(), (q8 + ".tmp").encode(), params)
        if rc != 0:
            sys.exit(f"llama_model_quantize failed: {rc}")
        os.rename(q8 + ".tmp", q8)
    print(json.dumps({"centers": len(centers), "texts": len(texts), "q8_0": q8}))


def llama(args):
    import llama_cpp

    t = time.perf_counter()
    llm = llama_cpp.Llama(
        model_path=args.model, n_ctx=512, n_batch=512, n_threads=args.threads,
        n_threads_batch=args.threads, verbose=False,
    )
    load_s = time.perf_counter() - t
    ids = llm.tokenize(PROMPT.encode(), add_bos=False, special=True)
    eos = set()
    for s in EOS_TOKENS:
        tok = llm.tokenize(s.encode(), add_bos=False, special=True)
        if len(tok) == 1:
            eos.add(tok[0])
    eos.add(llm.token_eos())
    eos = sorted(eos)

    n_vocab = llm.n_vocab()

    def last_logits():
        # logits_all is off: the context holds the logits of the last token only.
        return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,))

    def pick(logits, ban):
        if ban:
            logits = logits.copy()
            logits[eos] = -np.inf
        return int(np.argmax(logits))

    ttft, rates, decoded, generated, eos_masked = [], [], [], [], 0
    for _ in range(args.runs):
        llm.reset()  # n_tokens = 0: the next eval drops the whole KV cache
        start = time.perf_counter()
        llm.eval(ids)
        tok = pick(last_logits(), args.ban_eos)
        first = time.perf_counter() - start
        out = [tok]
        ended = tok in eos
        n = 0
        start = time.perf_counter()
        while n < args.new_tokens and not ended:
            llm.eval([tok])
            logits = last_logits()
            if args.ban_eos and int(np.argmax(logits)) in eos:
                eos_masked += 1
            tok = pick(logits, args.ban_eos)
            if tok in eos:
                ended = True
                break
            out.append(tok)
            n += 1
        rates.append(n / (time.perf_counter() - start))
        ttft.append(first)
        decoded.append(n)
        generated = out
    print(json.dumps({
        "side": "llama.cpp",
        "model": args.model,
        "load_s": load_s,
        "threads": args.threads,
        "prompt_tokens": len(ids),
        "prompt_ids": ids,
        "new_tokens": args.new_tokens,
        "ban_eos": args.ban_eos,
        "eos_masked_steps": eos_masked,
        "runs": args.runs,
        "decoded": decoded,
        "ttft_s": ttft,
        "decode_tok_s": rates,
        "ttft_s_median": statistics.median(ttft),
        "decode_tok_s_median": statistics.median(rates),
        "generated_ids": generated,
        "system_info": llama_cpp.llama_print_system_info().decode(),
    }))


def embed(args):
    import torch

    with open(args.texts) as f:
        texts = json.load(f)
    t = time.perf_counter()
    model = sentence_transformer(args.model, args.threads)
    load_s = time.perf_counter() - t
    results, last = [], None
    for b in args.batch:
        model.encode(texts[:b], batch_size=b, convert_to_numpy=True)  # warm-up
        rates = []
        for _ in range(args.runs):
            start = time.perf_counter()
            out = [model.encode(texts[i : i + b], batch_size=b, convert_to_numpy=True)
                   for i in range(0, len(texts), b)]
            rates.append(len(texts) / (time.perf_counter() - start))
            last = np.concatenate(out)
        results.append({"batch": b, "texts_per_s": rates, "texts_per_s_median": statistics.median(rates)})
    agreement = None
    if args.compare:
        other = np.load(args.compare)
        cos = np.sum(unit(other) * unit(last), axis=1)
        agreement = {"min_cosine": float(cos.min()), "mean_cosine": float(cos.mean())}
    print(json.dumps({
        "side": "sentence-transformers",
        "model": args.model,
        "texts": len(texts),
        "load_s": load_s,
        "torch_threads": torch.get_num_threads(),
        "runs": args.runs,
        "results": results,
        "agreement_with_lethe": agreement,
    }))


def hnsw(args):
    import hnswlib

    data, queries, gt = np.load(args.data), np.load(args.queries), np.load(args.gt)
    n, dim = data.shape
    k = args.k
    index = hnswlib.Index(space="ip", dim=dim)
    start = time.perf_counter()
    index.init_index(max_elements=n, M=16, ef_construction=200, random_seed=100)
    index.add_items(data, np.arange(n), num_threads=args.threads)
    build_s = time.perf_counter() - start
    sweep = []
    for ef in args.ef:
        index.set_ef(max(ef, k))
        qps, recall = [], 0.0
        for _ in range(args.runs):
            start = time.perf_counter()
            labels, _ = index.knn_query(queries, k=k, num_threads=1)
            qps.append(len(queries) / (time.perf_counter() - start))
            hits = sum(len(set(l.tolist()) & set(t[:k].tolist())) for l, t in zip(labels, gt))
            recall = hits / (k * len(queries))
        sweep.append({"ef": ef, "recall": recall, "qps": qps, "qps_median": statistics.median(qps)})
    print(json.dumps({
        "side": "hnswlib",
        "library": f"hnswlib {getattr(hnswlib, '__version__', '')}".strip(),
        "n": n, "dim": dim, "queries": len(queries), "k": k, "m": 16, "ef_construction": 200,
        "build_threads": args.threads, "build_s": build_s, "sweep": sweep,
    }))


def med(values):
    return statistics.median(values) if values else None


def fmt(v, digits=1):
    return "n/a" if v is None else f"{v:.{digits}f}"


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def report(args):
    """Reads the tagged JSON lines peers.sh collected; writes medians and ratios (JSON) and
    prints the Markdown tables of docs/benchmarks.md."""
    runs = [json.loads(l) for l in open(args.results) if l.strip()]
    meta = next((r["meta"] for r in runs if "meta" in r), {})
    meta.update(next((r["meta_end"] for r in runs if "meta_end" in r), {}))
    out = {"meta": meta, "decode": [], "embed": [], "hnsw": [], "loadavg1": {}}
    lines = [f"{meta.get('date', '?')}: {meta.get('nproc', '?')} CPUs ({meta.get('cpu', '?')}), "
             f"{meta.get('ram_gib', '?')} GiB RAM; {meta.get('command', '')}", ""]
    for bench in ("decode", "embed", "hnsw"):
        loads = [x for r in runs if r.get("bench") == bench for x in r.get("loadavg1", [])]
        if loads:
            out["loadavg1"][bench] = {"min": min(loads), "median": med(loads), "max": max(loads)}
            lines.append(f"1-minute load average around the {bench} runs: median {med(loads):.1f} "
                         f"(min {min(loads):.1f}, max {max(loads):.1f})")
    lines.append("")

    # a. Decode.
    dec = {}
    for r in runs:
        if r.get("bench") == "decode":
            dec.setdefault(r["variant"], []).append(r["result"])

    def dstat(variant):
        rs = dec.get(variant, [])
        if not rs:
            return None
        return {
            "variant": variant,
            "reps": len(rs),
            "prompt_tokens": rs[0]["prompt_tokens"],
            "decoded": sorted({d for r in rs for d in r["decoded"]}),
            "eos_masked_steps": sum(r["eos_masked_steps"] for r in rs),
            "ttft_ms": med([x * 1e3 for r in rs for x in r["ttft_s"]]),
            "decode_tok_s": med([x for r in rs for x in r["decode_tok_s"]]),
            "decode_tok_s_all": [x for r in rs for x in r["decode_tok_s"]],
            "generated_ids": rs[-1]["generated_ids"],
            "prompt_ids": rs[-1]["prompt_ids"],
        }

    pairs = [
        ("Q4_1 file; Lethe serves it as Q8_0 (its default), llama.cpp as Q4_1",
         "lethe-q4_1file-served-q8_0", "llama-q4_1"),
        ("Q8_0 file (requantized by llama.cpp) on both sides", "lethe-q8_0file", "llama-q8_0"),
        ("Q4_1 file served as stored on both sides", "lethe-q4_1file-as-stored", "llama-q4_1"),
    ]
    lines += ["| weights | Lethe decode tok/s | llama.cpp decode tok/s | ratio Lethe / llama.cpp "
              "| Lethe TTFT | llama.cpp TTFT | ratio (TTFT) | same greedy tokens |",
              "|---|---|---|---|---|---|---|---|"]
    for label, lv, pv in pairs:
        a, b = dstat(lv), dstat(pv)
        if not a or not b:
            continue
        same = 0
        for x, y in zip(a["generated_ids"], b["generated_ids"]):
            if x != y:
                break
            same += 1
        row = {"weights": label, "lethe": a, "llama_cpp": b,
               "prompt_ids_equal": a["prompt_ids"] == b["prompt_ids"],
               "common_prefix_tokens": same, "generated": len(a["generated_ids"]),
               "ratio_decode": ratio(a["decode_tok_s"], b["decode_tok_s"]),
               "ratio_ttft": ratio(a["ttft_ms"], b["ttft_ms"])}
        out["decode"].append(row)
        lines.append(
            f"| {label} | {fmt(a['decode_tok_s'])} | {fmt(b['decode_tok_s'])} | {fmt(row['ratio_decode'], 2)} "
            f"| {fmt(a['ttft_ms'], 0)} ms | {fmt(b['ttft_ms'], 0)} ms | {fmt(row['ratio_ttft'], 2)} "
            f"| first {same} of {len(a['generated_ids'])} |")
    lines.append("")

    # b. Embedder.
    emb = {"lethe": [], "sentence-transformers": []}
    agreement = []
    for r in runs:
        if r.get("bench") == "embed":
            emb[r["result"]["side"]].append(r["result"])
            if r["result"].get("agreement_with_lethe"):
                agreement.append(r["result"]["agreement_with_lethe"])
    if emb["lethe"] and emb["sentence-transformers"]:
        lines += ["| batch size | Lethe (candle) texts/s | sentence-transformers texts/s | ratio Lethe / ST |",
                  "|---|---|---|---|"]
        for b in [x["batch"] for x in emb["lethe"][0]["results"]]:
            def rate(side):
                return med([x for r in emb[side] for res in r["results"] if res["batch"] == b
                            for x in res["texts_per_s"]])
            a, p = rate("lethe"), rate("sentence-transformers")
            out["embed"].append({"batch": b, "lethe": a, "sentence_transformers": p, "ratio": ratio(a, p),
                                 "reps": len(emb["lethe"])})
            lines.append(f"| {b} | {fmt(a)} | {fmt(p)} | {fmt(ratio(a, p), 2)} |")
        out["embed_agreement"] = {
            "min_cosine": min(a["min_cosine"] for a in agreement),
            "mean_cosine": statistics.mean(a["mean_cosine"] for a in agreement),
        } if agreement else None
        if agreement:
            lines.append(f"\nAgreement of the two embeddings of the same {emb['lethe'][0]['texts']} texts: "
                         f"min cosine {out['embed_agreement']['min_cosine']:.6f}, "
                         f"mean {out['embed_agreement']['mean_cosine']:.6f}.")
        lines.append("")

    # c. HNSW.
    hn = {}
    for r in runs:
        if r.get("bench") == "hnsw":
            hn.setdefault((r["result"]["n"], r["result"]["side"]), []).append(r["result"])
    sizes = sorted({n for n, _ in hn})

    def curve(rs):
        """ef -> (median recall, median qps) over the repetitions."""
        efs = [p["ef"] for p in rs[0]["sweep"]]
        return {ef: (med([p["recall"] for r in rs for p in r["sweep"] if p["ef"] == ef]),
                     med([q for r in rs for p in r["sweep"] if p["ef"] == ef for q in p["qps"]]))
                for ef in efs}

    def at(c, target):
        for ef in sorted(c):
            if c[ef][0] >= target:
                return ef, c[ef][0], c[ef][1]
        return None, None, None

    if sizes:
        lines += ["| vectors | build Lethe (hnsw_rs) | build hnswlib | ratio (build time) | target recall@10 "
                  "| Lethe: ef, recall, queries/s | hnswlib: ef, recall, queries/s | ratio (queries/s) |",
                  "|---|---|---|---|---|---|---|---|"]
    for n in sizes:
        a, p = hn.get((n, "lethe"), []), hn.get((n, "hnswlib"), [])
        if not a or not p:
            continue
        ba, bp = med([r["build_s"] for r in a]), med([r["build_s"] for r in p])
        ca, cp = curve(a), curve(p)
        row = {"n": n, "dim": a[0]["dim"], "queries": a[0]["queries"], "build_reps": [len(a), len(p)],
               "build_s": {"lethe": ba, "hnswlib": bp}, "ratio_build_time": ratio(ba, bp),
               "curve": {"lethe": ca, "hnswlib": cp}, "at_recall": []}
        for target in (0.90, 0.95, 0.99):
            ea, ra, qa = at(ca, target)
            ep, rp, qp = at(cp, target)
            row["at_recall"].append({"target": target, "lethe": [ea, ra, qa], "hnswlib": [ep, rp, qp],
                                     "ratio_qps": ratio(qa, qp)})
            lines.append(
                f"| {n:,} | {ba:.1f} s | {bp:.1f} s | {fmt(ratio(ba, bp), 2)} | {target} "
                f"| {ea or 'not reached'}, {fmt(ra, 3)}, {fmt(qa, 0)} | {ep or 'not reached'}, {fmt(rp, 3)}, "
                f"{fmt(qp, 0)} | {fmt(ratio(qa, qp), 2)} |")
        out["hnsw"].append(row)
    if sizes:
        lines += ["", "Recall@10 and queries/s against ef_search (median over repetitions):", ""]
        for n in sizes:
            a, p = hn.get((n, "lethe"), []), hn.get((n, "hnswlib"), [])
            if not a or not p:
                continue
            ca, cp = curve(a), curve(p)
            lines += [f"| {n:,} vectors: ef_search | Lethe recall | Lethe q/s | hnswlib recall | hnswlib q/s |",
                      "|---|---|---|---|---|"]
            for ef in sorted(set(ca) | set(cp)):
                ra, qa = ca.get(ef, (None, None))
                rp, qp = cp.get(ef, (None, None))
                lines.append(f"| {ef} | {fmt(ra, 4)} | {fmt(qa, 0)} | {fmt(rp, 4)} | {fmt(qp, 0)} |")
            lines.append("")
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print("\n".join(lines))


def summary(args):
    """One line on what a run measured (stdin: its JSON), for the progress messages."""
    r = json.load(sys.stdin)
    parts = [f"{k} {r[k]:.3g}" for k in ("decode_tok_s_median", "ttft_s_median", "build_s") if k in r]
    parts += [f"batch {x['batch']}: {x['texts_per_s_median']:.1f}/s" for x in r.get("results", [])]
    parts += [f"ef {x['ef']}: recall {x['recall']:.3f}, {x['qps_median']:.0f} q/s"
              for x in r.get("sweep", []) if x["ef"] in (16, 64, 256)]
    print("; ".join(parts))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("prep")
    s.add_argument("out")
    s.add_argument("--root", default=".")
    s.add_argument("--gguf", default="models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    s.add_argument("--sizes", type=lambda v: [int(x) for x in v.split(",")], default=[10000, 100000])
    s.add_argument("--queries", type=int, default=1000)
    s.add_argument("--threads", type=int, default=2)
    s = sub.add_parser("llama")
    s.add_argument("model")
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--runs", type=int, default=1)
    s.add_argument("--new-tokens", type=int, default=128)
    s.add_argument("--ban-eos", action="store_true")
    s = sub.add_parser("embed")
    s.add_argument("texts")
    s.add_argument("--model", default="models/minilm")
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--runs", type=int, default=1)
    s.add_argument("--batch", type=lambda v: [int(x) for x in v.split(",")], default=[1, 8, 32])
    s.add_argument("--compare", help="Lethe's embeddings (.npy) of the same texts")
    s = sub.add_parser("hnsw")
    s.add_argument("data")
    s.add_argument("queries")
    s.add_argument("gt")
    s.add_argument("--k", type=int, default=10)
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--runs", type=int, default=1)
    s.add_argument("--ef", type=lambda v: [int(x) for x in v.split(",")], default=[10, 16, 32, 64, 128])
    sub.add_parser("summary")
    s = sub.add_parser("report")
    s.add_argument("results")
    s.add_argument("out")
    args = p.parse_args()
    globals()[args.cmd](args)


if __name__ == "__main__":
    main()
