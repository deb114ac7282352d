# `cpack -G DEB` from the build tree: the aicache package for a server, holding
# /usr/bin/aicache, the systemd unit, a commented /etc/aicache/aicache.toml (a
# conffile: an upgrade keeps the operator's edits) and the docs. Only the "runtime"
# install component goes in: headers, libraries and CMake files stay for
# find_package users of `cmake --install`. ctest DebianPackage builds it and checks it.
# The /etc file is EXCLUDE_FROM_ALL: a plain `cmake --install --prefix DIR` must not write
# to the machine's /etc; the package's component install takes it.
install(FILES ${PROJECT_SOURCE_DIR}/deploy/systemd/aicache.service
        DESTINATION lib/systemd/system COMPONENT runtime)
install(FILES ${PROJECT_SOURCE_DIR}/deploy/aicache.toml
        DESTINATION /etc/aicache COMPONENT runtime EXCLUDE_FROM_ALL)
install(FILES ${PROJECT_SOURCE_DIR}/README.md ${PROJECT_SOURCE_DIR}/docs/configuration.md
              ${PROJECT_SOURCE_DIR}/docs/operations.md ${PROJECT_SOURCE_DIR}/docs/design.md
              ${PROJECT_SOURCE_DIR}/docs/reliability.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR} COMPONENT runtime)
install(FILES ${PROJECT_SOURCE_DIR}/deploy/prometheus/aicache-alerts.yml
        DESTINATION ${CMAKE_INSTALL_DOCDIR}/prometheus COMPONENT runtime)

file(WRITE ${PROJECT_BINARY_DIR}/debian/conffiles "/etc/aicache/aicache.toml\n")

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME aicache)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "aicache maintainers <aicache@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "token and cache service for AI-assistant backends (aicache serve)")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL runtime)
set(CPACK_COMPONENTS_GROUPING ALL_COMPONENTS_IN_ONE)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
# Debian 12's names of what the binary links (ldd tools/aicache/aicache).
set(CPACK_DEBIAN_PACKAGE_DEPENDS
    "libc6, libstdc++6 (>= 12), libgcc-s1, libhiredis0.14, libcurl4, libfmt9, libtomlplusplus3")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA ${PROJECT_BINARY_DIR}/debian/conffiles)
include(CPack)
