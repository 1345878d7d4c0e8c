// Example 03: a BERT encoder (Hugging Face's BertModel, as all-MiniLM-L6-v2 uses it) built from the
// library's modules, plus sentence-transformers' mean pooling and L2 normalisation.
//
// The tree has PyTorch's names ("encoder.layer.0.attention.self.query", ...), so the model's own
// safetensors file loads into it strictly, `nn::quantize` selects the same modules optimum-quanto
// does (every Linear; every LayerNorm too when activations are quantized), and `get_state_dict`
// writes quanto's keys. Everything model-specific (embedding lookup, attention, residuals, pooling)
// lives here, in the example: the library supplies the modules and the quantization workflow.
//
// A batch is a packed run of sequences ([tokens, hidden], no padding); attention is computed per
// sequence. Per-token arithmetic is what a padded batch with an attention mask computes (masked
// keys contribute exactly zero), without the work on padding tokens.
#pragma once

#include <quanto/kernels/parallel.hpp>
#include <quanto/nn.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

// Keeps GCC from unrolling an 8-wide loop before the loop vectoriser sees it: vectorised as a loop,
// its accumulator stays in one vector register (unrolled, the eight lanes stay scalar).
#if defined(__GNUC__) && !defined(__clang__)
#define MINILM_VECTOR_LOOP _Pragma("GCC unroll 1")
#else
#define MINILM_VECTOR_LOOP
#endif

namespace minilm {

using quanto::shape;
using quanto::tensor;
namespace nn = quanto::nn;

/// The architecture numbers of a BERT config.json.
struct bert_config {
  std::int64_t vocab_size = 30522;
  std::int64_t hidden = 384;
  std::int64_t layers = 6;
  std::int64_t heads = 12;
  std::int64_t intermediate = 1536;
  std::int64_t max_positions = 512;
  std::int64_t type_vocab = 2;
  float layer_norm_eps = 1e-12f;
};

/// The sequences of the batch being run: their token counts, in order.
struct batch_layout {
  std::vector<std::int64_t> lengths;
  std::int64_t tokens() const {
    std::int64_t t = 0;
    for (auto l : lengths) t += l;
    return t;
  }
};

/// A node that only groups named children (PyTorch's structural modules: "attention", "self",
/// "output", ...). Its parent runs the children; calling it directly is an error.
class group final : public nn::module<float> {
 public:
  explicit group(std::string kind) : kind_(std::move(kind)) {}
  nn::activation<float> forward(nn::activation<float>) override {
    throw quanto::unsupported_error(kind_ + " is run by its parent");
  }
  std::string_view kind() const noexcept override { return kind_; }

 private:
  std::string kind_;
};

/// One encoder layer: self-attention with a residual LayerNorm, then the GELU MLP with another.
class bert_layer final : public nn::module<float> {
 public:
  bert_layer(const bert_config& c, const batch_layout& batch) : c_(c), batch_(batch) {
    auto& attention = child_group(*this, "attention", "BertAttention");
    auto& self = child_group(attention, "self", "BertSelfAttention");
    query_ = &self.add("query", linear(c.hidden, c.hidden));
    key_ = &self.add("key", linear(c.hidden, c.hidden));
    value_ = &self.add("value", linear(c.hidden, c.hidden));
    auto& attn_out = child_group(attention, "output", "BertSelfOutput");
    attn_dense_ = &attn_out.add("dense", linear(c.hidden, c.hidden));
    attn_norm_ = &attn_out.add("LayerNorm", nn::LayerNorm<float>(c.hidden, c.layer_norm_eps));
    auto& inter = child_group(*this, "intermediate", "BertIntermediate");
    inter_dense_ = &inter.add("dense", linear(c.hidden, c.intermediate));
    gelu_ = &inter.add("intermediate_act_fn", nn::GELU<float>{});
    auto& out = child_group(*this, "output", "BertOutput");
    out_dense_ = &out.add("dense", linear(c.intermediate, c.hidden));
    out_norm_ = &out.add("LayerNorm", nn::LayerNorm<float>(c.hidden, c.layer_norm_eps));
  }

  nn::activation<float> forward(nn::activation<float> x) override {
    nn::activation<float> q = (*query_)(x), k = (*key_)(x), v = (*value_)(x);
    tensor<float> context = attention(q.value, k.value, v.value);
    nn::activation<float> a = (*attn_norm_)(add_into((*attn_dense_)(std::move(context)), x.value));
    nn::activation<float> h = (*gelu_)((*inter_dense_)(a));
    return (*out_norm_)(add_into((*out_dense_)(std::move(h)), a.value));
  }
  std::string_view kind() const noexcept override { return "BertLayer"; }

