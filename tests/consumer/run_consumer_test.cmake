# Installs quanto from SOURCE_DIR into a scratch prefix, then configures, builds and runs a separate
# project that only does find_package(quanto CONFIG REQUIRED). Run by ctest (consumer_find_package).
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
set(prefix "${WORK_DIR}/prefix")

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  message(STATUS "${out}")
endfunction()

# 1. configure + install the library alone (no tests, bench or examples)
run("${CMAKE_COMMAND}" -S "${SOURCE_DIR}" -B "${WORK_DIR}/lib" -G "${GENERATOR}"
    -DCMAKE_INSTALL_PREFIX=${prefix} -DQUANTO_BUILD_TESTS=OFF -DQUANTO_BUILD_BENCH=OFF
    -DQUANTO_BUILD_EXAMPLES=OFF -DQUANTO_BUILD_TOOLS=OFF -DQUANTO_INSTALL=ON)
run("${CMAKE_COMMAND}" --install "${WORK_DIR}/lib")

# 2. a consumer that knows nothing but the install prefix
run("${CMAKE_COMMAND}" -S "${SOURCE_DIR}/tests/consumer/project" -B "${WORK_DIR}/app" -G "${GENERATOR}"
    -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_CXX_COMPILER=${CXX_COMPILER})
run("${CMAKE_COMMAND}" --build "${WORK_DIR}/app")
if(EXISTS "${WORK_DIR}/app/consumer_io")
  run("${WORK_DIR}/app/consumer_io" "${WORK_DIR}/roundtrip.safetensors")
endif()
run("${WORK_DIR}/app/consumer")
