# bench/ingest: ingest throughput, decode vs inference, memory, no-change re-runs (see ingest.cpp).
add_executable(bench_ingest ${CMAKE_CURRENT_LIST_DIR}/ingest.cpp)
target_link_libraries(bench_ingest PRIVATE imgsearch_ingest PkgConfig::VIPS)
target_compile_definitions(bench_ingest PRIVATE IMGSEARCH_SHARED_DIR="${PROJECT_SOURCE_DIR}/../shared")
set_target_properties(bench_ingest PROPERTIES OUTPUT_NAME ingest BUILD_RPATH "${ONNXRUNTIME_ROOT}/lib"
                      RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/bench)
