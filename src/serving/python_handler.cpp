#include "serving/python_handler.h"

// pybind11 first: it includes Python.h, which must come before the standard headers.
#include <pybind11/pybind11.h>
// (the embedding API is CPython's own; pybind11 holds references and raises errors)

#include <spdlog/spdlog.h>

#include <cmath>
#include <condition_variable>
#include <deque>
#include <exception>
#include <filesystem>
#include <mutex>
#include <thread>

#include "util/error.h"

namespace py = pybind11;
namespace fs = std::filesystem;

#if defined(__SANITIZE_ADDRESS__)
// LeakSanitizer, in sanitizer builds of every program that embeds Python (cortex serve, the tests, and
// the replicas an operator starts, whatever their environment): the interpreter is never finalized
// (handler threads may outlive any handler), and CPython keeps objects it never frees in heaps LSan cannot
// see through, so they read as leaks. Only allocations made inside libpython are suppressed; a leak with
// any other origin is still reported.
extern "C" const char* __lsan_default_suppressions() {
  return "leak:libpython3.\n";
}
extern "C" const char* __lsan_default_options() {
  return "print_suppressions=0";  // (LSAN_OPTIONS still overrides it)
}
#endif

namespace cortex::serving {

using nlohmann::json;

namespace {

constexpr int kPre = 0, kPost = 1;
const char* const kFunctionNames[] = {"pre_inference", "post_inference"};
constexpr int kMaxDepth = 200;  // nesting of a returned value (a list that contains itself stops here)

// Runs in the interpreter once: loads a handler file as a module of its own name (even when a module of
// that name is already imported), with its folder first on sys.path so that it can import neighbours.
const char* const kLoaderSource = R"PY(
import importlib.machinery, importlib.util, sys, traceback

def load(name, path, folder):
    if folder not in sys.path:
        sys.path.insert(0, folder)
    loader = importlib.machinery.SourceFileLoader(name, path)
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module

def format_exception(exc_type, exc, tb):
    # Leave out the loader's and importlib's frames: the traceback starts in the handler's file.
    while tb is not None and (tb.tb_frame.f_globals is globals()
                              or tb.tb_frame.f_code.co_filename.startswith("<frozen importlib")):
        tb = tb.tb_next
    return "".join(traceback.format_exception(exc_type, exc, tb))
)PY";

PyObject* g_loader = nullptr;  // the module above (a new reference, kept for the process's life)

// Starts the interpreter once per process, as /usr/bin/python3 would (environment, site-packages, user
// site), but without Python's signal handlers (the replica owns SIGINT and SIGTERM), then releases the
// GIL. The interpreter is never finalized: handler threads stuck in Python may outlive any handler.
void ensure_interpreter() {
  static std::once_flag once;
  static std::string failure;
  std::call_once(once, [] {
    PyConfig config;
    PyConfig_InitPythonConfig(&config);
    config.install_signal_handlers = 0;
    config.parse_argv = 0;
#ifdef CORTEX_PYTHON3_EXECUTABLE
    // sys.executable (and the prefix Python finds its library by) is the interpreter we were built for.
    PyConfig_SetBytesString(&config, &config.program_name, CORTEX_PYTHON3_EXECUTABLE);
#endif
    PyStatus status = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    if (PyStatus_Exception(status)) {
      failure = std::string("cannot start the Python interpreter: ") + (status.err_msg ? status.err_msg : "");
      return;
    }
    py::module_ loader = py::reinterpret_steal<py::module_>(PyModule_New("_cortex_handler_loader"));
    PyObject* result = PyRun_String(kLoaderSource, Py_file_input, loader.attr("__dict__").ptr(),
                                    loader.attr("__dict__").ptr());
    if (!result) {
      PyErr_Print();
      failure = "cannot start the Python interpreter: the handler loader failed";
    }
    Py_XDECREF(result);
    if (failure.empty()) g_loader = loader.release().ptr();
    PyEval_SaveThread();  // from now on the GIL is taken only around Python calls
  });
  if (!failure.empty()) throw Error(ErrorCode::kInternal, failure);
}

// Holds the GIL for a scope, from any thread (creating the thread's Python state when it has none).
class Gil {
 public:
  Gil() : state_(PyGILState_Ensure()) {}
  ~Gil() { PyGILState_Release(state_); }
  Gil(const Gil&) = delete;
  Gil& operator=(const Gil&) = delete;

