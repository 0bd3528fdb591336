# bench/infer: the inference engine alone, and single-query latency, as JSON lines (see infer.cpp;
# bench/speed runs it beside the Python pipelines).
add_executable(bench_infer ${CMAKE_CURRENT_LIST_DIR}/infer.cpp)
target_link_libraries(bench_infer PRIVATE imgsearch_search imgsearch_embed nlohmann_json::nlohmann_json)
set_target_properties(bench_infer PROPERTIES OUTPUT_NAME infer BUILD_RPATH "${ONNXRUNTIME_ROOT}/lib"
                      RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/bench)
