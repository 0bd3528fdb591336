// InferenceEngine on ONNX Runtime's C++ API. A session is reused for every call
// (creating one costs ~100 ms of graph optimisation).
//
// Sessions are made on the graph pruned to the outputs a call asks for: ONNX Runtime
// computes every graph output on every run, whether asked or not, and our models expose
// each block as an output (for `eval` and `--layer`). With the NCHWc layout every such
// output costs a ReorderOutput node per run (19 in EfficientNet-Lite0: ~3% of its run
// time). One session per distinct set of outputs, made on first use; the one for the
// model's default layer (what `index` and `search` ask) is made up front, so a model that
// cannot be loaded fails in make_engine. Models with external data are loaded from their
// path as they are (unpruned).
#include <onnxruntime_cxx_api.h>

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include "common/file_io.h"
#include "embed/engine.h"
#include "embed/onnx_proto.h"

namespace imgsearch::embed {
namespace {

Ort::Env& ort_env() {
  // One environment per process; ORT logs only warnings and worse.
  static Ort::Env env(ORT_LOGGING_LEVEL_ERROR, "imgsearch");
  return env;
}

Ort::SessionOptions session_options(const EngineOptions& options) {
  Ort::SessionOptions so;
  const int threads = options.threads > 0 ? options.threads : int(std::max(1u, std::thread::hardware_concurrency()));
  so.SetIntraOpNumThreads(threads);
  so.SetInterOpNumThreads(1);
  so.AddConfigEntry("session.intra_op.allow_spinning", options.spin_wait ? "1" : "0");
  so.SetExecutionMode(ORT_SEQUENTIAL);
  so.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
  return so;
}

class OnnxRuntimeEngine final : public InferenceEngine {
 public:
  // Throws Ort::Exception when the model cannot be loaded.
  OnnxRuntimeEngine(const ModelSpec& spec, const EngineOptions& options) : spec_(spec), options_(options) {
    auto bytes = read_file_bytes(spec.onnx_path);
    if (bytes) {
      auto parsed = onnx::parse_model(*bytes);
      if (parsed && !parsed->external_data) {
        model_ = std::move(*bytes);
        for (const auto& o : parsed->outputs) graph_outputs_.insert(o.name);
      }
    }
    // Prepared for the default layer when the graph has it, else the whole graph.
    const std::set<std::string> first =
        graph_outputs_.count(spec.default_layer) ? std::set<std::string>{spec.default_layer} : graph_outputs_;
    session_for(first);
  }

  std::string name() const override { return "onnxruntime"; }

  Result<std::vector<Tensor>> run(const float* input, int64_t batch, const std::vector<std::string>& outputs) override {
    const int64_t per = 3 * int64_t(spec_.input_size) * spec_.input_size;
    const int64_t slice = spec_.max_batch > 0 ? spec_.max_batch : batch;
    if (slice >= batch) return run_slice(input, batch, outputs);
    // A graph with a fixed batch size: run it slice by slice and join along dimension 0.
    std::vector<Tensor> joined;
    for (int64_t start = 0; start < batch; start += slice) {
      auto part = run_slice(input + start * per, std::min(slice, batch - start), outputs);
      if (!part) return part;
      if (joined.empty()) {
        joined = std::move(*part);
        continue;
      }
      for (size_t o = 0; o < joined.size(); ++o) {
        joined[o].data.insert(joined[o].data.end(), (*part)[o].data.begin(), (*part)[o].data.end());
        joined[o].shape[0] += (*part)[o].shape[0];
      }
    }
    return joined;
  }

 private:
  Result<std::vector<Tensor>> run_slice(const float* input, int64_t batch, const std::vector<std::string>& outputs) {
    try {
      const int64_t s = spec_.input_size;
      const std::vector<int64_t> shape =
          spec_.layout == Layout::NHWC ? std::vector<int64_t>{batch, s, s, 3} : std::vector<int64_t>{batch, 3, s, s};
      auto mem = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
      // ORT does not write to inputs; the const_cast is required by its C API signature.
      Ort::Value in = Ort::Value::CreateTensor<float>(mem, const_cast<float*>(input), size_t(batch * 3 * s * s),
                                                      shape.data(), shape.size());
      const char* in_names[] = {spec_.input_name.c_str()};
      std::vector<const char*> out_names;
      for (const auto& o : outputs) out_names.push_back(o.c_str());
      Ort::Session& session = session_for(std::set<std::string>(outputs.begin(), outputs.end()));
      auto values = session.Run(Ort::RunOptions{nullptr}, in_names, &in, 1, out_names.data(), out_names.size());
      std::vector<Tensor> result;
      result.reserve(values.size());
      for (size_t i = 0; i < values.size(); ++i) {
        auto info = values[i].GetTensorTypeAndShapeInfo();
        if (info.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT)
          return make_error("output '" + outputs[i] + "' is not a float tensor");
        Tensor t;
        t.shape = info.GetShape();
        if (t.shape.empty() || t.shape[0] != batch)
          return make_error("output '" + outputs[i] + "' does not have one item per image");
        const float* p = values[i].GetTensorData<float>();
        t.data.assign(p, p + info.GetElementCount());
        result.push_back(std::move(t));
      }
      return result;
    } catch (const Ort::Exception& e) {
      return make_error(std::string("inference failed: ") + e.what());
    }
  }