  static nn::module<float>& child_group(nn::module<float>& parent, const std::string& name, const std::string& kind) {
    return parent.add(name, std::make_unique<group>(kind)).get();
  }
  static nn::Linear<float> linear(std::int64_t in, std::int64_t out) {
    return nn::Linear<float>(tensor<float>(shape{out, in}), tensor<float>(shape{out}));
  }

 private:
  /// The residual sum a + b, in a's storage (a's quantized codes, if any, are dropped: the sum is float).
  static tensor<float> add_into(nn::activation<float> a, const tensor<float>& b) {
    tensor<float> y = std::move(a).take_value();
    float* yp = y.data();
    const float* bp = b.data();
    for (std::size_t i = 0; i < y.size(); ++i) yp[i] += bp[i];
    return y;
  }

  /// softmax(q kᵀ / √d) v for every sequence and head; q, k, v are [tokens, hidden]. Per (sequence,
  /// head) the keys are transposed into a zero-padded [d, keys rounded up to W] block; QB queries at
  /// a time get their scores W keys at a time, in QB·W independent accumulators that vectorise, each
  /// score still the in-order sum over d of a plain dot product. The weighted sums of the values go
  /// the same way, W output elements of QB queries at a time, each summed over the keys in order;
  /// the softmax's exp is the library's vectorisable `exp_nonpositive`.
  tensor<float> attention(const tensor<float>& q, const tensor<float>& k, const tensor<float>& v) const {
    constexpr std::int64_t W = 8, QB = 4;
    const std::int64_t hidden = c_.hidden, heads = c_.heads, d = hidden / heads;
    const float scale = 1.0f / std::sqrt(static_cast<float>(d));
    tensor<float> ctx(q.shape());
    std::vector<std::int64_t> starts{0};
    for (auto l : batch_.lengths) starts.push_back(starts.back() + l);
    const auto seqs = static_cast<std::int64_t>(batch_.lengths.size());
    quanto::kernels::parallel_for(0, seqs * heads, 1, [&](std::int64_t lo, std::int64_t hi) {
      std::vector<float> kt, p;
      for (std::int64_t job = lo; job < hi; ++job) {
        const std::int64_t s = job / heads, h = job % heads;
        const std::int64_t t0 = starts[static_cast<std::size_t>(s)], len = batch_.lengths[static_cast<std::size_t>(s)];
        const std::int64_t padded = (len + W - 1) / W * W;
        kt.assign(static_cast<std::size_t>(d * padded), 0.0f);
        const float* kh = k.data() + t0 * hidden + h * d;
        for (std::int64_t e = 0; e < d; ++e)
          for (std::int64_t j = 0; j < len; ++j) kt[static_cast<std::size_t>(e * padded + j)] = kh[j * hidden + e];
        p.resize(static_cast<std::size_t>(QB * padded));
        float* pp = p.data();
        const float* ktp = kt.data();
        const float* vh = v.data() + t0 * hidden + h * d;
        for (std::int64_t i0 = 0; i0 < len; i0 += QB) {
          const std::int64_t nb = std::min(QB, len - i0);  // rows past the end repeat the last query
          const float* qrow[QB];
          for (std::int64_t b = 0; b < QB; ++b) qrow[b] = q.data() + (t0 + i0 + std::min(b, nb - 1)) * hidden + h * d;
          for (std::int64_t j0 = 0; j0 < padded; j0 += W) {
            float acc[QB][W] = {};
            for (std::int64_t e = 0; e < d; ++e) {
              const float* kr = ktp + e * padded + j0;
              for (std::int64_t b = 0; b < QB; ++b) {
                const float qe = qrow[b][e];
                MINILM_VECTOR_LOOP
                for (std::int64_t l = 0; l < W; ++l) acc[b][l] += qe * kr[l];
              }
            }
            for (std::int64_t b = 0; b < QB; ++b) {
              MINILM_VECTOR_LOOP
              for (std::int64_t l = 0; l < W; ++l) pp[b * padded + j0 + l] = acc[b][l] * scale;
            }
          }
          for (std::int64_t b = 0; b < QB; ++b) {
            float* pb = pp + b * padded;
            float mx = -INFINITY;
            for (std::int64_t j = 0; j < len; ++j) mx = std::max(mx, pb[j]);
            for (std::int64_t j = 0; j < len; ++j) pb[j] = nn::functional::exp_nonpositive(pb[j] - mx);
            float sum = 0.0f;
            for (std::int64_t j = 0; j < len; ++j) sum += pb[j];
            for (std::int64_t j = 0; j < len; ++j) pb[j] /= sum;
          }
          float* crow[QB];
          for (std::int64_t b = 0; b < QB; ++b) crow[b] = ctx.data() + (t0 + i0 + std::min(b, nb - 1)) * hidden + h * d;
          std::int64_t e0 = 0;
          for (; e0 + W <= d; e0 += W) {
            float acc[QB][W] = {};
            for (std::int64_t j = 0; j < len; ++j) {
              const float* vj = vh + j * hidden + e0;
              for (std::int64_t b = 0; b < QB; ++b) {
                const float w = pp[b * padded + j];
                MINILM_VECTOR_LOOP
                for (std::int64_t l = 0; l < W; ++l) acc[b][l] += w * vj[l];
              }
            }
            for (std::int64_t b = 0; b < nb; ++b) {
              MINILM_VECTOR_LOOP
              for (std::int64_t l = 0; l < W; ++l) crow[b][e0 + l] = acc[b][l];
            }
          }
          for (; e0 < d; ++e0)
            for (std::int64_t b = 0; b < nb; ++b) {
              float acc = 0.0f;
              for (std::int64_t j = 0; j < len; ++j) acc += pp[b * padded + j] * vh[j * hidden + e0];
              crow[b][e0] = acc;
            }
        }
      }
    });
    return ctx;
  }

