#!/bin/sh
# fake vuserinfo: prints a user (with its hash and clear password) and then fails
printf 'passwd: $6$SaltSalt$Zz9HashValueThatMustNeverBeShownZz9\nclear passwd: Hunter2Clear\nname:   ann\n'
exit 1