 private:
  PyGILState_STATE state_;
};

// The text of the exception being handled (with the GIL held): its traceback, or its type and message.
std::string format_exception(const py::error_already_set& e) {
  try {
    return py::str(py::reinterpret_borrow<py::object>(g_loader).attr("format_exception")(e.type(), e.value(),
                                                                                         e.trace()));
  } catch (const py::error_already_set&) {
    return e.what();
  }
}

std::string exception_message(const py::error_already_set& e) {
  try {
    return py::str(e.value());
  } catch (const py::error_already_set&) {
    return "";
  }
}

std::string type_name(PyObject* o) {
  return Py_TYPE(o)->tp_name;
}

// Converting a JSON value to Python objects (with the GIL held).
py::object to_python(const json& j) {
  switch (j.type()) {
    case json::value_t::null:
      return py::none();
    case json::value_t::boolean:
      return py::bool_(j.get<bool>());
    case json::value_t::number_integer:
      return py::reinterpret_steal<py::object>(PyLong_FromLongLong(j.get<int64_t>()));
    case json::value_t::number_unsigned:
      return py::reinterpret_steal<py::object>(PyLong_FromUnsignedLongLong(j.get<uint64_t>()));
    case json::value_t::number_float:
      return py::float_(j.get<double>());
    case json::value_t::string: {
      const auto& s = j.get_ref<const std::string&>();
      PyObject* o = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "surrogateescape");
      if (!o) throw py::error_already_set();
      return py::reinterpret_steal<py::object>(o);
    }
    case json::value_t::array: {
      py::list list(j.size());
      for (size_t i = 0; i < j.size(); ++i)
        PyList_SET_ITEM(list.ptr(), static_cast<Py_ssize_t>(i), to_python(j[i]).release().ptr());
      return list;
    }
    case json::value_t::object: {
      py::dict dict;
      for (const auto& [key, value] : j.items()) dict[py::str(key)] = to_python(value);
      return dict;
    }
    default:
      return py::none();
  }
}

// A returned value that JSON cannot carry: where it is (filled in as the error unwinds) and what it is.
struct NotSerialisable {
  std::string path;
  std::string what;
};

std::string key_text(PyObject* key) {
  if (PyUnicode_Check(key)) {
    Py_ssize_t n = 0;
    const char* s = PyUnicode_AsUTF8AndSize(key, &n);
    if (!s) {
      PyErr_Clear();
      throw NotSerialisable{"", "a dict key that is not valid Unicode"};
    }
    return std::string(s, static_cast<size_t>(n));
  }
  // As json.dumps does: numbers, booleans and None become their JSON text.
  if (key == Py_True) return "true";
  if (key == Py_False) return "false";
  if (key == Py_None) return "null";
  if (PyLong_Check(key) || PyFloat_Check(key)) return py::str(key);
  throw NotSerialisable{"", "a dict key of type " + type_name(key) + " (keys must be str)"};
}

json to_json(PyObject* o, int depth);

json item_to_json(PyObject* o, int depth, const std::string& segment) {
  try {
    return to_json(o, depth + 1);
  } catch (NotSerialisable& e) {
    if (e.path.size() < 80)
      e.path = segment + e.path;
    else if (e.path.rfind("...", 0) != 0)
      e.path = "..." + e.path;  // deep enough: the innermost steps say where
    throw;
  }
}

