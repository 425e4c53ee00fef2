#include "model/gpt2_weights.h"

#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstring>
#include <filesystem>

#include "model/weight_types.h"
#include "util/error.h"
#include "util/huge_pages.h"

namespace cortex::model {

namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  TensorView t;
  t.shape = s;
  return t.shape_string();
}

// Looks a tensor up by name in either file type and checks its shape.
template <class File>
const TensorView& require(const File& file, const std::vector<std::string>& names,
                          const std::vector<int64_t>& shape, const std::string& config_source) {
  for (const auto& n : names) {
    if (const TensorView* t = file.find(n)) {
      if (t->shape != shape)
        throw corrupt_data(file.path() + ": tensor " + n + " has shape " + t->shape_string() + " but " +
                           config_source + " implies " + shape_str(shape));
      return *t;
    }
  }
  throw corrupt_data(file.path() + ": missing tensor " + names.front());
}

}  // namespace

namespace {

// The files a model is read from: what its converted weights are converted from.
std::vector<std::string> model_files(const std::string& path) {
  if (std::filesystem::is_directory(path)) return {path + "/config.json", path + "/model.safetensors"};
  return {path};
}

// The version of the layouts convert_matrix and as_f32 write (Q8_0 groups, transposed F16, widened
// vectors), part of a converted-weights file's kind: raise it when one changes, so that files written
// before are converted again rather than misread.
constexpr int kConvertedLayout = 1;

// Whether a file's weight matrices, stored as `stored`, are used in place when run as `run`: a GGUF
// file's in its own type; a safetensors file's only F32 as F32 (other types are stored transposed).
bool matrices_used_in_place(bool gguf, DType stored, DType run) {
  return gguf ? stored == run : stored == DType::kF32 && run == DType::kF32;
}

// Whether loading `path` in `dtype` converts its matrices (read from the files' headers). False when the
// files cannot be read: the load says why.
bool converts_matrices(const std::string& path, DType dtype) {
  try {
    if (std::filesystem::is_directory(path)) {
      auto f = SafetensorsFile::open(path + "/model.safetensors");
      const TensorView* wte = f->find("wte.weight");
      if (wte == nullptr) wte = f->find("transformer.wte.weight");
      return wte != nullptr && !matrices_used_in_place(false, wte->dtype, dtype);
    }
    const TensorView* embd = GgufFile::open(path)->find("token_embd.weight");
    return embd != nullptr && !matrices_used_in_place(true, embd->dtype, dtype);
  } catch (const Error&) {
    return false;
  }
}

std::string conversion_kind(std::optional<DType> dtype) {
  std::string name = dtype ? dtype_name(*dtype) : "as-stored";
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name + ".v" + std::to_string(kConvertedLayout);
}

}  // namespace

bool Gpt2Weights::writes_conversion_kind(const std::string& kind) {
  for (std::optional<DType> d : {std::optional<DType>{}, std::optional<DType>{DType::kF32},
                                 std::optional<DType>{DType::kF16}, std::optional<DType>{DType::kQ8_0}})
    if (kind == conversion_kind(d)) return true;
  return false;
}

