#!/bin/sh
# The image's entry point: membraned, once it is known which authority goes into capability URIs.
# Inside a container membraned listens on 0.0.0.0:8080, an address no client can use; the address
# clients use (the published host and port, or a name in front of them) is known only to whoever
# runs the container, so it must be given: -e MEMBRANED_AUTHORITY=HOST:PORT (or --authority, or
# authority = in a --config file).
#   IMAGE                      membraned serve
#   IMAGE serve|tenant ...|--flag ...   membraned with these arguments
#   IMAGE membraned ...        the same
#   IMAGE capi ... (any other command)  that command, as it is
set -eu
case "${1:-serve}" in
  membraned) shift ;;
  serve | tenant | -*) ;;
  *) exec "$@" ;;
esac
[ "$#" -gt 0 ] || set -- serve
case "$1" in
  serve | tenant)
    if [ -z "${MEMBRANED_AUTHORITY:-}" ]; then
      case " $* " in
        *" --authority"* | *" --config"*) ;;
        *)
          echo "membraned: set MEMBRANED_AUTHORITY to the HOST:PORT clients use to reach this container" >&2
          echo "  (e.g. docker run -p 127.0.0.1:8080:8080 -e MEMBRANED_AUTHORITY=127.0.0.1:8080 ...):" >&2
          echo "  it is written into every capability URI, and 0.0.0.0:8080 would make URIs no client can use" >&2
          exit 64
          ;;
      esac
    fi
    ;;
esac
exec /usr/local/bin/membraned "$@"
