#!/bin/sh
# fake vdominfo: vdominfo-one-line
echo onlyoneline