std::unique_ptr<Gpt2Weights> Gpt2Weights::load(const std::string& path, std::optional<DType> dtype,
                                               const std::string& converted_cache_dir) {
  if (dtype && *dtype == DType::kBF16)
    throw invalid_argument("dtype bf16 is not supported: use f32, f16 or q8_0");
  if (converted_cache_dir.empty()) return load_from(path, dtype, std::nullopt);
  std::unique_ptr<ConvertedWeightsCache> cache;
  try {
    cache = std::make_unique<ConvertedWeightsCache>(converted_cache_dir, path, model_files(path),
                                                    conversion_kind(dtype));
  } catch (const Error&) {
    return load_from(path, dtype, std::nullopt);  // a missing file: the loader names it
  }
  // Without the lock first: the file, once there, is only ever replaced whole (renamed into place).
  if (auto w = load_cached(path, dtype, *cache)) return w;
  auto in_memory = [&](const Error& e) {
    spdlog::warn("{}: the converted weights stay in this process's memory ({})", path, e.what());
  };
  // Matrices to convert: the lock before converting, so that replicas starting at once convert once (the
  // others wait, then map the file). Otherwise the lock only once something was converted (vectors).
  bool locked = false;
  if (dtype && converts_matrices(path, *dtype)) {
    try {
      cache->lock();
      locked = true;
    } catch (const Error& e) {
      in_memory(e);
      return load_from(path, dtype, std::nullopt);
    }
    if (auto written = load_cached(path, dtype, *cache)) return written;  // while this one waited
  }
  auto w = load_from(path, dtype, std::nullopt);
  if (w->converted_pieces_.empty()) return w;  // nothing converted: nothing to keep
  try {
    if (!locked) {
      cache->lock();
      if (auto written = load_cached(path, dtype, *cache)) return written;  // while this one converted
    }
    cache->write(w->converted_pieces_);
  } catch (const Error& e) {
    in_memory(e);
    return w;
  }
  auto mapped = load_cached(path, dtype, *cache);
  if (!mapped) return w;
  mapped->converted_info_.written = true;
  spdlog::info("{}: weights converted to {} written to {} ({:.1f} MiB)", path, dtype_name(mapped->dtype()),
               cache->path(), static_cast<double>(mapped->converted_info_.bytes) / (1 << 20));
  return mapped;
}

std::string Gpt2Weights::Converted::where() const {
  if (bytes == 0) return "";
  if (cache_file.empty()) return "in memory";
  return (written ? "written to " : "mapped from ") + cache_file;
}

std::unique_ptr<Gpt2Weights> Gpt2Weights::load_cached(const std::string& path, std::optional<DType> dtype,
                                                      const ConvertedWeightsCache& cache) {
  auto contents = cache.open();
  if (!contents) return nullptr;
  try {
    return load_from(path, dtype, std::move(contents));
  } catch (const Error& e) {
    spdlog::warn("{}: does not fit {} ({}); converting again", cache.path(), path, e.what());
    return nullptr;
  }
}

std::unique_ptr<Gpt2Weights> Gpt2Weights::load_from(const std::string& path, std::optional<DType> dtype,
                                                    std::optional<ConvertedWeightsCache::Contents> cached) {
  auto w = std::unique_ptr<Gpt2Weights>(new Gpt2Weights());
  if (cached) {
    w->cache_file_ = std::move(cached->file);
    w->cache_pieces_ = std::move(cached->pieces);
  }
  namespace fs = std::filesystem;
  if (fs::is_directory(path)) {
    w->load_safetensors_dir(path, dtype);
  } else if (fs::exists(path)) {
    w->load_gguf(path, dtype);
  } else {
    throw not_found(path + ": no such model file or folder");
  }
  if (w->from_cache() && w->converted_pieces_.size() != w->cache_pieces_.size())
    throw corrupt_data(w->cache_file_->path() + ": holds " + std::to_string(w->cache_pieces_.size()) +
                       " pieces where the model converts " + std::to_string(w->converted_pieces_.size()));
  for (const auto& piece : w->converted_pieces_) w->converted_info_.bytes += piece.second;
  if (w->from_cache()) w->converted_info_.cache_file = w->cache_file_->path();
  w->read_in_place_weights();
  return w;
}

namespace {
// Drops this process's mapping of the whole pages within [data, data + bytes) of a mapped file: a tensor
// converted on load is not read again, and its file pages would otherwise stay in the RSS. (The pages
// stay in the page cache; anything else on them refaults from it if touched.)
void release_pages(const void* data, size_t bytes) {
  const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const auto begin = (reinterpret_cast<uintptr_t>(data) + page - 1) / page * page;
  const auto end = (reinterpret_cast<uintptr_t>(data) + bytes) / page * page;
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}
}  // namespace

