#!/bin/sh
# fake vdominfo -n -d: the domain exists (so its users are listed next)
printf "bad.example\n/nonexistent/domains/bad.example\n"
