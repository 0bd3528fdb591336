# bench/index: index kinds vs exact search -- recall, bytes/vector, latency, build time (see index.cpp).
add_executable(bench_index ${CMAKE_CURRENT_LIST_DIR}/index.cpp)
target_link_libraries(bench_index PRIVATE imgsearch_ingest imgsearch_index faiss OpenMP::OpenMP_CXX)
target_compile_definitions(bench_index PRIVATE IMGSEARCH_SHARED_DIR="${PROJECT_SOURCE_DIR}/../shared")
set_target_properties(bench_index PROPERTIES OUTPUT_NAME index BUILD_RPATH "${ONNXRUNTIME_ROOT}/lib"
                      RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/bench)
