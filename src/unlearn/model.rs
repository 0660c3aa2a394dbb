//! A trainable forward of the llama-family GGUF models Lethe serves. Weights are dequantized
//! into f32 variables and the forward uses only ops with a backward pass in candle: the fast
//! `rope_i`, `softmax_last_dim`, `rms_norm` and quantized matmul silently drop gradients, so
//! this uses `rope_i_slow`, `ops::softmax`, an explicit RMS norm and plain matmuls. The GGUF
//! Q/K layout is kept (interleaved rotary embedding), as the serving path does.
use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor, Var, D};
use std::collections::BTreeMap;
use std::path::Path;

/// Which weights are trained; the rest stay fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trainable {
    All,
    /// The feed-forward (MLP) matrices of every block.
    Mlp,
    /// Every weight of the last K blocks.
    LastBlocks(usize),
}

impl Trainable {
    fn includes(&self, name: &str, blocks: usize) -> bool {
        let block =
            name.strip_prefix("blk.").and_then(|r| r.split('.').next()).and_then(|b| b.parse::<usize>().ok());
        match self {
            Trainable::All => true,
            Trainable::Mlp => name.contains(".ffn_") && !name.contains("norm"),
            Trainable::LastBlocks(k) => block.is_some_and(|b| b + k >= blocks),
        }
    }
}

struct Hyper {
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    blocks: usize,
    eps: f64,
    rope_base: f32,
}

/// Keys and values of the positions run so far, per block (greedy evaluation).
pub struct KvCache {
    kv: Vec<Option<(Tensor, Tensor)>>,
    len: usize,
}

impl KvCache {
    /// Positions cached.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

pub struct TrainableLlama {
    /// Every weight by GGUF tensor name; trainable ones are `Var`s.
    weights: BTreeMap<String, Var>,
    trainable: Vec<String>,
    metadata: Vec<(String, Value)>,
    hyper: Hyper,
}

impl TrainableLlama {
    pub fn load(path: &Path, trainable: Trainable) -> Result<Self> {
        let mut file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let content =
            gguf_file::Content::read(&mut file).with_context(|| format!("{} is not GGUF", path.display()))?;
        let md = |k: &str| content.metadata.get(k).with_context(|| format!("GGUF metadata {k} is missing"));
        if md("general.architecture")?.to_string()? != "llama" {
            bail!("only llama-family models can be trained");
        }
        let hyper = Hyper {
            heads: md("llama.attention.head_count")?.to_u32()? as usize,
            kv_heads: md("llama.attention.head_count_kv")?.to_u32()? as usize,
            head_dim: md("llama.rope.dimension_count")?.to_u32()? as usize,
            blocks: md("llama.block_count")?.to_u32()? as usize,
            eps: md("llama.attention.layer_norm_rms_epsilon")?.to_f32()? as f64,
            rope_base: md("llama.rope.freq_base").and_then(|v| Ok(v.to_f32()?)).unwrap_or(10000.0),
        };
        let mut weights = BTreeMap::new();
        let mut names = Vec::new();
        for name in content.tensor_infos.keys() {
            let t = content.tensor(&mut file, name, &Device::Cpu)?.dequantize(&Device::Cpu)?;
            weights.insert(name.clone(), Var::from_tensor(&t)?);
            if trainable.includes(name, hyper.blocks) {
                names.push(name.clone());
            }
        }
        let metadata = content.metadata.into_iter().collect();
        Ok(Self { weights, trainable: names, metadata, hyper })
    }

