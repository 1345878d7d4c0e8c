# Checks docs/architecture.md's rule "each layer includes only the layers above it": every header
# under include/quanto/<layer>/ may include quanto headers of its own layer and of the layers before
# it in the order core, quantize, kernels, nn, io (text sits after core and uses only core; interop
# and cuda sit on top, beside io). Fails,
# naming each file and include, on any that runs back up.
#   cmake -DINCLUDE_DIR=<repo>/include -P check_layers.cmake
cmake_policy(SET CMP0057 NEW)  # if(IN_LIST) in script mode
set(rank_core 0)
set(rank_text 1)  # after core; beside quantize, kernels and nn, which it must not include:
set(allowed_text core text)  # a folder with allowed_<folder> may include only those
set(rank_quantize 1)
set(rank_kernels 2)
set(rank_nn 3)
set(rank_io 4)
set(rank_interop 5)
set(rank_cuda 5)
file(GLOB_RECURSE headers RELATIVE "${INCLUDE_DIR}" "${INCLUDE_DIR}/quanto/*/*.hpp")
set(bad "")
set(checked 0)
foreach(h IN LISTS headers)
  string(REGEX MATCH "^quanto/([a-z]+)/" _ "${h}")
  set(from "${CMAKE_MATCH_1}")
  if(NOT DEFINED rank_${from})
    list(APPEND bad "${h}: folder '${from}' has no place in the layer order (add it to check_layers.cmake)")
    continue()
  endif()
  file(STRINGS "${INCLUDE_DIR}/${h}" lines REGEX "^[ \t]*#[ \t]*include[ \t]*[<\"]quanto/[a-z]+/")
  foreach(line IN LISTS lines)
    string(REGEX MATCH "quanto/([a-z]+)/[^\">]+" inc "${line}")
    set(to "${CMAKE_MATCH_1}")
    if(NOT DEFINED rank_${to})
      list(APPEND bad "${h} includes ${inc}: folder '${to}' has no place in the layer order")
    elseif(rank_${to} GREATER rank_${from})
      list(APPEND bad "${h} (${from}) includes ${inc} (${to}), a later layer")
    elseif(DEFINED allowed_${from} AND NOT to IN_LIST allowed_${from})
      list(APPEND bad "${h} (${from}) includes ${inc} (${to}): ${from}/ may include only ${allowed_${from}}")
    endif()
    math(EXPR checked "${checked} + 1")
  endforeach()
endforeach()
if(bad)
  list(JOIN bad "\n  " text)
  message(FATAL_ERROR "includes that run back up the layering:\n  ${text}")
endif()
message(STATUS "layering: ${checked} quanto includes checked, none runs back up")
