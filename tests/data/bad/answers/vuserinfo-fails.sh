#!/bin/sh
# fake vuserinfo: vuserinfo-fails
echo "vuserinfo: out of memory" >&2; exit 2
