# Runs when `cmake --install` runs (cmake/install.cmake sets MEMBRANED_*): CMAKE_INSTALL_PREFIX is
# then the prefix given to it. Writes the systemd unit, the configuration file and logrotate's
# file with that prefix's paths in place of the defaults the repository's copies name
# (/usr/local/bin, /usr/local/share/doc/membraned, /etc/membraned).
if(MEMBRANED_SYSCONFDIR)
  set(sysconfdir "${MEMBRANED_SYSCONFDIR}")
elseif(CMAKE_INSTALL_PREFIX MATCHES "^/usr(/local)?/?$")
  set(sysconfdir "/etc")
else()
  set(sysconfdir "${CMAKE_INSTALL_PREFIX}/etc")
endif()
set(bindir "${CMAKE_INSTALL_PREFIX}/${MEMBRANED_BINDIR}")
set(docdir "${CMAKE_INSTALL_PREFIX}/${MEMBRANED_DOCDIR}")

# install_with_paths(SOURCE DESTINATION_DIR MODE): SOURCE with this prefix's paths, installed.
function(install_with_paths source destination)
  file(READ "${MEMBRANED_SOURCE_DIR}/${source}" text)
  string(REPLACE "/usr/local/bin/" "${bindir}/" text "${text}")
  string(REPLACE "/usr/local/share/doc/membraned" "${docdir}" text "${text}")
  string(REPLACE "/etc/membraned" "${sysconfdir}/membraned" text "${text}")
  get_filename_component(name "${source}" NAME)
  set(staged "${MEMBRANED_STAGING_DIR}/${destination}/${name}")
  file(WRITE "${staged}" "${text}")
  file(INSTALL "${staged}" DESTINATION "${destination}"
       PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
endfunction()

install_with_paths(deploy/membraned.service "${CMAKE_INSTALL_PREFIX}/lib/systemd/system")
install_with_paths(deploy/logrotate/membraned "${sysconfdir}/logrotate.d")
# An existing configuration is the operator's: never overwritten (the example is in the docs).
if(EXISTS "$ENV{DESTDIR}${sysconfdir}/membraned/membraned.toml")
  message(STATUS "Kept: $ENV{DESTDIR}${sysconfdir}/membraned/membraned.toml (the example is ${docdir}/membraned.toml)")
else()
  install_with_paths(deploy/membraned.toml "${sysconfdir}/membraned")
endif()
install_with_paths(deploy/membraned.toml "${docdir}")