    /// Whether every weight of `other` is exactly (bit for bit) this model's, so that both
    /// score the same.
    pub fn same_weights(&self, other: &Self) -> Result<bool> {
        if self.weights.len() != other.weights.len() {
            return Ok(false);
        }
        for (name, v) in &self.weights {
            let Some(o) = other.weights.get(name) else { return Ok(false) };
            if v.shape() != o.shape() {
                return Ok(false);
            }
            let differing = v.as_tensor().ne(o.as_tensor())?.to_dtype(DType::U32)?.sum_all()?;
            if differing.to_scalar::<u32>()? > 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The variables the optimizer updates.
    pub fn trainable_vars(&self) -> Vec<Var> {
        self.trainable.iter().map(|n| self.weights[n].clone()).collect()
    }

    pub fn trainable_names(&self) -> &[String] {
        &self.trainable
    }

    fn w(&self, name: &str) -> Result<Tensor> {
        let v = self.weights.get(name).with_context(|| format!("missing tensor {name}"))?;
        // Fixed weights are detached, so no gradient is computed for them.
        Ok(if self.trainable.iter().any(|n| n == name) {
            v.as_tensor().clone()
        } else {
            v.as_tensor().detach()
        })
    }

    /// Logits for every position: `tokens` (batch, seq) -> (batch, seq, vocab).
    pub fn forward(&self, tokens: &Tensor) -> Result<Tensor> {
        self.forward_from(tokens, None)
    }

    /// An empty key/value cache for [`Self::forward_cached`].
    pub fn new_cache(&self) -> KvCache {
        KvCache { kv: vec![None; self.hyper.blocks], len: 0 }
    }

    /// Logits of the last of `tokens` (vocab), the positions before them taken from `cache`,
    /// which is then extended by `tokens`. For evaluation only: no gradient is recorded.
    pub fn forward_cached(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Tensor> {
        anyhow::ensure!(!tokens.is_empty(), "no tokens to run");
        let input = Tensor::new(tokens, &Device::Cpu)?.unsqueeze(0)?;
        let logits = self.forward_from(&input, Some(cache))?;
        Ok(logits.squeeze(0)?.get(tokens.len() - 1)?)
    }

    /// The forward: from position 0 with gradients (`cache` None), or after the cached
    /// positions without gradients (every weight detached, so the cache holds no graph).
    fn forward_from(&self, tokens: &Tensor, mut cache: Option<&mut KvCache>) -> Result<Tensor> {
        let h = &self.hyper;
        let (b, t) = tokens.dims2()?;
        let offset = cache.as_ref().map_or(0, |c| c.len);
        let detached = cache.is_some();
        let weight = |name: &str| -> Result<Tensor> {
            if detached {
                let v = self.weights.get(name).with_context(|| format!("missing tensor {name}"))?;
                Ok(v.as_tensor().detach())
            } else {
                self.w(name)
            }
        };
        let embed = weight("token_embd.weight")?;
        let mut x = embed.index_select(&tokens.flatten_all()?, 0)?.reshape((b, t, ()))?;
        let (cos, sin) = rotary(h.head_dim, h.rope_base, offset + t)?;
        let (cos, sin) = (cos.narrow(0, offset, t)?, sin.narrow(0, offset, t)?);
        let mask = causal_mask(t, offset)?;
        for l in 0..h.blocks {
            let p = |s: &str| format!("blk.{l}.{s}.weight");
            let n = rms_norm(&x, &weight(&p("attn_norm"))?, h.eps)?;
            let proj = |name: &str, heads: usize| -> Result<Tensor> {
                Ok(linear(&n, &weight(&p(name))?)?
                    .reshape((b, t, heads, h.head_dim))?
                    .transpose(1, 2)?
                    .contiguous()?)
            };
            let q = candle_nn::rotary_emb::rope_i_slow(&proj("attn_q", h.heads)?, &cos, &sin)?;
            let mut k = candle_nn::rotary_emb::rope_i_slow(&proj("attn_k", h.kv_heads)?, &cos, &sin)?;
            let mut v = proj("attn_v", h.kv_heads)?;
            if let Some(c) = cache.as_deref_mut() {
                if let Some((past_k, past_v)) = &c.kv[l] {
                    k = Tensor::cat(&[past_k, &k], 2)?;
                    v = Tensor::cat(&[past_v, &v], 2)?;
                }
                c.kv[l] = Some((k.clone(), v.clone()));
            }
            let repeat = h.heads / h.kv_heads;
            let k = candle_transformers::utils::repeat_kv(k, repeat)?.contiguous()?;
            let v = candle_transformers::utils::repeat_kv(v, repeat)?.contiguous()?;
            let att = (q.matmul(&k.t()?)? / (h.head_dim as f64).sqrt())?.broadcast_add(&mask)?;
            let att = candle_nn::ops::softmax(&att, D::Minus1)?;
            let y = att.matmul(&v)?.transpose(1, 2)?.reshape((b, t, ()))?;
            x = (x + linear(&y, &weight(&p("attn_output"))?)?)?;
            let n = rms_norm(&x, &weight(&p("ffn_norm"))?, h.eps)?;
            let gate = candle_nn::ops::silu(&linear(&n, &weight(&p("ffn_gate"))?)?)?;
            let up = linear(&n, &weight(&p("ffn_up"))?)?;
            x = (x + linear(&(gate * up)?, &weight(&p("ffn_down"))?)?)?;
        }
        if let Some(c) = cache {
            c.len += t;
        }
        let x = rms_norm(&x, &weight("output_norm.weight")?, self.hyper.eps)?;
        let out = if self.weights.contains_key("output.weight") { weight("output.weight")? } else { embed };
        linear(&x, &out)
    }

    /// Writes the weights as GGUF: matrices quantized to `dtype` (where their width allows),
    /// norms in f32, the original metadata plus `extra`, to a temporary file renamed into place
    /// only when complete, so an interrupted run leaves no partial output.
    pub fn write_gguf(&self, path: &Path, dtype: GgmlDType, extra: &[(&str, Value)]) -> Result<()> {
        let mut tensors = Vec::new();
        for (name, v) in &self.weights {
            let t = v.as_tensor();
            let q = if t.rank() == 2 && t.dim(1)? % dtype.block_size() == 0 { dtype } else { GgmlDType::F32 };
            tensors.push((name.as_str(), QTensor::quantize(t, q)?));
        }
        let mut metadata: Vec<(&str, &Value)> = self
            .metadata
            .iter()
            .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k) && k != "general.file_type")
            .map(|(k, v)| (k.as_str(), v))
            .collect();
        metadata.extend(extra.iter().map(|(k, v)| (*k, v)));
        // In key order (the reader's is a hash map's), so the same weights give the same bytes.
        metadata.sort_by(|a, b| a.0.cmp(b.0));
        let tmp = path.with_extension("gguf.partial");
        {
            let mut file =
                std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
            let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
            gguf_file::write(&mut file, &metadata, &refs)?;
            file.sync_all()?;
        }
        std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
        Ok(())
    }
}

fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    Ok(x.broadcast_matmul(&w.t()?)?)
}

/// RMS norm from elementary ops (candle's fused `rms_norm` has no backward).
fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    Ok(x.broadcast_div(&(ms + eps)?.sqrt()?)?.broadcast_mul(w)?)
}

fn rotary(head_dim: usize, base: f32, t: usize) -> Result<(Tensor, Tensor)> {
    let inv: Vec<f32> =
        (0..head_dim).step_by(2).map(|i| 1.0 / base.powf(i as f32 / head_dim as f32)).collect();
    let inv = Tensor::new(inv.as_slice(), &Device::Cpu)?;
    let pos = Tensor::arange(0u32, t as u32, &Device::Cpu)?.to_dtype(DType::F32)?.reshape((t, 1))?;
    let freqs = pos.broadcast_mul(&inv.reshape((1, ()))?)?;
    Ok((freqs.cos()?, freqs.sin()?))
}

/// Attention mask of `t` new positions after `offset` earlier ones: (t, offset + t).
fn causal_mask(t: usize, offset: usize) -> Result<Tensor> {
    let mask: Vec<f32> = (0..t)
        .flat_map(|i| (0..offset + t).map(move |j| if j > offset + i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Ok(Tensor::from_vec(mask, (t, offset + t), &Device::Cpu)?)
}
