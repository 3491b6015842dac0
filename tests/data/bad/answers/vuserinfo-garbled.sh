#!/bin/sh
# fake vuserinfo: vuserinfo-garbled
echo "name:   ann"; echo "passwd: x"