  bert_config c_;
  const batch_layout& batch_;
  nn::slot<float>*query_, *key_, *value_, *attn_dense_, *attn_norm_, *inter_dense_, *gelu_, *out_dense_, *out_norm_;
};

/// Word, position and token-type embedding tables (quanto never quantizes nn.Embedding) and the
/// embedding LayerNorm, a child that quantization may replace.
class bert_embeddings final : public nn::module<float> {
 public:
  explicit bert_embeddings(const bert_config& c)
      : c_(c),
        word_(shape{c.vocab_size, c.hidden}),
        position_(shape{c.max_positions, c.hidden}),
        type_(shape{c.type_vocab, c.hidden}),
        norm_(&add("LayerNorm", nn::LayerNorm<float>(c.hidden, c.layer_norm_eps))) {}

  nn::activation<float> forward(nn::activation<float>) override {
    throw quanto::unsupported_error("BertEmbeddings takes token ids: call lookup()");
  }
  std::string_view kind() const noexcept override { return "BertEmbeddings"; }

  /// LayerNorm(word[id] + type[0] + position[p]) for each token of each sequence.
  nn::activation<float> lookup(std::span<const std::int64_t> ids, const batch_layout& batch) const {
    tensor<float> x(shape{static_cast<std::int64_t>(ids.size()), c_.hidden});
    std::size_t t = 0;
    for (auto len : batch.lengths) {
      if (len > c_.max_positions)
        throw quanto::shape_error("a sequence of " + std::to_string(len) + " tokens exceeds the model's " +
                                  std::to_string(c_.max_positions) + " positions");
      for (std::int64_t p = 0; p < len; ++p, ++t) {
        const std::int64_t id = ids[t];
        if (id < 0 || id >= c_.vocab_size)
          throw quanto::value_error("token id " + std::to_string(id) + " out of range");
        const float* w = word_.data() + id * c_.hidden;
        const float* pe = position_.data() + p * c_.hidden;
        const float* te = type_.data();
        float* y = x.data() + static_cast<std::int64_t>(t) * c_.hidden;
        for (std::int64_t e = 0; e < c_.hidden; ++e) y[e] = (w[e] + te[e]) + pe[e];
      }
    }
    return (*norm_)(std::move(x));
  }

  void save_own(nn::state_dict& sd, const std::string& prefix) const override {
    sd.insert(prefix + "word_embeddings.weight", nn::stored_tensor::from(word_));
    sd.insert(prefix + "position_embeddings.weight", nn::stored_tensor::from(position_));
    sd.insert(prefix + "token_type_embeddings.weight", nn::stored_tensor::from(type_));
  }
  void load_own(nn::load_context& lc, const std::string& prefix) override {
    load(lc, prefix + "word_embeddings.weight", word_);
    load(lc, prefix + "position_embeddings.weight", position_);
    load(lc, prefix + "token_type_embeddings.weight", type_);
    // older transformers saved the position_ids buffer (0, 1, 2, ...); read and check it if present
    const std::string ids_key = prefix + "position_ids";
    if (lc.has(ids_key)) {
      const tensor<std::int64_t> ids = lc.take(ids_key)->to<std::int64_t>(ids_key);
      for (std::size_t i = 0; i < ids.size(); ++i)
        if (ids[i] != static_cast<std::int64_t>(i)) throw nn::state_dict_error(ids_key + " is not 0, 1, 2, ...");
    }
  }

