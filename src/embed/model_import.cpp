#include "embed/model_import.h"

#include <unistd.h>  // getpid

#include <algorithm>
#include <cctype>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "common/file_io.h"
#include "embed/engine.h"
#include "embed/onnx_proto.h"

namespace imgsearch::embed {
namespace fs = std::filesystem;

namespace {

bool valid_name(const std::string& n) {
  if (n.empty() || n.size() > 64 || n[0] == '.' || n[0] == '-') return false;
  return std::all_of(n.begin(), n.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
  });
}

std::string qualified(const onnx::Node& n) { return n.domain.empty() ? n.op_type : n.domain + ":" + n.op_type; }

std::string describe_dims(const onnx::ValueInfo& v) {
  if (!v.has_shape) return "of unknown rank";
  std::string s = "[";
  for (size_t i = 0; i < v.dims.size(); ++i) {
    if (i) s += ", ";
    s += v.dims[i].value >= 0 ? std::to_string(v.dims[i].value) : (v.dims[i].param.empty() ? "?" : v.dims[i].param);
  }
  return s + "]";
}

bool word_in(const std::string& text, const std::string& word) {
  auto is_word = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  for (size_t pos = text.find(word); pos != std::string::npos; pos = text.find(word, pos + 1)) {
    const bool left = pos == 0 || !is_word(text[pos - 1]);
    const size_t end = pos + word.size();
    if (left && (end >= text.size() || !is_word(text[end]))) return true;
  }
  return false;
}

// ONNX Runtime refused the graph: name the operator(s) its message is about, so the user
// sees "FancyPool" first rather than a stack of runtime internals.
std::string load_failure(const std::string& ort_message, const onnx::Model& m) {
  std::vector<std::string> named;
  std::string example_node;
  for (const auto& n : m.nodes) {
    const std::string q = qualified(n);
    if (std::find(named.begin(), named.end(), q) != named.end() || !word_in(ort_message, n.op_type)) continue;
    named.push_back(q);
    if (example_node.empty() && !n.name.empty()) example_node = n.name;
  }
  if (named.empty()) return "ONNX Runtime cannot load the model: " + ort_message;
  std::string ops;
  for (const auto& o : named) ops += (ops.empty() ? "" : ", ") + o;
  return std::string(named.size() == 1 ? "unsupported operator " : "unsupported operators ") + ops +
         (example_node.empty() ? "" : " (node '" + example_node + "')") +
         ": ONNX Runtime cannot run it. ONNX Runtime says: " + ort_message;
}

// The layout of a 4-D feature map [N, a, b, c]. Images are fed square, so maps are
// square: the two equal dimensions are the spatial ones. Ambiguous (a == b == c, e.g.
// 1 x 1 x 1): `likely`, the layout the graph's ops give that tensor.
Layout map_layout(const std::vector<int64_t>& s, Layout likely) {
  if (s[2] == s[3] && s[1] != s[2]) return Layout::NCHW;
  if (s[1] == s[2] && s[3] != s[1]) return Layout::NHWC;
  return likely;
}

// The layers exposed when --layers is not given. Exposing every tensor would keep every
// activation alive and block the runtime's fusions, so a selection of the places people
// take representations from:
//   - residual block outputs: a spatial Add of two maps of its own shape (or the
//     activation right after it, as in ResNet);
//   - at each spatial size without residual blocks (VGG-style stages, a stage of one
//     block): the last map there that feeds a downsampling step, else the last map there;
//   - the last spatial map (the usual global-pooling input);
//   - every vector ([N, C] or [N, C, 1, 1]) that is not a mere reshape of another one.
void auto_select(std::vector<CandidateLayer>& cands, const onnx::Model& m) {
  std::map<std::string, size_t> cand_of;
  for (size_t i = 0; i < cands.size(); ++i) cand_of[cands[i].layer.name] = i;
  auto spatial = [&](size_t i) { return cands[i].rank == 4 && cands[i].layer.height * cands[i].layer.width > 1; };
  auto same_shape = [&](size_t a, size_t b) {
    const auto &x = cands[a].layer, &y = cands[b].layer;
    return x.channels == y.channels && x.height == y.height && x.width == y.width;
  };
  auto cand = [&](const std::string& name) {
    auto it = cand_of.find(name);
    return it == cand_of.end() ? std::string::npos : it->second;
  };
  constexpr size_t npos = std::string::npos;
  // Who reads each candidate, and whether it reads it to make a smaller map.
  std::vector<std::vector<const onnx::Node*>> readers(cands.size());
  std::vector<bool> feeds_downsampling(cands.size(), false);
  for (const auto& n : m.nodes) {
    const size_t out = n.outputs.empty() ? npos : cand(n.outputs[0]);
    for (const auto& in : n.inputs) {
      const size_t i = cand(in);
      if (i == npos) continue;
      readers[i].push_back(&n);
      if (out != npos && spatial(out) && spatial(i) && cands[out].layer.height < cands[i].layer.height)
        feeds_downsampling[i] = true;
    }
  }
  static const std::set<std::string> activations = {"Relu",      "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid",
                                                    "HardSwish", "Elu",  "Selu",      "Gelu",    "Softplus"};
  std::set<std::pair<int, int>> sizes_with_blocks;
  for (const auto& n : m.nodes) {
    if ((n.op_type != "Add" && n.op_type != "Sum") || n.inputs.size() != 2 || n.outputs.empty()) continue;
    size_t out = cand(n.outputs[0]);
    const size_t a = cand(n.inputs[0]), b = cand(n.inputs[1]);
    if (out == npos || a == npos || b == npos || !spatial(out) || !same_shape(out, a) || !same_shape(out, b)) continue;
    if (readers[out].size() == 1 && activations.count(readers[out][0]->op_type) && !readers[out][0]->outputs.empty()) {
      const size_t act = cand(readers[out][0]->outputs[0]);
      if (act != npos && same_shape(act, out)) out = act;
    }
    cands[out].exposed = true;
    sizes_with_blocks.insert({cands[out].layer.height, cands[out].layer.width});
  }
  std::map<std::pair<int, int>, size_t> last_at, last_feeding_down_at;
  size_t last_spatial = npos;
  for (size_t i = 0; i < cands.size(); ++i) {
    if (!spatial(i)) continue;
    const std::pair<int, int> hw{cands[i].layer.height, cands[i].layer.width};
    last_at[hw] = i;
    if (feeds_downsampling[i]) last_feeding_down_at[hw] = i;
    last_spatial = i;
  }
  for (const auto& [hw, i] : last_at)
    if (!sizes_with_blocks.count(hw))
      cands[last_feeding_down_at.count(hw) ? last_feeding_down_at[hw] : i].exposed = true;
  if (last_spatial != npos) cands[last_spatial].exposed = true;
  static const std::set<std::string> reshapes = {"Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity"};
  for (const auto& n : m.nodes) {
    if (n.outputs.empty()) continue;
    const size_t i = cand(n.outputs[0]);
    if (i == npos || spatial(i)) continue;
    const size_t src = n.inputs.empty() ? npos : cand(n.inputs[0]);
    const bool alias = reshapes.count(n.op_type) && src != npos && !spatial(src) && same_shape(src, i);
    if (!alias) cands[i].exposed = true;
  }
}

int count_label_lines(const fs::path& p, Status& status) {
  std::ifstream in(p);
  if (!in) {
    status = make_error("cannot read labels file " + p.string());
    return 0;
  }
  int n = 0;
  for (std::string line; std::getline(in, line);) ++n;
  return n;
}

}  // namespace

