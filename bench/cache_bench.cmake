# The SSD cache benchmark (see cache_bench.cc), kept out of bench/CMakeLists.txt but
# for the one line that includes this file.
add_executable(bench-cache ${CMAKE_CURRENT_LIST_DIR}/cache_bench.cc)
target_link_libraries(bench-cache PRIVATE criu_cache)