// Converting what a handler returned to JSON (with the GIL held), as json.dumps would, except that sets
// and tuples become lists and objects with tolist() (numpy arrays and scalars) are converted.
json to_json(PyObject* o, int depth) {
  if (depth > kMaxDepth) throw NotSerialisable{"", "nested too deeply (a container that holds itself?)"};
  if (o == Py_None) return nullptr;
  if (PyBool_Check(o)) return o == Py_True;
  if (PyLong_Check(o)) {
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow == 0 && !(v == -1 && PyErr_Occurred())) return static_cast<int64_t>(v);
    PyErr_Clear();
    if (overflow > 0) {
      unsigned long long u = PyLong_AsUnsignedLongLong(o);
      if (!PyErr_Occurred()) return static_cast<uint64_t>(u);
      PyErr_Clear();
    }
    throw NotSerialisable{"", "an int too large for JSON (" + std::string(py::str(o)) + ")"};
  }
  if (PyFloat_Check(o)) {
    double d = PyFloat_AS_DOUBLE(o);
    if (!std::isfinite(d)) throw NotSerialisable{"", "the float " + std::string(py::repr(o)) + " (not JSON)"};
    return d;
  }
  if (PyUnicode_Check(o)) {
    Py_ssize_t n = 0;
    const char* s = PyUnicode_AsUTF8AndSize(o, &n);
    if (!s) {
      PyErr_Clear();
      throw NotSerialisable{"", "a str that is not valid Unicode (a lone surrogate)"};
    }
    return std::string(s, static_cast<size_t>(n));
  }
  if (PyDict_Check(o)) {
    json object = json::object();
    py::list items = py::reinterpret_steal<py::list>(PyDict_Items(o));  // a copy: safe if the dict changes
    if (!items) throw py::error_already_set();
    for (py::handle item : items) {
      PyObject* key = PyTuple_GET_ITEM(item.ptr(), 0);
      const std::string k = key_text(key);
      object[k] = item_to_json(PyTuple_GET_ITEM(item.ptr(), 1), depth, "[" + json(k).dump() + "]");
    }
    return object;
  }
  if (PyList_Check(o) || PyTuple_Check(o) || PyAnySet_Check(o)) {
    py::object items = py::reinterpret_steal<py::object>(PySequence_Tuple(o));  // a copy, in order
    if (!items) throw py::error_already_set();
    json array = json::array();
    const Py_ssize_t n = PyTuple_GET_SIZE(items.ptr());
    for (Py_ssize_t i = 0; i < n; ++i)
      array.push_back(item_to_json(PyTuple_GET_ITEM(items.ptr(), i), depth, "[" + std::to_string(i) + "]"));
    return array;
  }
  if (PyObject_HasAttrString(o, "tolist")) {  // numpy arrays and scalars
    py::object converted = py::reinterpret_steal<py::object>(PyObject_CallMethod(o, "tolist", nullptr));
    if (!converted) throw py::error_already_set();
    if (converted.ptr() != o && !PyObject_HasAttrString(converted.ptr(), "tolist"))
      return to_json(converted.ptr(), depth + 1);
  }
  throw NotSerialisable{"", "an object of type " + type_name(o)};
}

struct Task {
  int function = kPre;
  json arg;
  json metadata;
  std::condition_variable done_cv;
  // Guarded by State::mutex.
  bool running = false;         // a handler thread took it
  bool in_python = false;       // ... and runs its Python call now (a timeout may interrupt it)
  bool done = false;            // result or error is set
  bool abandoned = false;       // the caller stopped waiting (timeout)
  unsigned long thread_id = 0;  // the Python thread id of the handler thread running it
  json result;
  std::exception_ptr error;
  std::chrono::steady_clock::time_point started;
};

}  // namespace

struct PythonHandler::State {
  std::string path;
  std::string name;  // module name
  PythonHandlerOptions options;
  // Python objects: used and released only with the GIL held.
  PyObject* module = nullptr;
  PyObject* functions[2] = {nullptr, nullptr};

  std::mutex mutex;
  std::condition_variable work_cv;  // handler threads wait for tasks
  std::condition_variable exit_cv;  // the destructor waits for handler threads to end
  std::deque<std::shared_ptr<Task>> queue;
  int live = 0;   // handler threads running
  int stuck = 0;  // of those, the ones running a call whose caller gave up
  bool stop = false;

  ~State() {
    Gil gil;
    Py_XDECREF(functions[kPre]);
    Py_XDECREF(functions[kPost]);
    Py_XDECREF(module);
  }

  // With mutex held.
  void spawn(const std::shared_ptr<State>& self) {
    ++live;
    std::thread([self] { self->worker(); }).detach();
  }