const MappedFile& Gpt2Weights::mapping() const {
  return safetensors_ ? safetensors_->mapping() : gguf_->mapping();
}

void Gpt2Weights::read_in_place_weights() {
  if (from_cache()) {
    const MappedFile::HugePageRead r = cache_file_->read_on_huge_pages(cache_pieces_);
    spdlog::debug("{}: converted weights mapped: {} MiB of whole 2 MiB pages, {} MiB mapped on them",
                  cache_file_->path(), r.wanted >> 20, r.after >> 20);
  }
  if (in_place_.empty()) return;
  const MappedFile& file = mapping();
  const MappedFile::HugePageRead r = file.read_on_huge_pages(in_place_);
  in_place_huge_page_bytes_ = r.wanted;
  spdlog::debug("{}: weights used in place: {} MiB of whole 2 MiB pages, {} MiB mapped on them{}",
                file.path(), r.wanted >> 20, r.after >> 20,
                r.read_again ? fmt::format(" (read again: {} MiB before)", r.before >> 20) : "");
}

Gpt2Weights::InPlace Gpt2Weights::in_place() const {
  InPlace p;
  for (const auto& part : in_place_) p.bytes += part.second;
  p.huge_page_bytes = in_place_huge_page_bytes_;
  if (p.huge_page_bytes > 0)  // smaps counts the mapping whole, beyond the tensors too
    p.on_huge_pages = std::min(p.huge_page_bytes, huge_page_bytes_mapped(mapping().data(), mapping().size()));
  return p;
}

void* Gpt2Weights::own(size_t bytes) {
  void* piece = nullptr;
  if (from_cache()) {
    const size_t i = converted_pieces_.size();
    if (i >= cache_pieces_.size() || cache_pieces_[i].second != bytes)
      throw corrupt_data(cache_file_->path() + ": its piece " + std::to_string(i) +
                         " is not the size the model converts (" + std::to_string(bytes) + " bytes)");
    // Read-only memory: the callers fill a piece only when it is not from_cache().
    piece = const_cast<uint8_t*>(cache_file_->data() + cache_pieces_[i].first);
  } else {
    piece = converted_.allocate(bytes);
  }
  converted_pieces_.emplace_back(piece, bytes);
  return piece;
}

void Gpt2Weights::note_in_place(const TensorView& t) {
  in_place_.emplace_back(static_cast<const uint8_t*>(t.data) - mapping().data(), t.bytes);
}

// A small vector used in place beside converted matrices would cost more than its size: where the page
// cache holds the file in 2 MiB pages, reading it maps the whole 2 MiB page around it, the rest of which
// belongs to matrices converted and no longer read. A Q8_0 replica of 124M from its F32 file mapped 92 MiB
// of the file for 4 MB of biases and LayerNorms used in place (RSS 339 MiB). Copied, they take their own
// size in each process; in place beside matrices used in place, they share pages those use anyway.
const float* Gpt2Weights::as_f32(const TensorView& t) {
  if (t.dtype == DType::kF32 && (matrices_in_place_ || t.bytes >= kHugePageBytes)) {
    note_in_place(t);
    return static_cast<const float*>(t.data);
  }
  auto* buf = static_cast<float*>(own(static_cast<size_t>(t.elements()) * sizeof(float)));
  if (from_cache()) return buf;
  convert_to_f32(buf, t.dtype, t.data, t.elements());
  release_pages(t.data, t.bytes);
  return buf;
}

const void* Gpt2Weights::as_matrix(const TensorView& t, bool transpose) {
  try {
    return convert_matrix(t, transpose);
  } catch (const Error& e) {
    throw Error(e.code(), "tensor " + t.name + ": " + e.what());
  }
}

