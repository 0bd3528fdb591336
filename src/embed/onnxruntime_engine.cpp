// InferenceEngine on ONNX Runtime's C++ API. One session per engine, reused for every
// call (creating a session costs ~100 ms of graph optimisation).
#include <onnxruntime_cxx_api.h>

#include <algorithm>
#include <memory>
#include <thread>

#include "embed/engine.h"

namespace imgsearch::embed {
namespace {

Ort::Env& ort_env() {
  // One environment per process; ORT logs only warnings and worse.
  static Ort::Env env(ORT_LOGGING_LEVEL_ERROR, "imgsearch");
  return env;
}

class OnnxRuntimeEngine final : public InferenceEngine {
 public:
  OnnxRuntimeEngine(const ModelSpec& spec, Ort::Session session) : spec_(spec), session_(std::move(session)) {}

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
      auto values = session_.Run(Ort::RunOptions{nullptr}, in_names, &in, 1, out_names.data(), out_names.size());
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

  ModelSpec spec_;
  Ort::Session session_;
};

}  // namespace

Result<std::unique_ptr<InferenceEngine>> make_engine(const ModelSpec& spec, const EngineOptions& options,
                                                     const std::string& backend) {
  if (backend != "onnxruntime") return make_error("unknown inference backend '" + backend + "'");
  try {
    Ort::SessionOptions so;
    const int threads = options.threads > 0 ? options.threads : int(std::max(1u, std::thread::hardware_concurrency()));
    so.SetIntraOpNumThreads(threads);
    so.SetInterOpNumThreads(1);
    so.AddConfigEntry("session.intra_op.allow_spinning", options.spin_wait ? "1" : "0");
    so.SetExecutionMode(ORT_SEQUENTIAL);
    so.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
    Ort::Session session(ort_env(), spec.onnx_path.c_str(), so);
    return std::unique_ptr<InferenceEngine>(new OnnxRuntimeEngine(spec, std::move(session)));
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
