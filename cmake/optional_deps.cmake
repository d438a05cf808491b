# optional_deps.cmake — third-party libraries beyond BLAS, included by the root
# CMakeLists.txt after the tapegrad_objects target exists.
#
#   cJSON   (Debian: libcjson-dev)  reads and writes the JSON header of safetensors
#           checkpoints (src/nn/io.c); needed by the library itself.
#   zlib    (Debian: zlib1g-dev)    reads gzip-compressed IDX data sets (src/nn/idx.c);
#           needed by the library itself.
#   libpng  (Debian: libpng-dev)    writes the pictures of examples/spiral.c and
#           examples/fashion_mnist.c (through examples/plot); only they link it.

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
