# bench/map: imgsearch's UMAP against umap-learn (bench/map.py), caltech20 + synthetic 10k/100k.
add_executable(map_bench map.cpp)
target_link_libraries(map_bench PRIVATE imgsearch_map CLI11::CLI11 nlohmann_json::nlohmann_json)
target_compile_definitions(map_bench PRIVATE
  IMGSEARCH_BINARY="$<TARGET_FILE:imgsearch>"
  IMGSEARCH_SHARED_DIR="${PROJECT_SOURCE_DIR}/../shared"
  IMGSEARCH_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
set_target_properties(map_bench PROPERTIES OUTPUT_NAME map RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/bench
                      BUILD_RPATH "${ONNXRUNTIME_ROOT}/lib")
add_dependencies(map_bench imgsearch)
