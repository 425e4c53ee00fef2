// GPT-2's weights as named views into a mapped file (Hugging Face safetensors folder or GGUF file),
// with shapes checked against the config before any is used. Weight matrices (the dense layers and the
// token embedding) are kept in the requested type (F32, F16 or Q8_0): a GGUF tensor already of that type
// is used in place (mapped, so processes loading one file share its pages), as is an F32 safetensors
// tensor run in F32; anything else is converted on load into memory owned here (and the file's pages it
// was read from are released from the process), or, given a converted-weights cache, mapped from the file
// that the first process to convert the model wrote there (converted_weights_cache.h). F16 and Q8_0
// matrices are always stored [out, in] (Q8_0 blocks run along the input dimension); Q8_0 converted on
// load is laid out in groups of 16 rows (q8_0_groups.h), a mapped Q8_0 tensor row by row as llama.cpp writes
// it. Vectors (LayerNorm, biases) and the position embedding are F32 (widened when stored otherwise), used in
// place when the file has them so and its matrices are used in place too (else copied, but for those of 2 MiB
// or more: see as_f32).
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "model/converted_weights_cache.h"
#include "model/gguf.h"
#include "model/gpt2_config.h"
#include "model/q8_0_groups.h"
#include "model/safetensors.h"
#include "util/page_arena.h"

namespace cortex::model {

// A dense layer y = x·W + b. Hugging Face stores W as [in, out] (Conv1D); GGUF and the tied LM head
// store it as [out, in]. Kernels accept either, so mapped weights are never copied to change layout.
struct Linear {
  const void* weight = nullptr;  // [in, out] when in_major, else [out, in]; of type dtype
  const float* bias = nullptr;   // [out], or nullptr
  int in = 0;
  int out = 0;
  bool in_major = true;  // only for F32: F16 and Q8_0 are always [out, in]
  DType dtype = DType::kF32;
  bool q8_0_groups = false;  // Q8_0 only: rows in groups of 16 (q8_0_groups.h) rather than one by one

  const float* f32() const { return static_cast<const float*>(weight); }  // when dtype is F32
  size_t weight_bytes() const {
    return q8_0_groups ? q8_0_group_bytes(out, in) : dtype_bytes(dtype, int64_t{in} * out);
  }
};

struct LayerWeights {
  const float* ln_1_weight;  // [C]
  const float* ln_1_bias;    // [C]
  Linear attn_qkv;           // C -> 3C, output columns [q | k | v]
  Linear attn_proj;          // C -> C
  const float* ln_2_weight;  // [C]
  const float* ln_2_bias;    // [C]
  Linear mlp_fc;             // C -> 4C
  Linear mlp_proj;           // 4C -> C
};

class Gpt2Weights {
 public:
  // Loads a Hugging Face folder (config.json + model.safetensors) or a GGUF file of architecture gpt2.
  // Throws Error with one line naming the file and the problem.
  // dtype: the type of the weight matrices; nullopt keeps the file's (F32, F16, Q8_0; BF16 becomes F16).
  // converted_cache_dir: where weights converted on load are kept (converted_weights_cache.h), written by
  // the first process to load the model in this type and mapped by every later one; empty: converted
  // into this process's memory each time. A cache that cannot be used (a folder that cannot be written,
  // a full disk) is logged and the weights are converted in memory.
  static std::unique_ptr<Gpt2Weights> load(const std::string& path, std::optional<DType> dtype = std::nullopt,
                                           const std::string& converted_cache_dir = "");
  // Whether `kind` (a converted-weights file's) is one this build writes: a file of another kind was
  // written by a build with other layouts and no load of this one uses it.
  static bool writes_conversion_kind(const std::string& kind);

  const Gpt2Config& config() const { return config_; }
  const std::string& format() const { return format_; }  // "safetensors" or "gguf"
  // The GGUF file, when loaded from one (it also carries the tokenizer); otherwise nullptr.
  const GgufFile* gguf() const { return gguf_.get(); }

  // The type of the weight matrices (every Linear and the token embedding).
  DType dtype() const { return dtype_; }
  // Bytes of weights read by one decode step of one sequence: every matrix, bias and norm, the LM head.
  size_t decode_bytes() const;
  // out[0:C] = the embedding of token `token` (converted to F32).
  void token_embedding(int token, float* out) const;

