# quanto::tbb: the oneTBB backend of quanto's CPU kernels. Optional; include()d from the top-level
# CMakeLists.txt, so the variables set here (QUANTO_HAS_TBB) are visible there.
# Linking quanto::tbb instead of quanto::quanto defines QUANTO_USE_TBB, which makes
# quanto::kernels::parallel_for run on tbb::parallel_for instead of quanto's own thread pool.
option(QUANTO_ENABLE_TBB "Build the quanto::tbb target (oneTBB threading backend; needs oneTBB)" ON)

set(QUANTO_HAS_TBB OFF)
if(QUANTO_ENABLE_TBB)
  find_package(TBB CONFIG QUIET)
  if(TBB_FOUND AND TARGET TBB::tbb)
    set(QUANTO_HAS_TBB ON)
    add_library(quanto_tbb INTERFACE)
    add_library(quanto::tbb ALIAS quanto_tbb)
    set_target_properties(quanto_tbb PROPERTIES EXPORT_NAME tbb)
    target_link_libraries(quanto_tbb INTERFACE quanto::quanto TBB::tbb)
    target_compile_definitions(quanto_tbb INTERFACE QUANTO_USE_TBB=1)
  else()
    message(STATUS "quanto: oneTBB not found, quanto::tbb is not built (apt-get install libtbb-dev)")
  endif()
endif()
