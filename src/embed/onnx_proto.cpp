#include "embed/onnx_proto.h"

#include <cstring>
#include <stdexcept>

namespace imgsearch::embed::onnx {
namespace {

// Field numbers from onnx.proto (stable since IR version 3).
namespace model_f {
constexpr int kIrVersion = 1, kGraph = 7, kOpsetImport = 8;
}
namespace opset_f {
constexpr int kDomain = 1, kVersion = 2;
}
namespace graph_f {
constexpr int kNode = 1, kInitializer = 5, kInput = 11, kOutput = 12, kSparseInitializer = 15;
}
namespace node_f {
constexpr int kInput = 1, kOutput = 2, kName = 3, kOpType = 4, kDomain = 7;
}
namespace tensor_f {
constexpr int kName = 8, kDataLocation = 14;
constexpr uint64_t kExternal = 1;
}  // namespace tensor_f
namespace sparse_f {
constexpr int kValues = 1;
}
namespace value_info_f {
constexpr int kName = 1, kType = 2;
}
namespace type_f {
constexpr int kTensorType = 1;
}
namespace tensor_type_f {
constexpr int kElemType = 1, kShape = 2;
}
namespace shape_f {
constexpr int kDim = 1;
}
namespace dim_f {
constexpr int kValue = 1, kParam = 2;
}

enum Wire { kVarint = 0, kFixed64 = 1, kLen = 2, kFixed32 = 5 };

// Malformed input; caught at the API boundary and turned into an error message.
struct Malformed : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Field {
  int number = 0;
  int wire = 0;
  uint64_t value = 0;                // varint and fixed fields
  std::span<const uint8_t> payload;  // length-delimited fields
  size_t begin = 0, end = 0;         // the whole field (tag included) within the message
};

class Reader {
 public:
  explicit Reader(std::span<const uint8_t> bytes) : b_(bytes) {}

  bool next(Field& f) {
    if (pos_ >= b_.size()) return false;
    f = Field{};
    f.begin = pos_;
    const uint64_t tag = read_varint();
    f.number = int(tag >> 3);
    f.wire = int(tag & 7);
    if (f.number <= 0) throw Malformed("bad field number");
    switch (f.wire) {
      case kVarint:
        f.value = read_varint();
        break;
      case kFixed64:
        f.value = read_fixed(8);
        break;
      case kFixed32:
        f.value = read_fixed(4);
        break;
      case kLen: {
        const uint64_t n = read_varint();
        if (n > b_.size() - pos_) throw Malformed("field runs past the end (truncated file?)");
        f.payload = b_.subspan(pos_, size_t(n));
        pos_ += size_t(n);
        break;
      }
      default:
        throw Malformed("unsupported wire type " + std::to_string(f.wire));
    }
    f.end = pos_;
    return true;
  }

 private:
  uint64_t read_varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= b_.size()) throw Malformed("truncated varint");
      const uint8_t byte = b_[pos_++];
      v |= uint64_t(byte & 0x7f) << shift;
      if (!(byte & 0x80)) return v;
    }
    throw Malformed("varint too long");
  }
  uint64_t read_fixed(size_t n) {
    if (b_.size() - pos_ < n) throw Malformed("truncated fixed field");
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v |= uint64_t(b_[pos_ + i]) << (8 * i);
    pos_ += n;
    return v;
  }

  std::span<const uint8_t> b_;
  size_t pos_ = 0;
};

std::string str(const Field& f) {
  if (f.wire != kLen) throw Malformed("expected a string field");
  return std::string(reinterpret_cast<const char*>(f.payload.data()), f.payload.size());
}