 private:
  static void load(nn::load_context& lc, const std::string& key, tensor<float>& into) {
    const nn::stored_tensor* t = lc.take(key);
    if (!t) return;  // reported as missing by load_state_dict
    tensor<float> v = t->to<float>(key);
    if (!(v.shape() == into.shape()))
      throw quanto::shape_error(key + " has shape " + v.shape().to_string() + ", expected " + into.shape().to_string());
    into = std::move(v);
  }

  bert_config c_;
  tensor<float> word_, position_, type_;
  nn::slot<float>* norm_;
};

/// BertModel: embeddings, encoder layers, pooler (kept for the state dict and quantization; the
/// sentence embedding does not use it), and the sentence-transformers head.
class bert_model final : public nn::module<float> {
 public:
  explicit bert_model(const bert_config& c) : c_(c) {
    if (c.heads <= 0 || c.hidden % c.heads != 0)
      throw quanto::shape_error("hidden size is not a multiple of the heads");
    embeddings_ = &add("embeddings", std::make_unique<bert_embeddings>(c)).get();
    auto& encoder = bert_layer::child_group(*this, "encoder", "BertEncoder");
    auto& list = bert_layer::child_group(encoder, "layer", "ModuleList");
    for (std::int64_t i = 0; i < c.layers; ++i)
      layers_.push_back(&list.add(std::to_string(i), std::make_unique<bert_layer>(c, batch_)));
    auto& pooler = bert_layer::child_group(*this, "pooler", "BertPooler");
    pooler.add("dense", bert_layer::linear(c.hidden, c.hidden));
  }

  nn::activation<float> forward(nn::activation<float>) override {
    throw quanto::unsupported_error("BertModel takes token ids: call encode()");
  }
  std::string_view kind() const noexcept override { return "BertModel"; }
  const bert_config& config() const noexcept { return c_; }

  /// The last hidden states [tokens, hidden] of a packed batch of sequences.
  tensor<float> encode(std::span<const std::int64_t> ids, std::span<const std::int64_t> lengths) {
    batch_.lengths.assign(lengths.begin(), lengths.end());
    if (batch_.tokens() != static_cast<std::int64_t>(ids.size()))
      throw quanto::shape_error("the sequence lengths do not add up to the token count");
    nn::activation<float> x = static_cast<bert_embeddings*>(embeddings_)->lookup(ids, batch_);
    for (nn::slot<float>* layer : layers_) x = (*layer)(std::move(x));
    return std::move(x).take_value();
  }

  /// Sentence embeddings [sequences, hidden]: the mean over each sequence's tokens, L2-normalised
  /// (sentence-transformers' Pooling(mean) + Normalize).
  tensor<float> embed(std::span<const std::int64_t> ids, std::span<const std::int64_t> lengths) {
    const tensor<float> h = encode(ids, lengths);
    const std::int64_t n = static_cast<std::int64_t>(lengths.size()), d = c_.hidden;
    tensor<float> out(shape{n, d});
    std::int64_t t0 = 0;
    for (std::int64_t s = 0; s < n; ++s) {
      const std::int64_t len = lengths[static_cast<std::size_t>(s)];
      float* o = out.data() + s * d;
      for (std::int64_t e = 0; e < d; ++e) o[e] = 0.0f;
      for (std::int64_t t = t0; t < t0 + len; ++t)
        for (std::int64_t e = 0; e < d; ++e) o[e] += h.data()[t * d + e];
      double norm2 = 0.0;
      for (std::int64_t e = 0; e < d; ++e) {
        o[e] /= static_cast<float>(std::max<std::int64_t>(len, 1));
        norm2 += static_cast<double>(o[e]) * o[e];
      }
      const float inv = 1.0f / std::max(static_cast<float>(std::sqrt(norm2)), 1e-12f);
      for (std::int64_t e = 0; e < d; ++e) o[e] *= inv;
      t0 += len;
    }
    return out;
  }

 private:
  bert_config c_;
  batch_layout batch_;
  nn::module<float>* embeddings_ = nullptr;
  std::vector<nn::slot<float>*> layers_;
};

}  // namespace minilm

#undef MINILM_VECTOR_LOOP
