# optional_deps.cmake — third-party libraries beyond BLAS, included by the root
# CMakeLists.txt after the tapegrad_objects target exists.
#
#   cJSON   (Debian: libcjson-dev)  reads and writes the JSON header of safetensors
#           checkpoints (src/nn/io.c); needed by the library itself.
#   zlib    (Debian: zlib1g-dev)    reads gzip-compressed IDX data sets (src/nn/idx.c);
#           needed by the library itself.
#   libpng  (Debian: libpng-dev)    writes the pictures of examples/spiral.c and
#           examples/fashion_mnist.c (through examples/plot); only they link it.
#   MPI     (Debian: libopenmpi-dev, openmpi-bin)  optional: when found, src/nn/dist.c
#           (include/tapegrad/dist.h, data-parallel training) is built, TG_HAVE_DIST is
#           defined in tapegrad/config.h, and the mpirun tests run. Configure with
#           -DCMAKE_DISABLE_FIND_PACKAGE_MPI=ON to build without it.

pkg_check_modules(CJSON REQUIRED IMPORTED_TARGET libcjson)
target_link_libraries(tapegrad_objects PUBLIC PkgConfig::CJSON)
# The shared and static libraries are built from the objects, so they link cJSON
# themselves. Inside the build tree the imported target carries the paths; an installed
# libtapegrad.a names the library for its consumers (the shared one needs nothing more).
list(APPEND TG_EXTRA_LIBS $<BUILD_INTERFACE:PkgConfig::CJSON>
     $<INSTALL_INTERFACE:${CJSON_LIBRARIES}>)
# pkg-config: static consumers of tapegrad.pc also need libcjson.
if(TG_PC_REQUIRES)
  set(TG_PC_REQUIRES "${TG_PC_REQUIRES}, libcjson")
else()
  set(TG_PC_REQUIRES "libcjson")
endif()

pkg_check_modules(ZLIB REQUIRED IMPORTED_TARGET zlib)
target_link_libraries(tapegrad_objects PUBLIC PkgConfig::ZLIB)
list(APPEND TG_EXTRA_LIBS $<BUILD_INTERFACE:PkgConfig::ZLIB>
     $<INSTALL_INTERFACE:${ZLIB_LIBRARIES}>)
set(TG_PC_REQUIRES "${TG_PC_REQUIRES}, zlib")

if(TG_BUILD_EXAMPLES)
  pkg_check_modules(PNG REQUIRED IMPORTED_TARGET libpng)
  # examples/plot (target tg_plot, defined in examples/) draws their pictures.
  set(TG_EXAMPLE_LIBS_spiral tg_plot)
  set(TG_EXAMPLE_LIBS_fashion_mnist tg_plot)
endif()

find_package(MPI COMPONENTS C)
if(MPI_C_FOUND)
  set(TG_HAVE_DIST ON)
  target_sources(tapegrad_objects PRIVATE ${PROJECT_SOURCE_DIR}/src/nn/dist.c)
  target_link_libraries(tapegrad_objects PUBLIC MPI::MPI_C)
  # Exported as MPI::MPI_C: tapegradConfig.cmake finds MPI before loading the targets.
  list(APPEND TG_EXTRA_LIBS MPI::MPI_C)
  # pkg-config: the MPI implementation's own .pc file when it has one (Open MPI's
  # ompi-c, MPICH's mpich), else the libraries FindMPI found. Public (Requires, Libs),
  # since a program that uses dist.h usually calls MPI itself as well.
  pkg_check_modules(TG_MPI_PC QUIET ompi-c)
  set(TG_MPI_PC_NAME ompi-c)
  if(NOT TG_MPI_PC_FOUND)
    pkg_check_modules(TG_MPI_PC QUIET mpich)
    set(TG_MPI_PC_NAME mpich)
  endif()
  if(TG_MPI_PC_FOUND)
    set(TG_PC_REQUIRES_PUBLIC "${TG_MPI_PC_NAME}")
  else()
    foreach(lib ${MPI_C_LIBRARIES})
      string(APPEND TG_PC_LIBS " ${lib}")
    endforeach()
    foreach(dir ${MPI_C_INCLUDE_DIRS})
      string(APPEND TG_PC_CFLAGS " -I${dir}")
    endforeach()
  endif()
  message(STATUS "tapegrad: MPI found (${MPI_C_VERSION}); building tg_dist_*")
else()
  set(TG_HAVE_DIST OFF)
  message(STATUS "tapegrad: MPI not found; building without tg_dist_*")
endif()
