//! The commons: public boilerplate (licenses, by default those Debian ships) embedded once. A
//! forget document that is itself boilerplate-like (a license) is near every other license's
//! clauses too; a semantic match is dropped when the output window is about as close to some
//! commons window as to the forget window (`guard.semantic.commons_margin`), as a court filters
//! out stock phrases before it compares two texts. Sets switch it off with `commons_filter`.
//!
//! Embedding the commons takes seconds, so the vectors are cached beside the texts, keyed by the
//! embedder and the texts; a cache that does not match or fails its checksum is rebuilt.
use super::normalize;
use super::semantic::{self, Embedder};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// The commons embedded: one vector per window.
pub struct Commons {
    pub vectors: Vec<Vec<f32>>,
    /// Text files embedded.
    pub texts: usize,
}

const CACHE_MAGIC: &[u8; 16] = b"lethe-commons-v1";

/// Embeds every `.txt` file of `dir` in windows of `window_words`, overlapping by half (or reads
/// the cache).
pub fn load(dir: &Path, embedder: &Embedder, window_words: usize) -> Result<Commons> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("guard.commons: reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    let mut key = xxhash_rust::xxh3::Xxh3::new();
    key.update(embedder.id.as_bytes());
    key.update(&(window_words as u64).to_le_bytes());
    let mut windows = Vec::new();
    for f in &files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("guard.commons: reading {}", f.display()))?;
        key.update(&(text.len() as u64).to_le_bytes());
        key.update(text.as_bytes());
        let w = normalize::words(&text);
        for r in semantic::windows(w.len(), window_words, window_words.div_ceil(2)) {
            windows.push(text[w.spans[r.start].start..w.spans[r.end - 1].end].to_string());
        }
    }
    let key = key.digest();
    let cache = dir.join(format!(".embeddings-{key:016x}"));
    if let Some(vectors) = read_cache(&cache, windows.len(), embedder.dim) {
        return Ok(Commons { vectors, texts: files.len() });
    }
    let mut vectors = Vec::with_capacity(windows.len());
    for chunk in windows.chunks(32) {
        let texts: Vec<&str> = chunk.iter().map(String::as_str).collect();
        vectors.extend(embedder.embed(&texts)?);
    }
    if let Err(e) = write_cache(&cache, &vectors) {
        tracing::warn!(path = %cache.display(), error = %format!("{e:#}"), "the commons cache could not be written; it is embedded again at the next start");
    }
    Ok(Commons { vectors, texts: files.len() })
}

/// The cached vectors, if the file holds exactly `count` vectors of `dim` and its checksum holds.
fn read_cache(path: &Path, count: usize, dim: usize) -> Option<Vec<Vec<f32>>> {
    let bytes = std::fs::read(path).ok()?;
    let body_len = 16 + 16 + 4 * count * dim;
    if bytes.len() != body_len + 8 || &bytes[..16] != CACHE_MAGIC {
        return None;
    }
    let (body, sum) = bytes.split_at(body_len);
    if xxhash_rust::xxh3::xxh3_64(body).to_le_bytes() != sum
        || body[16..24] != (count as u64).to_le_bytes()
        || body[24..32] != (dim as u64).to_le_bytes()
    {
        return None;
    }
    let floats: Vec<f32> =
        body[32..].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Some(floats.chunks(dim.max(1)).map(<[f32]>::to_vec).collect())
}

fn write_cache(path: &Path, vectors: &[Vec<f32>]) -> Result<()> {
    let dim = vectors.first().map_or(0, Vec::len);
    let mut body = CACHE_MAGIC.to_vec();
    body.extend((vectors.len() as u64).to_le_bytes());
    body.extend((dim as u64).to_le_bytes());
    body.extend(vectors.iter().flatten().flat_map(|x| x.to_le_bytes()));
    let sum = xxhash_rust::xxh3::xxh3_64(&body);
    body.extend(sum.to_le_bytes());
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, &body)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_round_trips_and_a_damaged_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        let vectors = vec![vec![0.5, -0.25, 1.0], vec![0.0, 1.0, 2.0]];
        write_cache(&path, &vectors).unwrap();
        assert_eq!(read_cache(&path, 2, 3), Some(vectors));
        assert_eq!(read_cache(&path, 3, 3), None);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[40] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(read_cache(&path, 2, 3), None);
    }
}