ValueInfo parse_value_info(std::span<const uint8_t> b) {
  ValueInfo vi;
  Reader r(b);
  for (Field f; r.next(f);) {
    if (f.number == value_info_f::kName) vi.name = str(f);
    if (f.number != value_info_f::kType || f.wire != kLen) continue;
    Reader tr(f.payload);
    for (Field t; tr.next(t);) {
      if (t.number != type_f::kTensorType || t.wire != kLen) continue;  // sequences, maps: not tensors
      Reader tt(t.payload);
      for (Field e; tt.next(e);) {
        if (e.number == tensor_type_f::kElemType && e.wire == kVarint) vi.elem_type = int(e.value);
        if (e.number != tensor_type_f::kShape || e.wire != kLen) continue;
        vi.has_shape = true;
        Reader sr(e.payload);
        for (Field d; sr.next(d);) {
          if (d.number != shape_f::kDim || d.wire != kLen) continue;
          Dim dim;
          Reader dr(d.payload);
          for (Field x; dr.next(x);) {
            if (x.number == dim_f::kValue && x.wire == kVarint) dim.value = int64_t(x.value);
            if (x.number == dim_f::kParam) dim.param = str(x);
          }
          vi.dims.push_back(dim);
        }
      }
    }
  }
  return vi;
}

Node parse_node(std::span<const uint8_t> b) {
  Node n;
  Reader r(b);
  for (Field f; r.next(f);) {
    switch (f.number) {
      case node_f::kInput:
        n.inputs.push_back(str(f));
        break;
      case node_f::kOutput:
        n.outputs.push_back(str(f));
        break;
      case node_f::kName:
        n.name = str(f);
        break;
      case node_f::kOpType:
        n.op_type = str(f);
        break;
      case node_f::kDomain:
        n.domain = str(f);
        break;
      default:
        break;
    }
  }
  return n;
}

// A TensorProto's name; sets `external` when its data lives in another file.
std::string parse_tensor_name(std::span<const uint8_t> b, bool& external) {
  std::string name;
  Reader r(b);
  for (Field f; r.next(f);) {
    if (f.number == tensor_f::kName) name = str(f);
    if (f.number == tensor_f::kDataLocation && f.wire == kVarint && f.value == tensor_f::kExternal) external = true;
  }
  return name;
}

// The encoding of one ValueInfoProto: NAME, a float tensor; rank >= 0 writes a shape of
// that many unknown dimensions (the ONNX checker requires a shape on graph outputs),
// rank < 0 leaves the shape out (enough for ONNX Runtime).
std::string float_output(const std::string& name, int rank) {
  Writer tensor_type;
  tensor_type.varint(tensor_type_f::kElemType, kFloat);
  if (rank >= 0) {
    Writer shape;
    for (int i = 0; i < rank; ++i) shape.message(shape_f::kDim, Writer{});
    tensor_type.message(tensor_type_f::kShape, shape);
  }
  Writer type;
  type.message(type_f::kTensorType, tensor_type);
  Writer vi;
  vi.bytes(value_info_f::kName, name).message(value_info_f::kType, type);
  return vi.data();
}

}  // namespace

Result<Model> parse_model(std::span<const uint8_t> bytes) {
  try {
    Model m;
    bool have_graph = false;
    std::vector<ValueInfo> all_inputs;
    Reader r(bytes);
    for (Field f; r.next(f);) {
      if (f.number == model_f::kIrVersion && f.wire == kVarint) m.ir_version = int64_t(f.value);
      if (f.number == model_f::kOpsetImport && f.wire == kLen) {
        std::pair<std::string, int64_t> op;
        Reader orr(f.payload);
        for (Field o; orr.next(o);) {
          if (o.number == opset_f::kDomain) op.first = str(o);
          if (o.number == opset_f::kVersion && o.wire == kVarint) op.second = int64_t(o.value);
        }
        m.opsets.push_back(op);
      }
      if (f.number != model_f::kGraph || f.wire != kLen) continue;
      have_graph = true;
      Reader gr(f.payload);
      for (Field g; gr.next(g);) {
        if (g.wire != kLen) continue;
        switch (g.number) {
          case graph_f::kNode:
            m.nodes.push_back(parse_node(g.payload));
            break;
          case graph_f::kInitializer:
            m.initializers.insert(parse_tensor_name(g.payload, m.external_data));
            break;
          case graph_f::kSparseInitializer: {
            Reader sr(g.payload);
            for (Field s; sr.next(s);)
              if (s.number == sparse_f::kValues && s.wire == kLen)
                m.initializers.insert(parse_tensor_name(s.payload, m.external_data));
            break;
          }
          case graph_f::kInput:
            all_inputs.push_back(parse_value_info(g.payload));
            break;
          case graph_f::kOutput:
            m.outputs.push_back(parse_value_info(g.payload));
            break;
          default:
            break;
        }
      }
    }
    // A model file is a ModelProto with a graph and an IR version; anything else (another
    // protobuf, a TF or PyTorch file, random bytes that happen to parse) is refused here.
    if (!have_graph || m.ir_version <= 0) return make_error("not an ONNX model (no graph or IR version)");
    // Before IR version 4 every initializer was also listed as a graph input.
    for (auto& in : all_inputs)
      if (!m.initializers.count(in.name)) m.inputs.push_back(std::move(in));
    return m;
  } catch (const Malformed& e) {
    return make_error(std::string("not an ONNX model (") + e.what() + ")");
  }
}

