# cortex_add_test(NAME name SOURCES a.cpp ... [LIBS lib ...] [LABELS unit|model|e2e ...] [FIXTURES f ...])
# Builds one GoogleTest executable and registers it with CTest under the given labels, so that a slice
# of the suite runs with `ctest -L unit`.
function(cortex_add_test)
  cmake_parse_arguments(T "" "NAME;TIMEOUT" "SOURCES;LIBS;LABELS;FIXTURES" ${ARGN})
  add_executable(${T_NAME} ${T_SOURCES})
  target_link_libraries(${T_NAME} PRIVATE ${T_LIBS} cortex_test_support GTest::gtest GTest::gtest_main)
  add_test(NAME ${T_NAME} COMMAND ${T_NAME} WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 600)
  endif()
  set_tests_properties(${T_NAME} PROPERTIES LABELS "${T_LABELS}" TIMEOUT ${T_TIMEOUT}
    ENVIRONMENT "CORTEX_SOURCE_DIR=${CMAKE_SOURCE_DIR};CORTEX_BINARY_DIR=${CMAKE_BINARY_DIR};CORTEX_VOCAB_DIR=${CORTEX_DEFAULT_VOCAB_DIR}")
  if(T_FIXTURES)
    set_tests_properties(${T_NAME} PROPERTIES FIXTURES_REQUIRED "${T_FIXTURES}")
  endif()
endfunction()
