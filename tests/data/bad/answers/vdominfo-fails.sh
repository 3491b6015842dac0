#!/bin/sh
# fake vdominfo: vdominfo-fails
echo "Error: cannot read tcp.smtp"; exit 1