namespace {

// The model with its (first) graph replaced by new_graph(the graph's bytes); every other
// field copied byte for byte.
template <typename F>
Result<std::string> rewrite_graph(std::span<const uint8_t> model, F&& new_graph) {
  try {
    std::string out;
    out.reserve(model.size() + 256);
    bool done = false;
    Reader r(model);
    for (Field f; r.next(f);) {
      if (!done && f.number == model_f::kGraph && f.wire == kLen) {
        Writer w;
        w.bytes(model_f::kGraph, new_graph(f.payload));
        out += w.data();
        done = true;
      } else {
        out.append(reinterpret_cast<const char*>(model.data() + f.begin), f.end - f.begin);
      }
    }
    if (!done) return make_error("not an ONNX model (no graph)");
    return out;
  } catch (const Malformed& e) {
    return make_error(std::string("not an ONNX model (") + e.what() + ")");
  }
}

}  // namespace

Result<std::string> with_extra_outputs(std::span<const uint8_t> model, const std::vector<std::string>& names,
                                       const std::vector<int>& ranks) {
  std::string extra;
  for (size_t i = 0; i < names.size(); ++i) {
    Writer w;
    w.bytes(graph_f::kOutput, float_output(names[i], i < ranks.size() ? ranks[i] : -1));
    extra += w.data();
  }
  // Protobuf allows a repeated field's elements anywhere in a message, so appending the
  // new outputs at the end of the graph's bytes is a valid encoding.
  return rewrite_graph(model, [&](std::span<const uint8_t> graph) {
    return std::string(reinterpret_cast<const char*>(graph.data()), graph.size()) + extra;
  });
}

Result<std::string> with_only_outputs(std::span<const uint8_t> model, const std::set<std::string>& keep) {
  return rewrite_graph(model, [&](std::span<const uint8_t> graph) {
    std::string kept;
    kept.reserve(graph.size());
    Reader g(graph);
    for (Field f; g.next(f);)
      if (!(f.number == graph_f::kOutput && f.wire == kLen && !keep.count(parse_value_info(f.payload).name)))
        kept.append(reinterpret_cast<const char*>(graph.data() + f.begin), f.end - f.begin);
    return kept;
  });
}

void Writer::raw_varint(uint64_t v) {
  while (v >= 0x80) {
    buf_.push_back(char(uint8_t(v) | 0x80));
    v >>= 7;
  }
  buf_.push_back(char(v));
}

Writer& Writer::varint(int field, uint64_t v) {
  raw_varint(uint64_t(field) << 3 | kVarint);
  raw_varint(v);
  return *this;
}

Writer& Writer::fixed32_float(int field, float v) {
  raw_varint(uint64_t(field) << 3 | kFixed32);
  uint32_t u;
  std::memcpy(&u, &v, 4);
  for (int i = 0; i < 4; ++i) buf_.push_back(char(uint8_t(u >> (8 * i))));
  return *this;
}

Writer& Writer::bytes(int field, std::string_view data) {
  raw_varint(uint64_t(field) << 3 | kLen);
  raw_varint(data.size());
  buf_.append(data);
  return *this;
}

}  // namespace imgsearch::embed::onnx
