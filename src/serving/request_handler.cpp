#include "serving/request_handler.h"

#include "tokenizer/utf8_stream_decoder.h"
#include "util/error.h"

namespace cortex::serving {

nlohmann::json Gpt2RequestHandler::pre_inference(const nlohmann::json& sample, const nlohmann::json&) {
  if (!sample.is_object())
    throw invalid_argument("samples[]: each sample must be an object with a \"text\" field");
  auto it = sample.find("text");
  if (it == sample.end()) throw invalid_argument("samples[].text: missing");
  if (!it->is_string()) throw invalid_argument("samples[].text: must be a string");
  return {{"context", tokenizer_->encode(it->get<std::string>())}};
}

nlohmann::json Gpt2RequestHandler::post_inference(const nlohmann::json& prediction, const nlohmann::json&) {
  const auto& ids = prediction.at("response").at("sample");
  std::vector<int32_t> tokens = ids.get<std::vector<int32_t>>();
  tokenizer::Utf8StreamDecoder
      decoder;  // the client gets valid UTF-8 even if generation stopped mid-character
  std::string text = decoder.push(tokenizer_->decode(tokens));
  return text + decoder.finish();
}

}  // namespace cortex::serving
