#!/bin/sh
# The official-images convention: `docker run IMAGE --opt ...` runs the step (python /app/main.py --opt ...);
# any other command runs as given. So kfp.local (which passes the component's command as docker CMD, after
# this ENTRYPOINT) and Kubernetes (whose container command replaces the ENTRYPOINT) both run
# `python /app/main.py ...`, and `docker run IMAGE --help` prints the step's help.
set -e
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
    set -- python /app/main.py "$@"
fi
exec "$@"
