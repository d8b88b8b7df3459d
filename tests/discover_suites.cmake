# Run after each build of a GoogleTest executable: one CTest test per test *suite* of it (the
# suite's tests run in one process), written to OUT for CTest to include.
#   cmake -DEXE=path -DOUT=file -DLABELS="cpu" [-DPREFIX=name] -P discover_suites.cmake
# Why suites: every process that loads libtorch spends ~0.7 s in its static initialisers (2 cores,
# libtorch 1.13), while most unit tests take milliseconds - 354 processes cost ~4 minutes of CPU
# in start-up alone, 78 cost ~1. The suite's output names each test that failed.
execute_process(COMMAND "${EXE}" --gtest_list_tests OUTPUT_VARIABLE listing RESULT_VARIABLE rc
                ERROR_VARIABLE err TIMEOUT 120)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${EXE} --gtest_list_tests failed (${rc}): ${err}")
endif()
string(REPLACE "\n" ";" lines "${listing}")
set(script "# Written by tests/discover_suites.cmake from ${EXE} --gtest_list_tests\n")
set(count 0)
foreach(line IN LISTS lines)
  # Suite lines start in column 0 and end with '.', perhaps followed by a comment
  # ("AllSix/AttentionFlow.  # TypeParam = ..."); test lines are indented.
  if(line MATCHES "^([A-Za-z0-9_/]+)\\.( .*)?$")
    set(suite "${CMAKE_MATCH_1}")
    string(APPEND script "add_test([=[${PREFIX}${suite}]=] [=[${EXE}]=] [=[--gtest_filter=${suite}.*]=])\n"
           "set_tests_properties([=[${PREFIX}${suite}]=] PROPERTIES LABELS [=[${LABELS}]=]"
           " SKIP_REGULAR_EXPRESSION [=[\\[  PASSED  \\] 0 tests\\.]=])\n")
    math(EXPR count "${count} + 1")
  endif()
endforeach()
if(count EQUAL 0)
  message(FATAL_ERROR "${EXE} lists no test suite:\n${listing}")
endif()
file(WRITE "${OUT}" "${script}")
