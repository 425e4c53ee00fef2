// Python request handlers (the seed's `request_handler: encoder.py`): a RequestHandler that runs a user's
// Python file in an interpreter embedded in the replica (CPython, through pybind11).
//
// The file is imported once, when the handler is created (its folder goes first on sys.path, so it can
// import its neighbours; the module is named after the file). It may define
//   pre_inference(sample, metadata)      -> the model input: {"context": [ids]} or {"context": [[ids]]},
//                                            optionally with generation parameters beside "context"
//   post_inference(prediction, metadata) -> any JSON-serialisable value (a set or tuple becomes a list)
// Either may be missing: the built-in GPT-2 handler's half (set_builtin) applies then. JSON crosses as
// Python objects (dict, list, str, int, float, bool, None) both ways; metadata is the model's signature.
//
// Errors: a ValueError raised by the handler is the client's fault: Error(kInvalidArgument) with its
// message (HTTP 400). Any other exception is Error(kInternal) naming the function, the exception type and
// its message (HTTP 500); its traceback goes to the log. A result that is not JSON-serialisable is
// Error(kInternal) naming where in the result the bad value is and its type.
//
// Threading: the interpreter is started once per process (without Python's signal handlers) and never
// finalized; its lock (the GIL) is held only while Python code runs. Calls run on a few handler threads
// of this object's own; the caller waits for its call up to `call_timeout`. A call that takes longer
// throws HandlerTimeout (HTTP 504), and the handler thread running it is sent a TimeoutError (raised at
// its next Python instruction: a handler stuck in a loop stops; one blocked inside a C call, such as
// time.sleep, keeps its thread until that call returns). A thread so taken is replaced (up to `threads`
// extra ones), so that other requests keep being served; once that many are stuck as well, further calls
// wait and end by their own timeout.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "serving/request_handler.h"

namespace cortex::serving {

struct PythonHandlerOptions {
  std::chrono::milliseconds call_timeout{std::chrono::minutes(5)};  // each pre_/post_inference call
  int threads = 2;  // handler threads (the GIL runs one Python call at a time anyway)
};

class PythonHandler : public RequestHandler {
 public:
  // Starts the interpreter (once per process) and imports `path`. Throws Error(kNotFound) when the file
  // does not exist and Error(kInvalidArgument) with the Python traceback when it cannot be imported.
  static std::unique_ptr<PythonHandler> load(const std::string& path,
                                             const PythonHandlerOptions& options = {});
  ~PythonHandler() override;

  nlohmann::json pre_inference(const nlohmann::json& sample, const nlohmann::json& metadata) override;
  nlohmann::json post_inference(const nlohmann::json& prediction, const nlohmann::json& metadata) override;
  void set_builtin(RequestHandler* builtin) override { builtin_ = builtin; }

  bool has_pre_inference() const;
  bool has_post_inference() const;
  const std::string& module_name() const;

  struct State;  // shared with the handler threads (which may outlive this object when stuck)

 private:
  explicit PythonHandler(std::shared_ptr<State> state) : state_(std::move(state)) {}
  nlohmann::json call(int function, const nlohmann::json& arg, const nlohmann::json& metadata);

  std::shared_ptr<State> state_;
  RequestHandler* builtin_ = nullptr;
};

}  // namespace cortex::serving
