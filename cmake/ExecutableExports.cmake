# What mmt's executables export, and which C++ runtime they link (included by CMakeLists.txt).
#
# A PyTorch wheel's libtorch crashed inside functions of *our* executables: std::call_once's
# trampoline (oneDNN, c10d) and the stream code of c10's warnings (docs/gpu.md). Two causes:
# 1. A GCC whose libstdc++ is a static archive only (the GPU machines' /opt/gcc) links its own
#    copy of the C++ runtime into each executable, beside the libstdc++.so.6 that libtorch
#    loads, and the linker exports that copy's functions, which libtorch then binds to: two
#    runtimes' code over one runtime's data. There, link the shared libstdc++.so.6 first
#    (MMT_SHARED_LIBSTDCXX), so only the shared one is used.
# 2. GNU ld exports every weak instantiation an executable holds that a linked shared library
#    also uses (hashtable and regex internals, ...): cmake/executable_exports.map hides them
#    (MMT_HIDE_EXPORTS; tests/check_executable_exports.sh checks).
option(MMT_HIDE_EXPORTS "Link the executables with cmake/executable_exports.map (they export nothing of their own)" ON)

if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND NOT DEFINED MMT_SHARED_LIBSTDCXX)
  # Does this compiler link the C++ runtime as a shared library? Link a program and look.
  set(probe_dir ${CMAKE_BINARY_DIR}/CMakeFiles/mmt_libstdcxx_probe)
  file(WRITE ${probe_dir}/probe.cpp "#include <string>\nint main(int c, char** v) { return static_cast<int>(std::string(v[0]).size()) + c; }\n")
  try_compile(probe_linked ${probe_dir}/build SOURCES ${probe_dir}/probe.cpp COPY_FILE ${probe_dir}/probe)
  set(static_runtime FALSE)
  if(probe_linked AND CMAKE_READELF)
    execute_process(COMMAND ${CMAKE_READELF} -d ${probe_dir}/probe OUTPUT_VARIABLE probe_dynamic ERROR_QUIET)
    if(NOT probe_dynamic MATCHES "libstdc\\+\\+\\.so")
      set(static_runtime TRUE)
    endif()
  endif()
  set(doc "Shared C++ runtime linked before the compiler's own (found when the compiler's libstdc++ is static only)")
  if(static_runtime)
    find_library(MMT_SHARED_LIBSTDCXX NAMES libstdc++.so.6 DOC "${doc}")
    if(NOT MMT_SHARED_LIBSTDCXX)
      message(WARNING "mmt: ${CMAKE_CXX_COMPILER} links libstdc++ statically and no libstdc++.so.6 was found: "
                      "the executables carry their own C++ runtime, which a PyTorch wheel's libtorch may crash in")
    endif()
  else()
    set(MMT_SHARED_LIBSTDCXX "" CACHE STRING "${doc}")
  endif()
endif()
if(MMT_SHARED_LIBSTDCXX)
  message(STATUS "mmt: ${CMAKE_CXX_COMPILER} links libstdc++ statically; linking ${MMT_SHARED_LIBSTDCXX} instead")
  string(PREPEND CMAKE_CXX_STANDARD_LIBRARIES "${MMT_SHARED_LIBSTDCXX} ")
endif()

set(MMT_EXPORTS_HIDDEN FALSE)
if(MMT_HIDE_EXPORTS)
  set(MMT_EXPORTS_MAP ${PROJECT_SOURCE_DIR}/cmake/executable_exports.map)
  include(CheckLinkerFlag)
  check_linker_flag(CXX "-Wl,--version-script=${MMT_EXPORTS_MAP}" MMT_LINKER_HAS_VERSION_SCRIPT)
  if(MMT_LINKER_HAS_VERSION_SCRIPT)
    string(APPEND CMAKE_EXE_LINKER_FLAGS " -Wl,--version-script=${MMT_EXPORTS_MAP}")
    set(MMT_EXPORTS_HIDDEN TRUE)
  else()
    message(WARNING "mmt: the linker takes no version script: the executables export their weak "
                    "instantiations, which a PyTorch wheel's libtorch may crash in (docs/gpu.md)")
  endif()
endif()