Result<ImportReport> import_model(const ImportOptions& o) {
  if (!valid_name(o.name))
    return make_error("bad model name '" + o.name + "': use letters, digits, '.', '_' and '-' (at most 64)");
  const fs::path final_dir = models_dir() / o.name;
  if (!o.dry_run && !o.force && fs::exists(final_dir))
    return make_error("model '" + o.name + "' already exists in " + models_dir().string() + " (--force replaces it)");
  for (int c = 0; c < 3; ++c)
    if (!(o.std[c] > 0)) return make_error("--std values must be > 0");

  auto bytes = read_file_bytes(o.onnx_file, uint64_t(2) << 30);
  if (!bytes) return make_error(o.onnx_file.string() + ": " + bytes.error());
  auto model = onnx::parse_model(*bytes);
  if (!model) return make_error(o.onnx_file.string() + ": " + model.error());
  const onnx::Model& m = *model;
  // ONNX keeps weights over 2 GB in side files; copying those is not implemented.
  if (m.external_data)
    return make_error(o.onnx_file.string() +
                      ": weights stored as external data are not supported (save the "
                      "model with its weights inside the .onnx file)");

  ImportReport report;
  report.opsets = m.opsets;
  for (const auto& n : m.nodes) {
    const std::string q = qualified(n);
    auto it = std::find_if(report.op_counts.begin(), report.op_counts.end(), [&](auto& p) { return p.first == q; });
    if (it == report.op_counts.end())
      report.op_counts.push_back({q, 1});
    else
      ++it->second;
  }

  // --- The input: one 4-D float image tensor.
  if (m.inputs.size() != 1) {
    std::string names;
    for (const auto& i : m.inputs) names += (names.empty() ? "" : ", ") + i.name;
    return make_error("the model has " + std::to_string(m.inputs.size()) + " inputs (" + names +
                      "): imgsearch feeds exactly one image tensor");
  }
  const onnx::ValueInfo& in = m.inputs[0];
  const std::string need = "need a 4-D float image input, [N, 3, H, W] (NCHW) or [N, H, W, 3] (NHWC)";
  if (in.elem_type != onnx::kFloat || !in.has_shape || in.dims.size() != 4)
    return make_error("unsupported input '" + in.name + "' (" +
                      (in.elem_type != onnx::kFloat ? "element type " + std::to_string(in.elem_type) + ", not float"
                                                    : "shape " + describe_dims(in)) +
                      "): " + need);
  auto is3 = [](const onnx::Dim& d) { return d.value == 3; };
  auto open = [](const onnx::Dim& d) { return d.value < 0; };
  Layout layout;
  if (o.layout) {
    layout = *o.layout;
    const onnx::Dim& ch = layout == Layout::NCHW ? in.dims[1] : in.dims[3];
    if (!is3(ch) && !open(ch))
      return make_error("input '" + in.name + "' " + describe_dims(in) + " has no 3-channel axis where " +
                        layout_name(layout) + " puts it: " + need);
  } else if (is3(in.dims[1]) && !is3(in.dims[3])) {
    layout = Layout::NCHW;
  } else if (is3(in.dims[3]) && !is3(in.dims[1])) {
    layout = Layout::NHWC;
  } else if (is3(in.dims[1])) {
    layout = Layout::NCHW;  // 3 x 3 images: NCHW, the ONNX convention
  } else if (open(in.dims[1]) || open(in.dims[3])) {
    return make_error("input '" + in.name + "' " + describe_dims(in) +
                      ": cannot tell where the channels are; pass --layout NCHW or NHWC");
  } else {
    return make_error("input '" + in.name + "' " + describe_dims(in) + " does not have 3 colour channels: " + need);
  }
  const onnx::Dim& hd = layout == Layout::NCHW ? in.dims[2] : in.dims[1];
  const onnx::Dim& wd = layout == Layout::NCHW ? in.dims[3] : in.dims[2];
  if (!open(hd) && !open(wd) && hd.value != wd.value)
    return make_error("input '" + in.name + "' " + describe_dims(in) +
                      " is not square: imgsearch feeds square centre crops");
  const int64_t fixed = !open(hd) ? hd.value : (!open(wd) ? wd.value : 0);
  int size = o.input_size;
  if (size <= 0 && fixed <= 0)
    return make_error("input '" + in.name + "' " + describe_dims(in) + " takes any size: --input-size is required");
  if (size <= 0) size = int(fixed);
  if (fixed > 0 && size != fixed)
    return make_error("--input-size " + std::to_string(size) + " but the graph's input is " + describe_dims(in));
  if (size < 8 || size > 4096) return make_error("--input-size must be 8..4096");
  const int64_t fixed_batch = in.dims[0].value;
  if (fixed_batch > 1)
    return make_error("input '" + in.name + "' " + describe_dims(in) + " has a fixed batch of " +
                      std::to_string(fixed_batch) + ": export it with batch 1 or a dynamic batch");

  ModelSpec& spec = report.spec;
  spec.name = o.name;
  spec.dir = final_dir;
  spec.onnx_path = final_dir / "model.onnx";
  spec.input_name = in.name;
  spec.input_size = size;
  spec.resize_short_side = o.resize_short_side > 0 ? o.resize_short_side : int(size / 0.875 + 0.5);
  if (spec.resize_short_side < size) return make_error("--resize must be at least --input-size");
  for (int c = 0; c < 3; ++c) {
    spec.mean[c] = o.mean[c];
    spec.std[c] = o.std[c];
  }
  spec.layout = layout;
  if (std::all_of(o.mean.begin(), o.mean.end(), [](float v) { return v <= 1.f; }) &&
      std::all_of(o.std.begin(), o.std.end(), [](float v) { return v <= 1.f; }))
    report.notes.push_back("--mean and --std are in 0..255 pixel units; if yours are in 0..1 units, multiply by 255");

  // --- ONNX Runtime loads and runs the graph as given: the operator check.
  auto input_shape = [&](int64_t b) {
    return layout == Layout::NCHW ? std::vector<int64_t>{b, 3, size, size} : std::vector<int64_t>{b, size, size, 3};
  };
  // Batch 2 shows which outputs follow the batch; a graph that only runs batch 1 (a
  // hard-coded reshape, say) is run one image at a time.
  int64_t batch = fixed_batch == 1 ? 1 : 2;
  GraphProbe first = probe_graph(*bytes, in.name, input_shape(batch));
  if (!first.load_error.empty()) return make_error(load_failure(first.load_error, m));
  if (!first.run_error.empty() && batch == 2) {
    batch = 1;
    first = probe_graph(*bytes, in.name, input_shape(batch));
  }
  if (!first.run_error.empty())
    return make_error("the model fails on a " + std::to_string(size) + "x" + std::to_string(size) +
                      " image: " + first.run_error);
  if (batch == 1) {
    spec.max_batch = 1;
    report.notes.push_back("the graph runs one image at a time (fixed batch of 1): indexing will be slower");
  }

  // --- Candidate layers: float tensors computed from the input (constants and shape
  // arithmetic are not representations of the image).
  std::set<std::string> from_input{in.name}, graph_outputs;
  for (const auto& out : m.outputs) graph_outputs.insert(out.name);
  std::vector<std::pair<std::string, std::string>> tensors;  // (name, op_type), in graph order
  // The layout each tensor most likely has, for maps whose shape cannot tell (C == H == W):
  // ONNX's convolution, pooling and normalisation ops are NCHW by definition, a Transpose
  // (in a vision graph: between the input's NHWC and the convolutions' NCHW) switches,
  // anything else keeps its first input's.
  std::map<std::string, Layout> layout_of{{in.name, layout}};
  static const std::set<std::string> kNchwOps = {"Conv",
                                                 "ConvTranspose",
                                                 "ConvInteger",
                                                 "QLinearConv",
                                                 "MaxPool",
                                                 "AveragePool",
                                                 "LpPool",
                                                 "GlobalAveragePool",
                                                 "GlobalMaxPool",
                                                 "BatchNormalization",
                                                 "InstanceNormalization",
                                                 "LRN"};
  for (const auto& n : m.nodes) {
    const bool reached =
        std::any_of(n.inputs.begin(), n.inputs.end(), [&](const std::string& i) { return from_input.count(i) > 0; });
    if (!reached) continue;
    std::optional<Layout> guess;
    if (kNchwOps.count(n.op_type)) {
      guess = Layout::NCHW;
    } else {
      for (const auto& i : n.inputs)
        if (auto it = layout_of.find(i); it != layout_of.end()) {
          guess = it->second;
          break;
        }
      if (guess && n.op_type == "Transpose") guess = *guess == Layout::NCHW ? Layout::NHWC : Layout::NCHW;
    }
    if (guess)
      for (const auto& out : n.outputs) layout_of[out] = *guess;
    for (const auto& out : n.outputs) {
      if (out.empty()) continue;
      from_input.insert(out);
      tensors.push_back({out, n.op_type});
    }
  }
  std::vector<std::string> extra;
  for (const auto& [name, op] : tensors)
    if (!graph_outputs.count(name)) extra.push_back(name);
  auto probing = onnx::with_extra_outputs(*bytes, extra);
  if (!probing) return make_error(probing.error());
  const std::span<const uint8_t> probing_bytes(reinterpret_cast<const uint8_t*>(probing->data()), probing->size());
  GraphProbe all = probe_graph(probing_bytes, in.name, input_shape(batch));
  if (!all.load_error.empty() || !all.run_error.empty())
    return make_error("cannot expose the intermediate tensors: " + all.load_error + all.run_error);
  std::map<std::string, const ProbedOutput*> probed;
  for (const auto& p : all.outputs) probed[p.name] = &p;
  for (const auto& [name, op] : tensors) {
    auto it = probed.find(name);
    if (it == probed.end() || !it->second->is_float) continue;
    const auto& s = it->second->shape;
    if ((s.size() != 2 && s.size() != 4) || s[0] != batch) continue;
    if (std::any_of(s.begin() + 1, s.end(), [](int64_t d) { return d <= 0 || d > (int64_t(1) << 30); })) continue;
    CandidateLayer c;
    c.op_type = op;
    c.rank = int(s.size());
    c.layer.name = name;
    if (s.size() == 2) {
      c.layer.channels = int(s[1]);
      c.layer.height = c.layer.width = 1;
    } else {
      auto guessed = layout_of.find(name);
      c.layer.layout = map_layout(s, guessed == layout_of.end() ? layout : guessed->second);
      const bool nchw = c.layer.layout == Layout::NCHW;
      c.layer.channels = int(nchw ? s[1] : s[3]);
      c.layer.height = int(nchw ? s[2] : s[1]);
      c.layer.width = int(nchw ? s[3] : s[2]);
    }
    if (int64_t(c.layer.channels) * c.layer.height * c.layer.width < 2) continue;  // a scalar is no vector
    report.candidates.push_back(std::move(c));
  }
  auto& cands = report.candidates;
  if (cands.empty())
    return make_error(
        "no usable layer: no float tensor of shape [N, C, H, W], [N, H, W, C] or [N, C] is computed "
        "from the input");

  // --- Which candidates become layers.
  auto find_cand = [&](const std::string& n) {
    return std::find_if(cands.begin(), cands.end(), [&](const CandidateLayer& c) { return c.layer.name == n; });
  };
  if (o.layers.size() == 1 && o.layers[0] == "all") {
    for (auto& c : cands) c.exposed = true;
  } else if (!o.layers.empty()) {
    for (const auto& n : o.layers) {
      auto it = find_cand(n);
      if (it == cands.end()) {
        std::string some;
        for (size_t i = 0; i < cands.size() && i < 12; ++i) some += (i ? ", " : "") + cands[i].layer.name;
        return make_error("--layers: '" + n + "' is not a candidate layer (candidates: " + some +
                          (cands.size() > 12 ? ", ... (--dry-run lists all)" : "") + ")");
      }
      it->exposed = true;
    }
  } else {
    auto_select(cands, m);
  }
  if (!o.default_layer.empty()) {
    auto it = find_cand(o.default_layer);
    if (it == cands.end()) return make_error("--default-layer '" + o.default_layer + "' is not a candidate layer");
    it->exposed = true;
  }

  // Labels: the logits are the [N, K] output with K = the number of class names.
  if (!o.labels.empty()) {
    Status st;
    const int n_labels = count_label_lines(o.labels, st);
    if (!st) return make_error(st.error());
    spec.labels_path = final_dir / "labels.txt";
    for (auto it = cands.rbegin(); it != cands.rend(); ++it)
      if (it->rank == 2 && it->layer.channels == n_labels) {
        spec.logits_output = it->layer.name;
        it->exposed = true;
        break;
      }
    if (spec.logits_output.empty())
      report.notes.push_back("no [N, " + std::to_string(n_labels) + "] output matches the " + std::to_string(n_labels) +
                             " labels: `classify` will not work with this model");
  }
  for (const auto& c : cands)
    if (c.exposed) spec.layers.push_back(c.layer);
  spec.default_layer = o.default_layer;
  if (spec.default_layer.empty()) {
    // The last feature map (global pooling of it is the usual embedding); else the last
    // vector that is not the logits.
    for (const auto& c : cands)
      if (c.exposed && c.rank == 4 && c.layer.height * c.layer.width > 1) spec.default_layer = c.layer.name;
    if (spec.default_layer.empty())
      for (const auto& c : cands)
        if (c.exposed && c.layer.name != spec.logits_output) spec.default_layer = c.layer.name;
    if (spec.default_layer.empty()) spec.default_layer = spec.layers.back().name;
  }
  if (o.dry_run) return report;

  // --- Install: build the directory beside the final one, check it works, rename.
  std::map<std::string, int> rank_of;
  for (const auto& c : cands) rank_of[c.layer.name] = c.rank;
  std::vector<std::string> to_expose;
  std::vector<int> ranks;
  for (const auto& l : spec.layers)
    if (!graph_outputs.count(l.name)) {
      to_expose.push_back(l.name);
      ranks.push_back(rank_of.count(l.name) ? rank_of[l.name] : -1);
    }
  auto rewritten = onnx::with_extra_outputs(*bytes, to_expose, ranks);
  if (!rewritten) return make_error(rewritten.error());
  std::error_code ec;
  fs::create_directories(models_dir(), ec);
  const fs::path tmp = models_dir() / (".adding-" + o.name + "-" + std::to_string(::getpid()));
  fs::remove_all(tmp, ec);
  if (!fs::create_directories(tmp, ec)) return make_error("cannot create " + tmp.string() + ": " + ec.message());
  auto fail = [&](const std::string& msg) {
    fs::remove_all(tmp, ec);
    return make_error(msg);
  };
  const std::span<const uint8_t> out_bytes(reinterpret_cast<const uint8_t*>(rewritten->data()), rewritten->size());
  if (auto st = write_file_atomic(tmp / "model.onnx", out_bytes); !st) return fail(st.error());
  if (!o.labels.empty() && !fs::copy_file(o.labels, tmp / "labels.txt", ec))
    return fail("cannot copy " + o.labels.string() + ": " + ec.message());
  nlohmann::json source = {{"source",
                            {{"file", fs::absolute(o.onnx_file).lexically_normal().string()},
                             {"added_by", "imgsearch models add"},
                             {"candidate_layers", cands.size()}}}};
  const std::string json = model_json(spec, source.dump());
  if (auto st = write_file_atomic(tmp / "model.json", {reinterpret_cast<const uint8_t*>(json.data()), json.size()});
      !st)
    return fail(st.error());

  // The installed files, read back the way `index` will read them, must run.
  auto installed = load_model_spec(tmp);
  if (!installed) return fail("the written model does not load: " + installed.error());
  auto engine = make_engine(*installed, EngineOptions{});
  if (!engine) return fail(engine.error());
  std::vector<std::string> names;
  for (const auto& l : installed->layers) names.push_back(l.name);
  const int64_t n = std::min<int64_t>(2, batch == 1 ? 2 : batch);
  std::vector<float> input(size_t(n) * 3 * size * size, 0.25f);
  auto run = (*engine)->run(input.data(), n, names);
  if (!run) return fail("the installed model does not run: " + run.error());
  for (size_t i = 0; i < names.size(); ++i) {
    const auto& l = installed->layers[i];
    if ((*run)[i].per_item() != int64_t(l.channels) * l.height * l.width)
      return fail("layer '" + l.name + "' changes size between runs; it cannot be a representation");
  }
  engine->reset();

  if (fs::exists(final_dir)) {
    // --force (checked above): move the old one aside first so a failure keeps it.
    const fs::path old = models_dir() / (".replaced-" + o.name + "-" + std::to_string(::getpid()));
    fs::rename(final_dir, old, ec);
    if (ec) return fail("cannot replace " + final_dir.string() + ": " + ec.message());
    fs::rename(tmp, final_dir, ec);
    if (ec) {
      fs::rename(old, final_dir, ec);
      return fail("cannot install into " + final_dir.string());
    }
    fs::remove_all(old, ec);
  } else {
    fs::rename(tmp, final_dir, ec);
    if (ec) return fail("cannot install into " + final_dir.string() + ": " + ec.message());
  }
  return report;
}

}  // namespace imgsearch::embed
