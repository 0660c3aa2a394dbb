//! Build time and query speed of the guard's HNSW index (lethe::guard::semantic::SemanticIndex:
//! hnsw_rs with DistDot, max_nb_connection 16, ef_construction 200, parallel insertion) against
//! recall@k, on vectors read from .npy files, for bench/peers.sh.
//!
//!     cargo run --release --example hnsw_peer -- --data X.npy --queries Q.npy --gt GT.npy
//!         [--k 10] [--ef 10,16,32,64] [--runs 1] [--json]
//!
//! X and Q are float32 (n, d) arrays of unit-length vectors, GT an int32 (queries, >= k) array
//! of the exact nearest neighbours (by inner product) of each query in X. The index is built
//! exactly as the guard builds it (parallel insertion on rayon's pool, all cores unless
//! RAYON_NUM_THREADS says otherwise); queries run one at a time on one thread, as the guard
//! runs them, and `--runs` repeats each sweep point (median).
use lethe::guard::semantic::SemanticIndex;
use std::time::Instant;

/// A little-endian float32 or int32 C-order 2-D .npy file: (rows, cols, raw 4-byte words).
fn read_npy(path: &str, descr: &str) -> anyhow::Result<(usize, usize, Vec<u8>)> {
    let bytes = std::fs::read(path)?;
    anyhow::ensure!(bytes.starts_with(b"\x93NUMPY"), "{path}: not a .npy file");
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (u32::from_le_bytes(bytes[8..12].try_into()?) as usize, 12),
    };
    let header = std::str::from_utf8(&bytes[start..start + len])?;
    anyhow::ensure!(header.contains(&format!("'descr': '{descr}'")), "{path}: want {descr}: {header}");
    anyhow::ensure!(header.contains("'fortran_order': False"), "{path}: Fortran order");
    let shape = header.split("'shape': (").nth(1).and_then(|s| s.split(')').next()).unwrap_or("");
    let dims: Vec<usize> = shape
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()?;
    anyhow::ensure!(dims.len() == 2, "{path}: not 2-D: {header}");
    let data = bytes[start + len..].to_vec();
    anyhow::ensure!(data.len() == dims[0] * dims[1] * 4, "{path}: size does not match {header}");
    Ok((dims[0], dims[1], data))
}

fn rows<T>(path: &str, descr: &str, f: fn([u8; 4]) -> T) -> anyhow::Result<Vec<Vec<T>>> {
    let (n, d, data) = read_npy(path, descr)?;
    let flat: Vec<T> = data.chunks_exact(4).map(|c| f(c.try_into().unwrap())).collect();
    let mut flat = flat.into_iter();
    Ok((0..n).map(|_| flat.by_ref().take(d).collect()).collect())
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let (mut data, mut queries, mut gt) = (String::new(), String::new(), String::new());
    let (mut k, mut efs, mut runs, mut json) = (10usize, vec![10usize, 16, 32, 64, 128], 1usize, false);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| anyhow::anyhow!("{a} needs a value"));
        match a.as_str() {
            "--data" => data = value()?,
            "--queries" => queries = value()?,
            "--gt" => gt = value()?,
            "--k" => k = value()?.parse()?,
            "--ef" => efs = value()?.split(',').map(str::parse).collect::<Result<_, _>>()?,
            "--runs" => runs = value()?.parse()?,
            "--json" => json = true,
            _ => anyhow::bail!("unknown argument {a}"),
        }
    }
    let vectors = rows(&data, "<f4", f32::from_le_bytes)?;
    let queries = rows(&queries, "<f4", f32::from_le_bytes)?;
    let gt = rows(&gt, "<i4", i32::from_le_bytes)?;
    anyhow::ensure!(gt.len() == queries.len() && gt[0].len() >= k, "ground truth does not fit the queries");
    let (n, dim) = (vectors.len(), vectors[0].len());

    let start = Instant::now();
    let index = SemanticIndex::build(vectors.into_iter().enumerate().map(|(i, v)| (i as u32, v)).collect());
    let build_s = start.elapsed().as_secs_f64();
    if !json {
        println!(
            "{n} vectors of dimension {dim}: built in {build_s:.2} s; {} queries, k = {k}",
            queries.len()
        );
        println!("| ef_search | recall@{k} | queries/s |");
        println!("|---|---|---|");
    }
    let mut sweep = Vec::new();
    for &ef in &efs {
        let (mut qps, mut recall) = (Vec::new(), 0.0);
        for _ in 0..runs {
            let start = Instant::now();
            let answers: Vec<Vec<(u32, f32)>> = queries.iter().map(|q| index.nearest(q, k, ef)).collect();
            qps.push(queries.len() as f64 / start.elapsed().as_secs_f64());
            let hits: usize = answers
                .iter()
                .zip(&gt)
                .map(|(a, t)| a.iter().filter(|(id, _)| t[..k].contains(&(*id as i32))).count())
                .sum();
            recall = hits as f64 / (k * queries.len()) as f64;
        }
        if !json {
            println!("| {ef} | {recall:.4} | {:.0} |", median(&qps));
        }
        sweep.push(serde_json::json!({ "ef": ef, "recall": recall, "qps": qps, "qps_median": median(&qps) }));
    }
    if json {
        let out = serde_json::json!({
            "side": "lethe",
            "library": "hnsw_rs 0.3.5 (simdeez_f), via lethe::guard::semantic::SemanticIndex",
            "n": n,
            "dim": dim,
            "queries": queries.len(),
            "k": k,
            "m": 16,
            "ef_construction": 200,
            "build_threads": std::env::var("RAYON_NUM_THREADS").ok(),
            "build_s": build_s,
            "sweep": sweep,
        });
        println!("{out}");
    }
    Ok(())
}