  // Runs one call (with the GIL held); sets the task's result or error.
  void run(Task& task, json& result, std::exception_ptr& error) {
    const std::string fname = std::string(kFunctionNames[task.function]);
    try {
      py::object arg = to_python(task.arg), metadata = to_python(task.metadata);
      PyObject* r =
          PyObject_CallFunctionObjArgs(functions[task.function], arg.ptr(), metadata.ptr(), nullptr);
      if (!r) throw py::error_already_set();
      py::object value = py::reinterpret_steal<py::object>(r);
      try {
        result = to_json(value.ptr(), 0);
      } catch (const NotSerialisable& e) {
        std::string where = e.path.empty() ? "the result" : "result" + e.path;
        throw Error(ErrorCode::kInternal, name + "." + fname +
                                              " returned a value that is not JSON-serialisable: " + where +
                                              " is " + e.what);
      }
    } catch (py::error_already_set& e) {
      std::string message = exception_message(e);
      if (e.matches(PyExc_ValueError)) {  // the client's input: 400 with the handler's message
        spdlog::info("{}.{} raised ValueError: {}", name, fname, message);
        error = std::make_exception_ptr(
            invalid_argument(message.empty() ? name + "." + fname + " rejected the sample" : message));
      } else {
        py::object type = e.type();
        const std::string exc_type =
            PyType_Check(type.ptr()) ? reinterpret_cast<PyTypeObject*>(type.ptr())->tp_name : "an exception";
        spdlog::error("{}.{} raised {}:\n{}", name, fname, exc_type, format_exception(e));
        error =
            std::make_exception_ptr(Error(ErrorCode::kInternal, name + "." + fname + " raised " + exc_type +
                                                                    (message.empty() ? "" : ": " + message)));
      }
    } catch (const Error& e) {
      if (PyErr_Occurred()) PyErr_Clear();
      spdlog::error("{}", e.what());
      error = std::current_exception();
    } catch (const std::exception& e) {
      if (PyErr_Occurred()) PyErr_Clear();
      error = std::make_exception_ptr(Error(ErrorCode::kInternal, name + "." + fname + ": " + e.what()));
    }
  }

  // A handler thread: takes tasks until stopped (or replaced after a stuck call).
  void worker() {
    PyGILState_STATE gil = PyGILState_Ensure();  // this thread's Python state, kept while it lives
    const unsigned long thread_id = PyThread_get_thread_ident();
    PyThreadState* ts = PyEval_SaveThread();
    std::unique_lock<std::mutex> lock(mutex);
    for (;;) {
      work_cv.wait(lock, [&] { return stop || !queue.empty(); });
      if (queue.empty()) break;  // stopping
      std::shared_ptr<Task> task = std::move(queue.front());
      queue.pop_front();
      if (task->abandoned) continue;  // its caller gave up while it waited
      task->running = true;
      task->thread_id = thread_id;
      task->started = std::chrono::steady_clock::now();
      lock.unlock();
      PyEval_RestoreThread(ts);
      lock.lock();
      task->in_python = true;
      lock.unlock();
      json result;
      std::exception_ptr error;
      run(*task, result, error);
      lock.lock();
      task->in_python = false;  // a timeout from now on interrupts nothing
      lock.unlock();
      PyThreadState_SetAsyncExc(thread_id, nullptr);  // drop an interruption that came too late
      if (PyErr_Occurred()) PyErr_Clear();
      ts = PyEval_SaveThread();
      lock.lock();
      task->result = std::move(result);
      task->error = error;
      task->done = true;
      task->done_cv.notify_all();
      if (task->abandoned) {
        --stuck;
        spdlog::warn("{}.{} returned after {:.1f} s, after its request had timed out", name,
                     kFunctionNames[task->function],
                     std::chrono::duration<double>(std::chrono::steady_clock::now() - task->started).count());
        if (live - stuck > options.threads) break;  // a replacement took this thread's place
      }
    }
    --live;
    exit_cv.notify_all();
    lock.unlock();
    PyEval_RestoreThread(ts);
    PyGILState_Release(gil);
  }
};