const void* Gpt2Weights::convert_matrix(const TensorView& t, bool transpose) {
  const int64_t rows = t.shape[0], cols = t.shape[1];
  const int64_t out_rows = transpose ? cols : rows, out_cols = transpose ? rows : cols;
  if (dtype_ == DType::kQ8_0 && out_cols % kQ8Block != 0)
    throw unsupported("rows of " + std::to_string(out_cols) +
                      " values cannot be stored as Q8_0 (blocks of 32): use dtype f32 or f16");
  if (t.dtype == dtype_ && !transpose) {
    note_in_place(t);
    return t.data;
  }
  const size_t stride = row_bytes(dtype_, out_cols);
  // Q8_0 converted here goes into groups of 16 rows (q8_0_groups.h): each group's rows are quantized
  // into `group` first, then laid out.
  const bool groups = dtype_ == DType::kQ8_0;
  auto* dst = static_cast<std::byte*>(
      own(groups ? q8_0_group_bytes(out_rows, out_cols) : stride * static_cast<size_t>(out_rows)));
  if (from_cache()) return dst;
  std::vector<std::byte> group(groups ? stride * kQ8GroupRows : 0);
  const size_t group_bytes = q8_0_group_bytes(kQ8GroupRows, out_cols);
  // Row r of the output, from its values as floats.
  auto emit = [&](int64_t r, const float* values) {
    if (!groups) return convert_from_f32(dst + r * stride, dtype_, values, out_cols);
    const int64_t in_group = r % kQ8GroupRows;
    convert_from_f32(group.data() + in_group * stride, dtype_, values, out_cols);
    if (in_group == kQ8GroupRows - 1 || r == out_rows - 1)
      group_q8_0_rows(dst + (r / kQ8GroupRows) * group_bytes,
                      reinterpret_cast<const BlockQ8_0*>(group.data()), in_group + 1, out_cols);
  };
  std::vector<float> row(static_cast<size_t>(out_cols));
  const size_t src_stride = row_bytes(t.dtype, cols);
  const auto* src = static_cast<const std::byte*>(t.data);
  if (!transpose) {
    for (int64_t r = 0; r < rows; ++r) {
      convert_to_f32(row.data(), t.dtype, src + r * src_stride, cols);
      emit(r, row.data());
    }
    release_pages(t.data, t.bytes);
    return dst;
  }
  // Transposed: read 64 source rows (converted to F32) at a time, then write their columns out in
  // pieces, so that neither side is read with a page-sized stride per value.
  constexpr int64_t kPanel = 64;
  std::vector<float> panel(static_cast<size_t>(kPanel * cols));
  std::vector<float> full(static_cast<size_t>(out_rows * out_cols));
  for (int64_t r0 = 0; r0 < rows; r0 += kPanel) {
    const int64_t n = std::min(kPanel, rows - r0);
    for (int64_t i = 0; i < n; ++i)
      convert_to_f32(panel.data() + i * cols, t.dtype, src + (r0 + i) * src_stride, cols);
    for (int64_t c = 0; c < cols; ++c)
      for (int64_t i = 0; i < n; ++i)
        full[static_cast<size_t>(c * out_cols + r0 + i)] = panel[static_cast<size_t>(i * cols + c)];
  }
  for (int64_t r = 0; r < out_rows; ++r) emit(r, full.data() + r * out_cols);
  release_pages(t.data, t.bytes);
  return dst;
}

size_t Gpt2Weights::decode_bytes() const {
  const size_t C = static_cast<size_t>(config_.n_embd);
  size_t bytes = 0;
  for (const LayerWeights& l : layers) {
    for (const Linear* L : {&l.attn_qkv, &l.attn_proj, &l.mlp_fc, &l.mlp_proj})
      bytes += L->weight_bytes() + static_cast<size_t>(L->out) * sizeof(float);
    bytes += 4 * C * sizeof(float);  // the two LayerNorms
  }
  return bytes + lm_head.weight_bytes() + 2 * C * sizeof(float);
}

void Gpt2Weights::token_embedding(int token, float* out) const {
  if (wte.q8_0_groups) return q8_0_group_row_to_f32(out, wte.weight, wte.in, token);
  const size_t stride = row_bytes(wte.dtype, wte.in);
  convert_to_f32(out, wte.dtype,
                 static_cast<const std::byte*>(wte.weight) + stride * static_cast<size_t>(token), wte.in);
}

