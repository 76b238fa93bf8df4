# What `cmake --install BUILD_DIR [--prefix PREFIX]` installs (docs/operations.md, "Installing"):
#   PREFIX/bin/membraned, PREFIX/bin/capi
#   PREFIX/share/man/man8/membraned.8, PREFIX/share/man/man1/capi.1   (help2man, from --help)
#   PREFIX/share/doc/membraned/        README, LICENSE, CHANGELOG, docs/*.md, aws-config.example
#   PREFIX/lib/systemd/system/membraned.service   with PREFIX's paths in ExecStart= and Documentation=
#   SYSCONFDIR/membraned/membraned.toml           unless one is there already (an edited file is kept)
#   SYSCONFDIR/logrotate.d/membraned
# SYSCONFDIR is /etc for the prefixes /usr and /usr/local, where systemd and logrotate look,
# PREFIX/etc for any other; -DCMAKE_INSTALL_SYSCONFDIR=/absolute/path chooses another.
include(GNUInstallDirs)

find_program(HELP2MAN help2man REQUIRED)
set(MEMBRANED_MAN_DIR ${PROJECT_BINARY_DIR}/man)
# The page of a program, generated from its --help and --version, with the sections of
# deploy/man/PROGRAM.h2m. It runs by its bare name so that the usage line names no build folder.
function(membraned_man_page program section summary)
  set(page ${MEMBRANED_MAN_DIR}/${program}.${section})
  set(include ${PROJECT_SOURCE_DIR}/deploy/man/${program}.h2m)
  add_custom_command(OUTPUT ${page}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${MEMBRANED_MAN_DIR}
    COMMAND ${CMAKE_COMMAND} -E env "PATH=$<TARGET_FILE_DIR:${program}>:/usr/bin:/bin"
            ${HELP2MAN} --no-info --section=${section} --name=${summary} --include=${include}
            --output=${page} ${program}
    DEPENDS ${program} ${include}
    COMMENT "help2man: ${program}(${section})"
    VERBATIM)
  add_custom_target(${program}_man_page ALL DEPENDS ${page})
  install(FILES ${page} DESTINATION ${CMAKE_INSTALL_MANDIR}/man${section})
endfunction()
membraned_man_page(membraned 8 "capability membrane service: signs and proxies requests to AWS")
membraned_man_page(capi 1 "command-line client of the membrane service")

install(FILES README.md LICENSE CHANGELOG.md deploy/aws-config.example DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(DIRECTORY docs/ DESTINATION ${CMAKE_INSTALL_DOCDIR} FILES_MATCHING PATTERN "*.md")

if(IS_ABSOLUTE "${CMAKE_INSTALL_SYSCONFDIR}")
  set(MEMBRANED_SYSCONFDIR_OVERRIDE "${CMAKE_INSTALL_SYSCONFDIR}")
endif()
# The unit, the configuration and logrotate hold paths that depend on the prefix given to
# `cmake --install`, known only when it runs: cmake/install_deploy.cmake writes them then.
install(CODE "
  set(MEMBRANED_SOURCE_DIR \"${PROJECT_SOURCE_DIR}\")
  set(MEMBRANED_STAGING_DIR \"${PROJECT_BINARY_DIR}/install-staging\")
  set(MEMBRANED_BINDIR \"${CMAKE_INSTALL_BINDIR}\")
  set(MEMBRANED_DOCDIR \"${CMAKE_INSTALL_DOCDIR}\")
  set(MEMBRANED_SYSCONFDIR \"${MEMBRANED_SYSCONFDIR_OVERRIDE}\")
")
install(SCRIPT cmake/install_deploy.cmake)