std::unique_ptr<PythonHandler> PythonHandler::load(const std::string& path,
                                                   const PythonHandlerOptions& options) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw not_found("request handler " + path + ": no such file");
  if (!fs::is_regular_file(path, ec))
    throw invalid_argument("request handler " + path + ": not a file (a Python file such as handler.py)");
  const fs::path absolute = fs::absolute(path).lexically_normal();
  std::string name = absolute.stem().string();
  for (char& c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') c = '_';
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0]))) name = "_" + name;

  ensure_interpreter();
  auto state = std::make_shared<State>();
  state->path = absolute.string();
  state->name = name;
  state->options = options;
  state->options.threads = std::max(1, options.threads);
  {
    Gil gil;
    try {
      py::object module = py::reinterpret_borrow<py::object>(g_loader).attr("load")(
          name, state->path, absolute.parent_path().string());
      for (int f : {kPre, kPost}) {
        py::object fn = py::getattr(module, kFunctionNames[f], py::none());
        if (fn.is_none()) continue;
        if (!PyCallable_Check(fn.ptr()))
          throw invalid_argument("request handler " + state->path + ": " + kFunctionNames[f] +
                                 " is not a function (it is a " + type_name(fn.ptr()) + ")");
        state->functions[f] = fn.release().ptr();
      }
      state->module = module.release().ptr();
    } catch (py::error_already_set& e) {
      throw invalid_argument("request handler " + state->path + " cannot be imported:\n" +
                             format_exception(e));
    }
  }
  if (!state->functions[kPre] && !state->functions[kPost])
    spdlog::warn(
        "request handler {} defines neither pre_inference nor post_inference: the built-in GPT-2 "
        "handler does both",
        state->path);
  {
    std::lock_guard<std::mutex> lock(state->mutex);
    for (int i = 0; i < state->options.threads; ++i) state->spawn(state);
  }
  return std::unique_ptr<PythonHandler>(new PythonHandler(std::move(state)));
}

PythonHandler::~PythonHandler() {
  std::unique_lock<std::mutex> lock(state_->mutex);
  state_->stop = true;
  state_->work_cv.notify_all();
  // Threads stuck in a call keep running on their own (they hold the state); the others end now.
  state_->exit_cv.wait_for(lock, std::chrono::seconds(5), [&] { return state_->live <= state_->stuck; });
}

bool PythonHandler::has_pre_inference() const {
  return state_->functions[kPre] != nullptr;
}
bool PythonHandler::has_post_inference() const {
  return state_->functions[kPost] != nullptr;
}
const std::string& PythonHandler::module_name() const {
  return state_->name;
}

json PythonHandler::pre_inference(const json& sample, const json& metadata) {
  if (state_->functions[kPre]) return call(kPre, sample, metadata);
  if (!builtin_)
    throw Error(ErrorCode::kInternal, state_->name + " has no pre_inference and no built-in handler");
  return builtin_->pre_inference(sample, metadata);
}

json PythonHandler::post_inference(const json& prediction, const json& metadata) {
  if (state_->functions[kPost]) return call(kPost, prediction, metadata);
  if (!builtin_)
    throw Error(ErrorCode::kInternal, state_->name + " has no post_inference and no built-in handler");
  return builtin_->post_inference(prediction, metadata);
}

json PythonHandler::call(int function, const json& arg, const json& metadata) {
  State& s = *state_;
  auto task = std::make_shared<Task>();
  task->function = function;
  task->arg = arg;
  task->metadata = metadata;
  const auto deadline = std::chrono::steady_clock::now() + s.options.call_timeout;
  std::unique_lock<std::mutex> lock(s.mutex);
  s.queue.push_back(task);
  s.work_cv.notify_one();
  if (!task->done_cv.wait_until(lock, deadline, [&] { return task->done; })) {
    task->abandoned = true;
    if (task->running) {
      ++s.stuck;
      // Keep `threads` handler threads free for other requests (up to as many extra ones).
      if (s.live - s.stuck < s.options.threads && s.live < 2 * s.options.threads) s.spawn(state_);
      if (task->in_python) {
        // Raise TimeoutError in the stuck call (at its next Python instruction). From a thread of its
        // own: taking the GIL may wait for the stuck call to let go of it.
        std::thread([state = state_, task] {
          Gil gil;
          std::lock_guard<std::mutex> lock(state->mutex);
          if (task->in_python) PyThreadState_SetAsyncExc(task->thread_id, PyExc_TimeoutError);
        }).detach();
      }
    }
    const double seconds = std::chrono::duration<double>(s.options.call_timeout).count();
    spdlog::error("{}.{} did not return within {:g} s: the request timed out", s.name,
                  kFunctionNames[function], seconds);
    throw HandlerTimeout("request timed out: " + s.name + "." + kFunctionNames[function] +
                         " did not return within " + fmt::format("{:g}", seconds) + " s");
  }
  if (task->error) std::rethrow_exception(task->error);
  return std::move(task->result);
}

}  // namespace cortex::serving
