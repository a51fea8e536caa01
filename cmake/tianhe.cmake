# Build helpers shared by every module.

set(TH_WARNINGS -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wno-missing-field-initializers)
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  # GCC 12 reports false -Wrestrict positives inside std::string at -O3 (GCC bug 105329).
  list(APPEND TH_WARNINGS -Wno-restrict)
endif()
if(TH_WERROR)
  list(APPEND TH_WARNINGS -Werror)
endif()

if(TH_SANITIZE)
  add_compile_options(-fsanitize=${TH_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${TH_SANITIZE})
endif()

if(TH_FUZZ AND NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "TH_FUZZ=ON needs clang (libFuzzer): use the 'fuzz' preset")
endif()
if(TH_FUZZ)
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()

set(TH_EXTENSIONS "" CACHE INTERNAL "registered extensions")

# th_library(NAME SOURCES ... DEPS ...): a static library of one module.
function(th_library name)
  cmake_parse_arguments(A "" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${A_SOURCES})
  target_compile_options(${name} PRIVATE ${TH_WARNINGS})
  target_include_directories(${name} PUBLIC ${CMAKE_SOURCE_DIR}/src ${CMAKE_BINARY_DIR}/gen)
  target_link_libraries(${name} PUBLIC ${A_DEPS})
endfunction()

# th_test(NAME SOURCES ... DEPS ... [LABELS ...]): a GoogleTest executable registered with CTest.
function(th_test name)
  cmake_parse_arguments(A "" "" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${A_SOURCES})
  target_compile_options(${name} PRIVATE ${TH_WARNINGS})
  target_link_libraries(${name} PRIVATE ${A_DEPS} GTest::gtest GTest::gtest_main Threads::Threads)
  add_test(NAME ${name} COMMAND ${name})
  set(labels unit ${A_LABELS})
  set_tests_properties(${name} PROPERTIES LABELS "${labels}" TIMEOUT 600)
endfunction()

# th_fuzz(NAME SOURCES ... DEPS ... CORPUS dir): a libFuzzer target in the fuzz preset; otherwise
# a replay executable (fuzz/replay_main.cpp) that runs every corpus file, registered with CTest.
function(th_fuzz name)
  cmake_parse_arguments(A "" "CORPUS" "SOURCES;DEPS" ${ARGN})
  if(TH_FUZZ)
    add_executable(${name} ${A_SOURCES})
    target_link_options(${name} PRIVATE -fsanitize=fuzzer)
  else()
    add_executable(${name} ${A_SOURCES} ${CMAKE_SOURCE_DIR}/fuzz/replay_main.cpp)
    add_test(NAME ${name}_corpus COMMAND ${name} ${A_CORPUS})
    set_tests_properties(${name}_corpus PROPERTIES LABELS "fuzz" TIMEOUT 600)
  endif()
  target_compile_options(${name} PRIVATE ${TH_WARNINGS})
  target_link_libraries(${name} PRIVATE ${A_DEPS})
endfunction()

# th_bench(NAME SOURCES ... DEPS ...): a Google Benchmark micro-benchmark; CTest runs it briefly
# so it does not rot (label "bench-smoke").
function(th_bench name)
  cmake_parse_arguments(A "" "" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${A_SOURCES})
  target_compile_options(${name} PRIVATE ${TH_WARNINGS})
  target_link_libraries(${name} PRIVATE ${A_DEPS} benchmark::benchmark benchmark::benchmark_main)
  add_test(NAME ${name}_smoke COMMAND ${name} --benchmark_min_time=0.01)
  set_tests_properties(${name}_smoke PROPERTIES LABELS "bench-smoke" TIMEOUT 600)
endfunction()

# th_extension(folder): adds an extension folder. The folder's CMakeLists.txt defines a library
# named th_<folder with / replaced by _> (e.g. th_protocols_report).
macro(th_extension folder)
  add_subdirectory(src/${folder})
  string(REPLACE "/" "_" _th_ext_target "${folder}")
  set(TH_EXTENSIONS ${TH_EXTENSIONS} th_${_th_ext_target} CACHE INTERNAL "registered extensions")
endmacro()