void Gpt2Weights::load_safetensors_dir(const std::string& dir, std::optional<DType> dtype) {
  format_ = "safetensors";
  const std::string config_path = dir + "/config.json";
  const std::string weights_path = dir + "/model.safetensors";
  if (!std::filesystem::exists(config_path)) throw not_found(dir + ": missing config.json");
  if (!std::filesystem::exists(weights_path)) throw not_found(dir + ": missing model.safetensors");
  config_ = Gpt2Config::from_hf_json(config_path);
  safetensors_ = SafetensorsFile::open(weights_path);
  const auto& f = *safetensors_;
  const int64_t C = config_.n_embd, V = config_.vocab_size;
  auto find = [&](const std::string& name, std::vector<int64_t> shape) -> const TensorView& {
    return require(f, {name, "transformer." + name}, shape, "config.json");
  };
  auto get = [&](const std::string& name, std::vector<int64_t> shape) { return as_f32(find(name, shape)); };
  const TensorView& wte_t = find("wte.weight", {V, C});
  // The file's type unless one is asked for; BF16 becomes F16 (half the memory of F32; exact for normal
  // values within F16's range, which keeps fewer bits below 2^-14; a value beyond it is an error naming
  // the tensor: ask for dtype f32 then).
  dtype_ = dtype ? *dtype : wte_t.dtype == DType::kBF16 ? DType::kF16 : wte_t.dtype;
  matrices_in_place_ = matrices_used_in_place(false, wte_t.dtype, dtype_);
  auto linear = [&](const std::string& name, int in, int out) {
    Linear l;
    const TensorView& t = find(name + ".weight", {in, out});
    // F32 stays [in, out] (used in place when the file is F32); other types are stored [out, in].
    l.in_major = dtype_ == DType::kF32;
    l.weight = as_matrix(t, !l.in_major);
    l.bias = get(name + ".bias", {out});
    l.in = in, l.out = out, l.dtype = dtype_, l.q8_0_groups = dtype_ == DType::kQ8_0;
    return l;
  };
  wte = Linear{as_matrix(wte_t, false), nullptr, static_cast<int>(C), static_cast<int>(V), false, dtype_,
               dtype_ == DType::kQ8_0};
  wpe = get("wpe.weight", {config_.n_ctx, C});
  for (int i = 0; i < config_.n_layer; ++i) {
    const std::string p = "h." + std::to_string(i) + ".";
    LayerWeights l;
    l.ln_1_weight = get(p + "ln_1.weight", {C});
    l.ln_1_bias = get(p + "ln_1.bias", {C});
    l.attn_qkv = linear(p + "attn.c_attn", C, 3 * C);
    l.attn_proj = linear(p + "attn.c_proj", C, C);
    l.ln_2_weight = get(p + "ln_2.weight", {C});
    l.ln_2_bias = get(p + "ln_2.bias", {C});
    l.mlp_fc = linear(p + "mlp.c_fc", C, 4 * C);
    l.mlp_proj = linear(p + "mlp.c_proj", 4 * C, C);
    layers.push_back(l);
  }
  ln_f_weight = get("ln_f.weight", {C});
  ln_f_bias = get("ln_f.bias", {C});
  lm_head = wte;
  if (f.find("lm_head.weight") != nullptr)
    lm_head.weight = as_matrix(require(f, {"lm_head.weight"}, {V, C}, "config.json"), false);
}