  // The session for a set of outputs (made on first use; thread-safe). An output the
  // graph lacks, or a model that could not be read for pruning, gets the unpruned graph,
  // whose Run() then reports a missing output as ONNX Runtime does.
  Ort::Session& session_for(const std::set<std::string>& wanted) {
    std::set<std::string> key = wanted;
    const bool prunable = !model_.empty() && !wanted.empty() &&
                          std::all_of(wanted.begin(), wanted.end(), [&](auto& o) { return graph_outputs_.count(o); });
    if (!prunable || key == graph_outputs_) key.clear();  // empty key: the graph as it is
    std::lock_guard lock(mu_);
    auto it = sessions_.find(key);
    if (it != sessions_.end()) return *it->second;
    std::unique_ptr<Ort::Session> session;
    auto pruned = key.empty() ? Result<std::string>(make_error("unpruned"))
                              : onnx::with_only_outputs(std::span<const uint8_t>(model_), key);
    if (pruned)
      session = std::make_unique<Ort::Session>(ort_env(), pruned->data(), pruned->size(), session_options(options_));
    else
      session = std::make_unique<Ort::Session>(ort_env(), spec_.onnx_path.c_str(), session_options(options_));
    return *sessions_.emplace(key, std::move(session)).first->second;
  }

  ModelSpec spec_;
  EngineOptions options_;
  std::vector<uint8_t> model_;           // the serialised graph; empty: load from the path, unpruned
  std::set<std::string> graph_outputs_;  // its outputs
  std::mutex mu_;                        // guards sessions_ (Session::Run itself is thread-safe)
  std::map<std::set<std::string>, std::unique_ptr<Ort::Session>> sessions_;
};

}  // namespace

Result<std::unique_ptr<InferenceEngine>> make_engine(const ModelSpec& spec, const EngineOptions& options,
                                                     const std::string& backend) {
  if (backend != "onnxruntime") return make_error("unknown inference backend '" + backend + "'");
  try {
    return std::unique_ptr<InferenceEngine>(new OnnxRuntimeEngine(spec, options));
  } catch (const Ort::Exception& e) {
    return make_error("cannot load model " + spec.onnx_path.string() + ": " + e.what());
  }
}

GraphProbe probe_graph(std::span<const uint8_t> model, const std::string& input_name,
                       const std::vector<int64_t>& input_shape) {
  GraphProbe probe;
  std::unique_ptr<Ort::Session> session;
  try {
    Ort::SessionOptions so;
    so.SetIntraOpNumThreads(int(std::max(1u, std::thread::hardware_concurrency())));
    // Every intermediate tensor may be an output here, which defeats most fusions anyway;
    // basic optimisation keeps loading quick.
    so.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_BASIC);
    session = std::make_unique<Ort::Session>(ort_env(), model.data(), model.size(), so);
  } catch (const Ort::Exception& e) {
    probe.load_error = e.what();
    return probe;
  }
  std::vector<std::string> names;
  try {
    Ort::AllocatorWithDefaultOptions alloc;
    for (size_t i = 0; i < session->GetOutputCount(); ++i) {
      ProbedOutput o;
      o.name = session->GetOutputNameAllocated(i, alloc).get();
      auto type = session->GetOutputTypeInfo(i);
      o.is_float = type.GetONNXType() == ONNX_TYPE_TENSOR &&
                   type.GetTensorTypeAndShapeInfo().GetElementType() == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
      names.push_back(o.name);
      probe.outputs.push_back(std::move(o));
    }
    int64_t count = 1;
    for (int64_t d : input_shape) count *= d;
    // A fixed, varied input: shapes do not depend on values, but a constant input could
    // hide nothing and a varied one costs nothing more.
    std::vector<float> input(size_t(std::max<int64_t>(count, 0)));
    for (size_t i = 0; i < input.size(); ++i) input[i] = float(int(i * 2654435761u % 255u) - 127) / 128.f;
    auto mem = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
    Ort::Value in =
        Ort::Value::CreateTensor<float>(mem, input.data(), input.size(), input_shape.data(), input_shape.size());
    const char* in_names[] = {input_name.c_str()};
    std::vector<const char*> out_names;
    for (const auto& n : names) out_names.push_back(n.c_str());
    auto values = session->Run(Ort::RunOptions{nullptr}, in_names, &in, 1, out_names.data(), out_names.size());
    for (size_t i = 0; i < values.size() && i < probe.outputs.size(); ++i)
      if (values[i].IsTensor()) probe.outputs[i].shape = values[i].GetTensorTypeAndShapeInfo().GetShape();
  } catch (const Ort::Exception& e) {
    probe.run_error = e.what();
  }
  return probe;
}

}  // namespace imgsearch::embed
