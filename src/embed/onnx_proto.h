// A minimal reader and writer of the ONNX protobuf format (onnx.proto), enough to
// inspect a model (inputs, outputs, operators, opsets) and to expose intermediate
// tensors as graph outputs. Hand-written on the protobuf wire format so the product needs
// neither protoc nor the onnx library; fields this code does not know are skipped when
// reading and copied byte for byte when rewriting.
//
// Data contract
//   parse_model() borrows the bytes for the call and returns owned strings.
//   with_extra_outputs() returns a new serialised model: the input with `names` appended
//   to graph.output (each a float tensor of unknown shape, which ONNX Runtime fills in by
//   shape inference). Every other byte of the model is kept as it was.
#pragma once

#include <cstdint>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"

namespace imgsearch::embed::onnx {

// TensorProto.DataType values used here.
inline constexpr int kFloat = 1;

struct Dim {
  int64_t value = -1;  // -1: not a fixed size (symbolic or unknown)
  std::string param;   // the symbolic name, if any
};

struct ValueInfo {
  std::string name;
  int elem_type = 0;       // TensorProto.DataType; 0 when not a tensor or not given
  bool has_shape = false;  // false: rank unknown
  std::vector<Dim> dims;
};

struct Node {
  std::string name, op_type, domain;  // domain "" is the default ONNX domain (ai.onnx)
  std::vector<std::string> inputs, outputs;
};

struct Model {
  int64_t ir_version = 0;
  std::vector<std::pair<std::string, int64_t>> opsets;  // (domain, version)
  std::vector<Node> nodes;                              // top-level graph, topological order
  std::vector<ValueInfo> inputs;                        // graph inputs that are not initializers
  std::vector<ValueInfo> outputs;                       // graph outputs
  std::set<std::string> initializers;
  bool external_data = false;  // some initializer keeps its data in another file
};

Result<Model> parse_model(std::span<const uint8_t> bytes);

// ranks[i] (when given): the rank of names[i], written as a shape of unknown dimensions.
Result<std::string> with_extra_outputs(std::span<const uint8_t> model, const std::vector<std::string>& names,
                                       const std::vector<int>& ranks = {});

// The model with graph.output reduced to the outputs named in `keep` (ONNX Runtime
// computes every graph output on every run, asked for or not). Every other byte is kept.
Result<std::string> with_only_outputs(std::span<const uint8_t> model, const std::set<std::string>& keep);

// Protobuf wire-format encoder; also used by the tests to build small models.
class Writer {
 public:
  Writer& varint(int field, uint64_t v);
  Writer& int64(int field, int64_t v) { return varint(field, uint64_t(v)); }
  Writer& fixed32_float(int field, float v);
  Writer& bytes(int field, std::string_view data);
  Writer& message(int field, const Writer& m) { return bytes(field, m.data()); }
  const std::string& data() const { return buf_; }

 private:
  void raw_varint(uint64_t v);
  std::string buf_;
};

}  // namespace imgsearch::embed::onnx
