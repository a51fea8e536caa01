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

# th_extension(folder): adds an extension folder (src/extensions.cmake has one line per
# extension). The folder's CMakeLists.txt defines a library named th_<folder with / replaced by
# _> (e.g. th_protocols_report), and one of its sources defines
# `void register_extension(runtime::Extensions&)` in the namespace tianhe::<folder with / as ::>.
# th_write_extensions() turns the list into explicit calls to those functions (no static
# initialisers a linker could drop). TH_EXCLUDE_EXTENSIONS (a ;-list of folders) compiles the
# named extensions out, as commenting their line out would.
set(TH_EXCLUDE_EXTENSIONS "" CACHE STRING "extension folders to compile out, e.g. sinks/jsonl")
set(TH_EXTENSION_FOLDERS "" CACHE INTERNAL "registered extension folders")
macro(th_extension folder)
  if(NOT "${folder}" IN_LIST TH_EXCLUDE_EXTENSIONS)
    add_subdirectory(src/${folder})
    string(REPLACE "/" "_" _th_ext_target "${folder}")
    set(TH_EXTENSIONS ${TH_EXTENSIONS} th_${_th_ext_target} CACHE INTERNAL "registered extensions")
    set(TH_EXTENSION_FOLDERS ${TH_EXTENSION_FOLDERS} ${folder} CACHE INTERNAL "registered extension folders")
  else()
    message(STATUS "extension ${folder}: compiled out (TH_EXCLUDE_EXTENSIONS)")
  endif()
endmacro()

# Writes gen/extensions_registered.cpp (runtime::builtin_extensions) and the th_extensions
# library that links every registered extension.
function(th_write_extensions)
  set(decls "")
  set(calls "")
  foreach(folder ${TH_EXTENSION_FOLDERS})
    string(REPLACE "/" "::" ns "${folder}")
    string(APPEND decls "namespace tianhe::${ns} {\nvoid register_extension(runtime::Extensions& extensions);\n}\n")
    string(APPEND calls "    tianhe::${ns}::register_extension(e);\n")
  endforeach()
  set(out ${CMAKE_BINARY_DIR}/gen/extensions_registered.cpp)
  string(CONCAT text
    "// Generated by CMake from src/extensions.cmake (th_write_extensions): do not edit.\n"
    "#include \"runtime/extensions.h\"\n\n" "${decls}" "\n"
    "namespace tianhe::runtime {\n\n"
    "const Extensions& builtin_extensions() {\n"
    "  static const Extensions extensions = [] {\n"
    "    Extensions e;\n" "${calls}"
    "    return e;\n"
    "  }();\n"
    "  return extensions;\n"
    "}\n\n"
    "}  // namespace tianhe::runtime\n")
  file(CONFIGURE OUTPUT ${out} CONTENT "${text}" @ONLY)
  add_library(th_extensions STATIC ${out})
  target_include_directories(th_extensions PUBLIC ${CMAKE_SOURCE_DIR}/src)
  target_link_libraries(th_extensions PUBLIC th_runtime ${TH_EXTENSIONS})
endfunction()