void Gpt2Weights::load_gguf(const std::string& path, std::optional<DType> dtype) {
  format_ = "gguf";
  gguf_ = GgufFile::open(path);
  const auto& f = *gguf_;
  auto arch = f.get_string("general.architecture");
  if (!arch) throw corrupt_data(path + ": missing general.architecture");
  if (*arch != "gpt2") throw unsupported(path + ": architecture is '" + *arch + "'; only gpt2 is supported");
  auto need_int = [&](const std::string& key) -> int {
    auto v = f.get_int(key);
    if (!v) throw corrupt_data(path + ": missing metadata " + key);
    return static_cast<int>(*v);
  };
  config_.n_ctx = need_int("gpt2.context_length");
  config_.n_embd = need_int("gpt2.embedding_length");
  config_.n_layer = need_int("gpt2.block_count");
  config_.n_head = need_int("gpt2.attention.head_count");
  if (auto eps = f.get_float("gpt2.attention.layer_norm_epsilon"))
    config_.layer_norm_epsilon = static_cast<float>(*eps);
  const TensorView* embd = f.find("token_embd.weight");
  if (embd == nullptr || embd->shape.size() != 2)
    throw corrupt_data(path + ": missing tensor token_embd.weight");
  config_.vocab_size = static_cast<int>(embd->shape[0]);
  config_.validate(path);
  if (auto ff = f.get_int("gpt2.feed_forward_length"); ff && *ff != 4 * config_.n_embd)
    throw unsupported(path + ": gpt2.feed_forward_length " + std::to_string(*ff) + " is not 4 * n_embd");

  const int64_t C = config_.n_embd, V = config_.vocab_size;
  const std::string src = "its metadata";
  auto get = [&](const std::string& name, std::vector<int64_t> shape) {
    const TensorView& t = require(f, {name}, shape, src);
    if (t.dtype != DType::kF32)
      spdlog::debug("{}: widening {} from {} to F32", path, name, dtype_name(t.dtype));
    return as_f32(t);
  };
  // The type of the weight matrices: the token embedding's unless one is asked for.
  dtype_ = dtype ? *dtype : embd->dtype;
  matrices_in_place_ = matrices_used_in_place(true, embd->dtype, dtype_);
  // A matrix, and whether it is Q8_0 in groups (converted here; a Q8_0 tensor stays as mapped).
  auto matrix = [&](const std::string& name, std::vector<int64_t> shape, bool& groups) {
    const TensorView& t = require(f, {name}, shape, src);
    groups = dtype_ == DType::kQ8_0 && t.dtype != DType::kQ8_0;
    if (t.dtype != dtype_)
      spdlog::debug("{}: converting {} from {} to {}", path, name, dtype_name(t.dtype), dtype_name(dtype_));
    return as_matrix(t, false);
  };
  auto linear = [&](const std::string& name, int in, int out) {
    Linear l;
    l.weight = matrix(name + ".weight", {out, in}, l.q8_0_groups);
    l.bias = get(name + ".bias", {out});
    l.in = in, l.out = out, l.in_major = false, l.dtype = dtype_;
    return l;
  };
  wte = Linear{nullptr, nullptr, static_cast<int>(C), static_cast<int>(V), false, dtype_};
  wte.weight = matrix("token_embd.weight", {V, C}, wte.q8_0_groups);
  wpe = get("position_embd.weight", {config_.n_ctx, C});
  for (int i = 0; i < config_.n_layer; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    LayerWeights l;
    l.ln_1_weight = get(p + "attn_norm.weight", {C});
    l.ln_1_bias = get(p + "attn_norm.bias", {C});
    l.attn_qkv = linear(p + "attn_qkv", C, 3 * C);
    l.attn_proj = linear(p + "attn_output", C, C);
    l.ln_2_weight = get(p + "ffn_norm.weight", {C});
    l.ln_2_bias = get(p + "ffn_norm.bias", {C});
    l.mlp_fc = linear(p + "ffn_up", C, 4 * C);
    l.mlp_proj = linear(p + "ffn_down", 4 * C, C);
    layers.push_back(l);
  }
  ln_f_weight = get("output_norm.weight", {C});
  ln_f_bias = get("output_norm.bias", {C});
  lm_head = wte;
  if (f.find("output.weight") != nullptr)
    lm_head.weight = matrix("output.weight", {V, C}, lm_head.q8_0_groups);
}

}  // namespace cortex::model
