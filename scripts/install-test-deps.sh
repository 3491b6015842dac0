#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine (run as root):
# OpenSSH (the suite starts its own sshd), dovecot (IMAP end-to-end tests), courier-imap's
# imapd (keywords and subscriptions as courier reads them), mb2md (the reference
# converter), the vpopmail/qmail system users the stand-in assigns files to, tmux (the
# terminal progress display is tested in it), awk (a plan counts import ledgers with it
# on the target), tzdata (time-zone tests), strace (makes syncfs fail, to test the
# writer's fsync fallback), sudo (hosts with `sudo: true` are tested through it), tcsh
# and fish (logins whose shell does not read sh command lines: two test accounts with
# those shells, key login only, may use sudo without a password; with zsh, the shells a
# command's portable form is tried in), and mailplan itself
# with its test extras, into Debian's python3 (with pip: neither is on a fresh machine,
# python3 is of priority optional).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
if ! command -v sshd >/dev/null || ! command -v dovecot >/dev/null || ! command -v mb2md >/dev/null \
   || ! command -v pgrep >/dev/null || ! command -v tmux >/dev/null \
   || ! command -v openssl >/dev/null || ! command -v sudo >/dev/null \
   || ! [ -x /usr/bin/time ] || ! command -v awk >/dev/null \
   || ! [ -e /usr/share/zoneinfo/America/New_York ] || ! command -v strace >/dev/null \
   || ! [ -e /usr/share/i18n/charmaps/ISO-8859-1.gz ] || ! command -v python3 >/dev/null \
   || ! command -v tcsh >/dev/null || ! command -v fish >/dev/null || ! command -v zsh >/dev/null \
   || ! python3 -m pip --version >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends openssh-server openssh-client \
    dovecot-imapd mb2md procps tmux openssl time mawk tzdata strace locales sudo \
    tcsh fish zsh python3 python3-pip >/dev/null
fi
# courier-imap conflicts with dovecot-imapd (both provide imap-server) and pulls in an
# MTA: its libraries are installed as packages, its imapd only unpacked from the .deb
# into /opt/courier-imap (the tests run it preauthenticated on a pipe, as offlineimap's
# preauthtunnel does: no daemon, no authdaemon, no port). The libraries are read from the
# .deb's Depends, whose names change between Debian releases (bookworm:
# libcourier-unicode4, libidn12, gamin; trixie: libcourier-unicode8, libidn2-0)
COURIER=/opt/courier-imap
if ! [ -x "$COURIER/usr/bin/imapd" ]; then
  apt-get update -qq  # also for the download below: the package lists may be missing
  debs=$(mktemp -d)
  (cd "$debs" && apt-get download -qq -o APT::Sandbox::User=root courier-imap)
  # each dependency's first alternative, without version or architecture; of those the
  # libraries, courier-authlib and gamin (not courier-base, debconf, an MTA, init tools)
  libs=$(dpkg-deb -f "$debs"/courier-imap_*.deb Depends | tr ',' '\n' \
         | sed -e 's/|.*//' -e 's/(.*)//' -e 's/:.*//' -e 's/[[:space:]]//g' \
         | grep -E '^(lib.*|courier-authlib|gamin)$')
  # shellcheck disable=SC2086  # one package name a word
  apt-get install -y -qq --no-install-recommends $libs >/dev/null
  mkdir -p "$COURIER"
  dpkg-deb -x "$debs"/courier-imap_*.deb "$COURIER"
  rm -rf "$debs"
fi
getent group vchkpw >/dev/null || groupadd -g 89 vchkpw
getent passwd vpopmail >/dev/null || useradd -u 89 -g 89 -d /home/vpopmail -M -s /usr/sbin/nologin vpopmail
# qmail's queue users, as a real qmail install creates them
getent group qmail >/dev/null || groupadd qmail
getent group nofiles >/dev/null || groupadd nofiles
for u in qmaild:nofiles qmaill:nofiles qmailp:nofiles alias:nofiles qmailq:qmail qmailr:qmail qmails:qmail; do
  getent passwd "${u%%:*}" >/dev/null || useradd -g "${u##*:}" -d /var/qmail -M -s /usr/sbin/nologin "${u%%:*}"
done
# logins through other shells (tests/conftest.py: login_shell_connector): no password
# (key login only, with the test sshd's throw-away key), sudo without one
for sh in tcsh fish; do
  u=mailplan-$sh
  getent passwd "$u" >/dev/null || useradd -m -d "/home/$u" -s "$(command -v "$sh")" "$u"
  usermod -p '*' "$u"
  printf '%s ALL=(ALL) NOPASSWD: ALL\n' "$u" > "/etc/sudoers.d/$u"
  chmod 0440 "/etc/sudoers.d/$u"
done
mkdir -p /run/sshd
# Debian's python3 is "externally managed" (PEP 668): its pip refuses to install anything
# unless told to; on this throw-away test machine the suite runs in that python3 itself
# (the variable, unlike the option, is ignored by a pip older than 23.0)
PIP_BREAK_SYSTEM_PACKAGES=1 PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q --disable-pip-version-check -e '.[test]'
