# bench/serve: web server search latency through HTTP (see bench/serve.cpp).
add_executable(serve_bench serve.cpp)
target_link_libraries(serve_bench PRIVATE imgsearch_server imgsearch_ingest PkgConfig::HTTPLIB nlohmann_json::nlohmann_json)
target_compile_definitions(serve_bench PRIVATE IMGSEARCH_SHARED_DIR="${PROJECT_SOURCE_DIR}/../shared"
                                               IMGSEARCH_BINARY_DIR="${PROJECT_BINARY_DIR}")
set_target_properties(serve_bench PROPERTIES OUTPUT_NAME serve RUNTIME_OUTPUT_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR}
                      BUILD_RPATH "${ONNXRUNTIME_ROOT}/lib")