  // The weights used in place from the mapped file (F32 from safetensors, a GGUF file's own type; the
  // rest are converted into memory of this process's own, on 2 MiB pages where the system allows).
  struct InPlace {
    size_t bytes = 0;            // the tensors used in place
    size_t huge_page_bytes = 0;  // the whole 2 MiB pages inside them
    size_t on_huge_pages = 0;    // of those, the bytes mapped on 2 MiB pages now
  };
  InPlace in_place() const;

  // The weights converted on load (matrices in another type or layout, vectors copied or widened).
  struct Converted {
    size_t bytes = 0;        // their size
    std::string cache_file;  // the converted-weights file they are mapped from; empty: in own memory
    bool written = false;    // whether this process wrote that file (else it found it)
    // Where they are, for logs: "" when none; "in memory"; "written to FILE"; "mapped from FILE".
    std::string where() const;
  };
  const Converted& converted() const { return converted_info_; }

  Linear wte;                  // [vocab, C] token embeddings, stored [out, in] = [vocab, C]
  const float* wpe = nullptr;  // [n_ctx, C] position embeddings
  std::vector<LayerWeights> layers;
  const float* ln_f_weight = nullptr;  // [C]
  const float* ln_f_bias = nullptr;    // [C]
  Linear lm_head;                      // C -> vocab, [vocab, C]; tied to wte unless the file has its own

 private:
  // Loads `path`, converting what needs it into own memory, or taking it from `cached` (the pieces of a
  // converted-weights file, in the order they are asked for) when given.
  static std::unique_ptr<Gpt2Weights> load_from(const std::string& path, std::optional<DType> dtype,
                                                std::optional<ConvertedWeightsCache::Contents> cached);
  // load_from with `cache`'s file, when there is a good one; nullptr when there is none or it does not
  // fit the model (logged).
  static std::unique_ptr<Gpt2Weights> load_cached(const std::string& path, std::optional<DType> dtype,
                                                  const ConvertedWeightsCache& cache);
  void load_safetensors_dir(const std::string& dir, std::optional<DType> dtype);
  void load_gguf(const std::string& path, std::optional<DType> dtype);
  // Returns F32 data for `t`, converting into owned memory when it is stored in another type.
  const float* as_f32(const TensorView& t);
  // The matrix `t` ([rows, cols] in the file; transposed when `transpose`) in type dtype_, in place when
  // it already is and needs no transposing, else converted into owned memory.
  const void* as_matrix(const TensorView& t, bool transpose);
  const void* convert_matrix(const TensorView& t, bool transpose);  // as_matrix without the tensor's name
  // Memory for `bytes` of converted data: fresh (to be filled), or the next piece of the converted-weights
  // file mapped (already filled: from_cache()). Throws Error (kCorruptData) when that piece's size differs.
  void* own(size_t bytes);
  bool from_cache() const { return cache_file_ != nullptr; }
  // The mapped file the weights come from.
  const MappedFile& mapping() const;
  // Notes that `t` is used in place (from the mapping).
  void note_in_place(const TensorView& t);
  // Reads the tensors used in place into memory, on 2 MiB pages where the system allows (see
  // MappedFile::read_on_huge_pages).
  void read_in_place_weights();

  DType dtype_ = DType::kF32;
  // Whether the file's weight matrices are used in place (its type is dtype_ and their layout the one
  // kept): then so are its F32 vectors, whatever their size; else only those of 2 MiB or more (as_f32).
  bool matrices_in_place_ = true;
  Gpt2Config config_;
  std::string format_;
  std::unique_ptr<SafetensorsFile> safetensors_;
  std::unique_ptr<GgufFile> gguf_;
  std::vector<std::pair<size_t, size_t>> in_place_;  // tensors used in place: (offset in the file, bytes)
  size_t in_place_huge_page_bytes_ = 0;              // the whole 2 MiB pages inside them
  PageArena converted_;  // owned (converted) data, on 2 MiB pages where the system allows
  // Every piece own() handed out, in order: what a converted-weights file is written from.
  std::vector<std::pair<const void*, size_t>> converted_pieces_;
  // The converted-weights file the pieces come from, when mapped, and its pieces (offset, bytes).
  std::unique_ptr<MappedFile> cache_file_;
  std::vector<std::pair<size_t, size_t>> cache_pieces_;
  Converted converted_info_;
};

}  // namespace cortex::model
