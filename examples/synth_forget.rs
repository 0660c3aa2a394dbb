//! Writes a synthetic forget list (JSON Lines) for the load and scale benchmarks: N documents
//! of 40 words drawn from the vocabulary of `eval/*.jsonl` and T two-word pseudo-name terms
//! with an e-mail alias each (see `benches/synth/mod.rs`; fixed seeds).
//!
//!     cargo run --release --example synth_forget -- DOCS TERMS OUT.jsonl
use std::io::Write;

#[path = "../benches/synth/mod.rs"]
mod synth;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [docs, terms, out] = args.as_slice() else {
        anyhow::bail!("usage: synth_forget DOCS TERMS OUT.jsonl");
    };
    let vocab = synth::vocabulary();
    let mut entries = synth::documents(docs.parse()?, 0, synth::seed_docs(), &vocab);
    entries.extend(synth::terms(terms.parse()?, 11));
    let mut f = std::io::BufWriter::new(std::fs::File::create(out)?);
    for e in &entries {
        serde_json::to_writer(&mut f, e)?;
        f.write_all(b"\n")?;
    }
    f.flush()?;
    eprintln!(
        "{out}: {} entries ({docs} documents, {terms} terms), vocabulary of {} words",
        entries.len(),
        vocab.len()
    );
    Ok(())
}
