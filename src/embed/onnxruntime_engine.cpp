// InferenceEngine on ONNX Runtime's C++ API. One session per engine, reused for every
// call (creating a session costs ~100 ms of graph optimisation).
#include <onnxruntime_cxx_api.h>

#include <algorithm>
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
  OnnxRuntimeEngine(const ModelSpec& spec, Ort::Session session)
      : spec_(spec), session_(std::move(session)) {}

  std::string name() const override { return "onnxruntime"; }

  Result<std::vector<Tensor>> run(const float* input, int64_t batch,
                                  const std::vector<std::string>& outputs) override {
    try {
      const int64_t s = spec_.input_size;
      const std::vector<int64_t> shape{batch, 3, s, s};
      auto mem = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
      // ORT does not write to inputs; the const_cast is required by its C API signature.
      Ort::Value in = Ort::Value::CreateTensor<float>(mem, const_cast<float*>(input),
                                                      size_t(batch * 3 * s * s), shape.data(), shape.size());
      const char* in_names[] = {spec_.input_name.c_str()};
      std::vector<const char*> out_names;
      for (const auto& o : outputs) out_names.push_back(o.c_str());
      auto values = session_.Run(Ort::RunOptions{nullptr}, in_names, &in, 1, out_names.data(), out_names.size());
      std::vector<Tensor> result;
      result.reserve(values.size());
      for (auto& v : values) {
        auto info = v.GetTensorTypeAndShapeInfo();
        Tensor t;
        t.shape = info.GetShape();
        const float* p = v.GetTensorData<float>();
        t.data.assign(p, p + info.GetElementCount());
        result.push_back(std::move(t));
      }
      return result;
    } catch (const Ort::Exception& e) {
      return make_error(std::string("inference failed: ") + e.what());
    }
  }

 private:
  ModelSpec spec_;
  Ort::Session session_;
};

}  // namespace

Result<std::unique_ptr<InferenceEngine>> make_engine(const ModelSpec& spec, const EngineOptions& options,
                                                     const std::string& backend) {
  if (backend != "onnxruntime") return make_error("unknown inference backend '" + backend + "'");
  try {
    Ort::SessionOptions so;
    const int threads = options.threads > 0 ? options.threads
                                            : int(std::max(1u, std::thread::hardware_concurrency()));
    so.SetIntraOpNumThreads(threads);
    so.SetInterOpNumThreads(1);
    so.SetExecutionMode(ORT_SEQUENTIAL);
    so.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
    Ort::Session session(ort_env(), spec.onnx_path.c_str(), so);
    return std::unique_ptr<InferenceEngine>(new OnnxRuntimeEngine(spec, std::move(session)));
  } catch (const Ort::Exception& e) {
    return make_error("cannot load model " + spec.onnx_path.string() + ": " + e.what());
  }
}

}  // namespace imgsearch::embed
