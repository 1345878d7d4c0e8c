# quanto::eigen: Eigen interop (include/quanto/interop/eigen.hpp). Optional; include()d from the
# top-level CMakeLists.txt, so the variables set here (QUANTO_HAS_EIGEN) are visible there.
# Header-only like the rest: an INTERFACE target that adds Eigen3::Eigen to quanto::quanto.
option(QUANTO_ENABLE_EIGEN "Build the quanto::eigen target (Eigen interop; needs Eigen 3.3+)" ON)

set(QUANTO_HAS_EIGEN OFF)
if(QUANTO_ENABLE_EIGEN)
  find_package(Eigen3 3.3 CONFIG QUIET)
  if(Eigen3_FOUND AND TARGET Eigen3::Eigen)
    set(QUANTO_HAS_EIGEN ON)
    add_library(quanto_eigen INTERFACE)
    add_library(quanto::eigen ALIAS quanto_eigen)
    set_target_properties(quanto_eigen PROPERTIES EXPORT_NAME eigen)
    target_link_libraries(quanto_eigen INTERFACE quanto::quanto Eigen3::Eigen)
    target_sources(quanto_eigen INTERFACE
      FILE_SET HEADERS BASE_DIRS "${PROJECT_SOURCE_DIR}/include"
      FILES "${PROJECT_SOURCE_DIR}/include/quanto/interop/eigen.hpp")
  else()
    message(STATUS "quanto: Eigen 3.3+ not found, quanto::eigen is not built (apt-get install libeigen3-dev)")
  endif()
endif()
