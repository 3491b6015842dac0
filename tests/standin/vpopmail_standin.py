"""Test-only stand-in for the vpopmail 5.6.13 command-line tools (cdb backend, notqmail).

It reimplements vadddomain, vdeldomain, vadduser, vdeluser, vmoduser, vpasswd,
vsetuserquota, vuserinfo, vdominfo, valias, vaddaliasdomain, vchkpw and qmail-newu so
that their stdout/stderr bytes, exit codes and files match the recorded transcripts in
shared/reference/vpopmail.  It is NEVER shipped with mailplan; tests install it with
``tests/standin/install.py``.

Invocation (done by the generated wrappers): ``vpopmail_standin.py PROGPATH VPOPDIR QMAILDIR
[args...]``; the tool is ``basename(PROGPATH)``, PROGPATH is what getopt warnings show.
Only the standard library is used and each tool imports only what it needs.
"""

import os
import sys

VERSION = "5.6.13"
MAX_USERS_PER_LEVEL = 100
DIRLIST = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
GEN_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.@!#%*"
SALT_CHARS = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
USER_OK = frozenset(b"!#$&'*+=?" + bytes(range(45, 58)) + bytes(range(65, 91))
                    + bytes(range(94, 127)))
DOMAIN_OK = frozenset(b"-." + bytes(range(48, 58)) + bytes(range(65, 91)) + bytes(range(97, 123)))
NULL_REMOTE_IP = "0.0.0.0"
SEP42 = "-" * 42

# VA_* error codes and their messages (verror)
ERR = {
    -1: "Illegal username", -3: "Unable to chdir to vpopmail directory",
    -4: "Unable to chdir to vpopmail/users directory",
    -7: "User's directory already exists", -10: "User does not exist",
    -11: "Domain does not exist", -12: "Invalid domain name", -13: "Domain already exists",
    -14: "Could not make domain dir",
    -20: "bad character", -25: "user name too long (max=64)",
    -26: "domain name too long (max=96)", -27: "password too long (max=128)",
    -28: "gecos too long (max=64)", -29: "quota too long (max=20)",
    -30: "dir too long (max=160)", -37: "can't read users/assign file",
    -55: "can't delete catchall account",
    -70: "password requires more characters ",
}
PW_POLICY = "Passwords must be at least one character long"

FLAGS = {  # vmoduser option -> bit
    "d": 1, "p": 2, "w": 4, "i": 8, "b": 16, "r": 32, "u": 64, "0": 128, "1": 256,
    "2": 512, "3": 1024, "s": 2048, "a": 4096, "o": 8192, "f": 16384, "F": 32768,
    "S": 65536, "E": 131072, "m": 262144,
}
LIMIT_TEXT = [
    (1, "password can not be changed by user"), (2, "pop access closed"),
    (4, "webmail access closed"), (8, "imap access closed"), (2048, "smtp access is closed"),
    (32, "user not allowed to relay mail"), (16384, "spamassassin processing disabled"),
    (32768, "delete spam"), (262144, "maildrop processing disabled"),
    (64, "no dialup flag has been set"), (16, "mail will be bounced back to sender"),
    (4096, "has qmailadmin administrator access"), (65536, "has system administrator access"),
    (131072, "has expert access"), (128, "user flag 0 is set"), (256, "user flag 1 is set"),
    (512, "user flag 2 is set"), (1024, "user flag 3 is set"),
    (8192, "user is not subject to domain limits"),
]


class Exit(Exception):
    """Raised to end a tool with an exit status (vexit)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code & 0xFF


class Ctx:
    """Paths and ownership fixed at install time (real vpopmail compiles them in)."""

    def __init__(self, prog: str, vpop: str, qmail: str) -> None:
        self.prog = prog
        self.vpop = vpop
        self.qmail = qmail
        self.uid, self.gid = installed_ids(vpop)

    @property
    def assign(self) -> str:
        return self.qmail + "/users/assign"


def installed_ids(vpop: str) -> tuple[int, int]:
    """The owner install.py fixed for this sandbox (vpopmail's ids, or the caller's where
    vpopmail could not reach it), else vpopmail_ids()."""
    try:
        with open(vpop + "/../../.standin-owner") as fh:  # install.py's OWNER_FILE
            uid, gid = fh.read().split()
        return int(uid), int(gid)
    except (OSError, ValueError):
        return vpopmail_ids()


def vpopmail_ids() -> tuple[int, int]:
    """uid of user vpopmail and gid of group vchkpw, else the caller's ids."""
    try:
        import grp
        import pwd
        return pwd.getpwnam("vpopmail").pw_uid, grp.getgrnam("vchkpw").gr_gid
    except (KeyError, ImportError):
        return os.getuid(), os.getgid()


def out(text: str) -> None:
    sys.stdout.write(text)


def err(text: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(text)
    sys.stderr.flush()


def fail(code: int, prefix: str = "Error: ") -> Exit:
    out(f"{prefix}{ERR[code]}\n")
    return Exit(code)


def chown(path: str, uid: int, gid: int) -> None:
    try:  # noqa: SIM105 (no contextlib import: startup time)
        os.chown(path, uid, gid)
    except OSError:
        pass


# ---------------------------------------------------------------- getopt (glibc semantics)

def getopt(ctx: Ctx, argv: list[str], spec: str, stop_on_error: bool = True
           ) -> tuple[list[tuple[str, str | None]], list[str]]:
    """glibc getopt with argument permutation; warnings go to stderr like glibc.

    Returns (options, operands). An unknown option yields ('?', None); when
    stop_on_error is set the scan stops there, as the tools' `while (!errflag && ...)`.
    """
    opts: list[tuple[str, str | None]] = []
    operands: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            operands.extend(argv[i + 1:])
            return opts, operands
        if not a.startswith("-") or a == "-":
            operands.append(a)
            i += 1
            continue
        j = 1
        while j < len(a):
            c = a[j]
            pos = spec.find(c)
            if pos < 0 or c == ":":
                err(f"{ctx.prog}: invalid option -- '{c}'\n")
                opts.append(("?", None))
                if stop_on_error:  # optind stays on a partly scanned argument
                    return opts, operands + argv[i if j + 1 < len(a) else i + 1:]
                j += 1
                continue
            takes = spec[pos + 1:pos + 2] == ":"
            optional = spec[pos + 1:pos + 3] == "::"
            if not takes:
                opts.append((c, None))
                j += 1
                continue
            if j + 1 < len(a):
                opts.append((c, a[j + 1:]))
            elif optional:
                opts.append((c, None))
            elif i + 1 < len(argv):
                i += 1
                opts.append((c, argv[i]))
            else:
                err(f"{ctx.prog}: option requires an argument -- '{c}'\n")
                opts.append(("?", None))
                if stop_on_error:
                    return opts, operands
            break
        i += 1
    return opts, operands


# ---------------------------------------------------------------- cdb writer

def cdb_hash(key: bytes) -> int:
    h = 5381
    for b in key:
        h = ((h << 5) + h) & 0xFFFFFFFF ^ b
    return h


def cdb_bytes(records: list[tuple[bytes, bytes]]) -> bytes:
    """A cdb file (D. J. Bernstein's format) holding records in insertion order."""
    import struct
    body = bytearray()
    pos = 2048
    tables: list[list[tuple[int, int]]] = [[] for _ in range(256)]
    for key, data in records:
        h = cdb_hash(key)
        tables[h & 255].append((h, pos))
        body += struct.pack("<LL", len(key), len(data)) + key + data
        pos += 8 + len(key) + len(data)
    header = bytearray()
    tail = bytearray()
    for entries in tables:
        n = len(entries) * 2
        header += struct.pack("<LL", pos, n)
        slots = [(0, 0)] * n
        for h, p in entries:
            w = (h >> 8) % n
            while slots[w][1]:
                w = (w + 1) % n
            slots[w] = (h, p)
        for h, p in slots:
            tail += struct.pack("<LL", h, p)
        pos += n * 8
    return bytes(header + body + tail)


def write_file(path: str, data: bytes, mode: int | None, uid: int, gid: int,
               tmp: str | None = None) -> None:
    """Write via a temp file + rename; mode None means 0666 minus the umask."""
    tmp = tmp or path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666 if mode is None else mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    if mode is not None:
        os.chmod(tmp, mode)
    os.rename(tmp, path)
    chown(path, uid, gid)


def write_in_place(path: str, data: bytes, mode: int, uid: int, gid: int) -> None:
    """``fopen(path, "w+")``, write, ``chown``: how vpopmail's vset_lastauth writes
    ``lastauth`` (vpopmail.c), the file itself truncated and written, no temp name that a
    killed process would leave in the user's directory."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    chown(path, uid, gid)


# ---------------------------------------------------------------- qmail users/assign

def domain_sort_key(name: str) -> str:
    labels = name.split(".")
    if len(labels) < 3:
        return name
    return ".".join(labels[-2:]) + "." + ".".join(labels[:-2])


class Assign:
    """users/assign entries: alias name -> (real domain, uid, gid, dir)."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.entries: list[tuple[str, str, int, int, str]] = []
        self.exists = os.path.exists(ctx.assign)
        if not self.exists:
            return
        with open(ctx.assign, encoding="latin-1") as f:
            for line in f:
                if not line.startswith("+"):
                    continue
                parts = line.rstrip("\n").split(":")
                name = parts[0][1:]
                name = name[:-1] if name.endswith("-") else name
                self.entries.append((name, parts[1], atoi(parts[2]), atoi(parts[3]), parts[4]))

    def get(self, domain: str) -> tuple[str, str, int, int, str] | None:
        for e in self.entries:
            if e[0] == domain:
                return e
        return None

    def add(self, name: str, real: str, uid: int, gid: int, path: str) -> None:
        self.entries.append((name, real, uid, gid, path))
        self.save()
        # add_domain_assign(): with 50 or more lines in rcpthosts the name goes to
        # morercpthosts instead, compiled by qmail-newmrh
        if len(read_lines(f"{self.ctx.qmail}/control/rcpthosts")) >= 50:
            control_add(self.ctx, "morercpthosts", name)
            qmail_newmrh(self.ctx)
        else:
            control_add(self.ctx, "rcpthosts", name)
        control_add(self.ctx, "virtualdomains", f"{name}:{name}")

    def remove(self, names: list[str]) -> None:
        self.entries = [e for e in self.entries if e[0] not in names]
        self.save()
        rcpt = f"{self.ctx.qmail}/control/rcpthosts"
        for n in names:
            if n in read_lines(rcpt):
                control_remove(self.ctx, "rcpthosts", n)
            else:  # del_control(): not in rcpthosts, so try morercpthosts
                remove_morercpthosts(self.ctx, n)
            control_remove(self.ctx, "virtualdomains", f"{n}:{n}")
        control_remove(self.ctx, "locals", None)

    def save(self) -> None:
        self.entries.sort(key=lambda e: domain_sort_key(e[0]))
        text = "".join(f"+{n}-:{r}:{u}:{g}:{d}:-::\n" for n, r, u, g, d in self.entries) + ".\n"
        lock(self.ctx.assign + ".lock")
        write_file(self.ctx.assign, text.encode("latin-1"), 0o644, 0, 0)
        qmail_newu(self.ctx)


def lock(path: str) -> None:
    if not os.path.exists(path):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        os.close(fd)


def control_add(ctx: Ctx, name: str, line: str) -> None:
    path = f"{ctx.qmail}/control/{name}"
    lines = read_lines(path)
    if line not in lines:
        lines.append(line)
    lines.sort(key=lambda x: domain_sort_key(x.split(":")[0]))
    lock(path + ".lock")
    write_file(path, "".join(x + "\n" for x in lines).encode("latin-1"), 0o644, 0, 0)
    if name == "rcpthosts":
        control_remove(ctx, "locals", None)


def control_remove(ctx: Ctx, name: str, line: str | None) -> None:
    path = f"{ctx.qmail}/control/{name}"
    if not os.path.exists(path):
        return
    lines = [x for x in read_lines(path) if x != line]
    lock(path + ".lock")
    write_file(path, "".join(x + "\n" for x in lines).encode("latin-1"), 0o644, 0, 0)


def remove_morercpthosts(ctx: Ctx, name: str) -> None:
    path = f"{ctx.qmail}/control/morercpthosts"
    lock(path + ".lock")
    lines = read_lines(path)
    if name not in lines:
        return
    lines.remove(name)
    if lines:
        write_file(path, "".join(x + "\n" for x in lines).encode("latin-1"), 0o644, 0, 0)
        qmail_newmrh(ctx)
        return
    for f in (path, path + ".cdb"):  # emptied: both files are deleted
        try:  # noqa: SIM105 (no contextlib import: startup time)
            os.unlink(f)
        except OSError:
            pass


def qmail_newmrh(ctx: Ctx) -> None:
    """notqmail's qmail-newmrh: control/morercpthosts -> morercpthosts.cdb (keys only)."""
    path = f"{ctx.qmail}/control/morercpthosts"
    records = [(x.lower().encode("latin-1"), b"") for x in read_lines(path)]
    write_file(path + ".cdb", cdb_bytes(records), 0o644, 0, 0)


def read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="latin-1") as f:
            return [x.rstrip("\n") for x in f if x.strip()]
    except OSError:
        return []


def qmail_newu(ctx: Ctx) -> int:
    """Rebuild users/cdb from users/assign exactly like notqmail's qmail-newu."""
    records: list[tuple[bytes, bytes]] = []
    wild = bytearray()
    with open(ctx.assign, "rb") as f:
        for line in f:
            if line.startswith(b"."):
                break
            i = line.find(b":")
            if i <= 0:
                continue
            key = (b"!" + line[1:i]).lower() if line[:1] == b"+" else \
                (b"!" + line[1:i] + b"\0").lower()
            if line[:1] == b"+" and i >= 2 and line[i - 1] not in wild:
                wild.append(line[i - 1])
            data = bytearray(line[i + 1:])
            colons = 0
            end = len(data)
            for k in range(len(data)):
                if data[k] == 58:
                    data[k] = 0
                    colons += 1
                    if colons == 6:
                        end = k
                        break
            records.append((key, bytes(data[:end])))
    records.append((b"", bytes(wild)))
    write_file(ctx.qmail + "/users/cdb", cdb_bytes(records), 0o644, 0, 0)
    return 0


# ---------------------------------------------------------------- .dir-control (bigdir.c)

class DirControl:
    """vpopmail's directory-hashing state, including its read-back parsing quirk."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.cur = 0
        self.level_cur = 0
        self.level_max = 3
        self.start = [0, 0, 0]
        self.end = [61, 61, 61]
        self.mod = [0, 2, 4]
        self.index = [0, 0, 0]
        self.the_dir = ""
        try:
            with open(path, encoding="latin-1") as f:
                lines = f.read().split("\n")
        except OSError:
            return
        lines += [""] * 10
        self.cur = atoi(lines[0])
        self.level_cur = atoi(lines[1])
        self.level_max = atoi(lines[2])
        self.start, self.end, self.mod, self.index = (triple(x) for x in lines[3:7])
        self.the_dir = lines[7]

    def write(self, uid: int, gid: int) -> None:
        if self.path.endswith("/"):  # dc_filename() == "": only the temp file is written
            self._write_orphan()
            return
        text = (f"{self.cur}\n{self.level_cur}\n{self.level_max}\n"
                + "".join(" ".join(map(str, t)) + "\n"
                          for t in (self.start, self.end, self.mod, self.index))
                + self.the_dir + "\n")
        try:  # noqa: SIM105 (no contextlib import: startup time)
            write_file(self.path, text.encode("latin-1"), None, uid, gid,
                       tmp=f"{self.path}.{os.getpid()}")
        except OSError:
            pass

    def _write_orphan(self) -> None:
        text = (f"{self.cur}\n{self.level_cur}\n{self.level_max}\n"
                + "".join(" ".join(map(str, t)) + "\n"
                          for t in (self.start, self.end, self.mod, self.index))
                + self.the_dir + "\n")
        fd = os.open(f"{self.path}.{os.getpid()}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        with os.fdopen(fd, "w", encoding="latin-1") as f:
            f.write(text)

    def next_dir(self) -> str:
        self.cur += 1
        if self.cur % MAX_USERS_PER_LEVEL == 0:
            self._advance()
        return self.the_dir

    def _advance(self) -> None:
        if not self.the_dir:
            self.the_dir = DIRLIST[self.start[0]]
            return
        lc = self.level_cur
        if self.index[lc] == self.end[lc] and (
                lc == 0 or (lc == 1 and self.index[0] == self.end[0]
                            and self.index[1] == self.end[1])):
                self._inc(lc)
                self.level_cur += 1
                self.the_dir += "/"
        self._inc(self.level_cur)

    def _inc(self, level: int) -> None:
        d = list(self.the_dir.ljust(self.mod[level] + 1, "\0"))
        m = self.mod[level]
        if d[m] == DIRLIST[self.end[level]]:
            d[m] = DIRLIST[self.start[level]]
            self.index[level] = self.start[level]
            self.the_dir = "".join(d).rstrip("\0")
            if level > 0:
                self._inc(level - 1)
            return
        i = self.start[level]
        while i < self.end[level] + 1 and DIRLIST[i] != d[m]:
            i += 1
        i += 1
        if i >= self.end[level] + 1:
            i = self.start[level]
        d[m] = DIRLIST[i]
        self.index[level] += 1
        self.the_dir = "".join(d).rstrip("\0")


def triple(line: str) -> list[int]:
    """Parse "a b c" the way vread_dir_control does (its 3rd value repeats the 2nd)."""
    first = atoi(line)
    sp = line.find(" ")
    second = atoi(line[sp + 1:]) if sp >= 0 else 0
    return [first, second, second]


def atoi(s: str) -> int:
    s = s.lstrip(" \t\n")
    n = 0
    sign = 1
    k = 0
    if s[:1] in "+-" and s:
        sign = -1 if s[0] == "-" else 1
        k = 1
    while k < len(s) and s[k].isdigit():
        n = n * 10 + ord(s[k]) - 48
        k += 1
    return sign * n


def strtoll(s: str) -> int:
    v = atoi(s)
    return max(min(v, 2**63 - 1), -(2**63))


def domains_dir_control(ctx: Ctx, uid: int, cwd: str) -> str:
    """dc_filename("dom_<uid>"): the vpopmail home, else the uid's passwd home.

    For a uid without a passwd entry it is "": vwrite_dir_control() then writes
    ".<pid>" relative to the current directory (DIR/domains) and rename(".<pid>", "")
    fails, so that file stays (18-final-server-state.md lists it after `vadddomain -i 1234`).
    """
    if uid == ctx.uid:
        return ctx.vpop + "/domains/.dir-control"
    try:
        import pwd
        return pwd.getpwuid(uid).pw_dir + "/domains/.dir-control"
    except (KeyError, ImportError):
        return cwd + "/"


def dec_dir_control(path: str | None, uid: int, gid: int) -> None:
    if not path:
        return
    dc = DirControl(path)
    dc.cur -= 1
    dc.write(uid, gid)


# ---------------------------------------------------------------- vpasswd file

class PwEntry:
    """One vpasswd line: name:passwd:uid:gid(flags):gecos:dir:quota[:clear]."""

    def __init__(self, line: str) -> None:
        f = line.split(":")
        f += [""] * (8 - len(f))
        self.name, self.passwd = f[0], f[1]
        self.uid, self.gid = atoi(f[2]), atoi(f[3])
        self.gecos, self.dir, self.quota = f[4], f[5], f[6]
        self.clear = f[7] if len(line.split(":")) > 7 else None

    def line(self) -> str:
        return (f"{self.name}:{self.passwd}:{self.uid}:{self.gid}:{self.gecos}:"
                f"{self.dir}:{self.quota}")


def read_vpasswd(ddir: str) -> list[str]:
    try:
        with open(ddir + "/vpasswd", encoding="utf-8", errors="surrogateescape") as f:
            return [x.rstrip("\n") for x in f if x.strip("\n")]
    except OSError:
        return []


REAL_VPOPDIR = "/home/vpopmail"  # compiled-in path on the reference server
MAX_BUFF = 300  # vpopmail.h; vgetent() reads vpasswd with fgets(line, MAX_BUFF)


def getall(ctx: Ctx, ddir: str) -> list[PwEntry]:
    """vauth_getall() over a vpasswd file: vgetent() per fgets(299 bytes) chunk.

    A line longer than 299 bytes is read in pieces; the first piece whose text has fewer
    than 6 ':' ends the enumeration (so `vuserinfo -D` stops before such a user).  Lengths
    are measured as if the tree lived at /home/vpopmail, like the server this mimics, so a
    longer sandbox root does not change which users are listed.
    """
    vpop, mark = ctx.vpop.encode(), b"\x01" * len(REAL_VPOPDIR)
    try:
        with open(ddir + "/vpasswd", "rb") as f:
            text = f.read().replace(vpop, mark)
    except OSError:
        return []
    entries = []
    pos = 0
    while pos < len(text):
        end = text.find(b"\n", pos)
        end = len(text) if end < 0 else end + 1
        chunk = text[pos:min(end, pos + MAX_BUFF - 1)]
        pos += len(chunk)
        if chunk.count(b":") < 6:
            break
        line = chunk.rstrip(b"\n").replace(mark, vpop)
        entries.append(PwEntry(line.decode("utf-8", "surrogateescape")))
    return entries


def getpw(ctx: Ctx, user: str, domain: str) -> PwEntry | None:
    entry = Assign(ctx).get(domain)
    if entry is None:
        return None
    for line in read_vpasswd(entry[4]):
        if line.split(":", 1)[0] == user:
            return PwEntry(line)
    return None


def write_vpasswd(ctx: Ctx, ddir: str, lines: list[str], uid: int, gid: int) -> None:
    lock(ddir + "/.vpasswd.lock")
    chown(ddir + "/.vpasswd.lock", uid, gid)
    data = "".join(x + "\n" for x in lines).encode("utf-8", "surrogateescape")
    write_file(ddir + "/vpasswd", data, None, uid, gid, tmp=f"{ddir}/vpasswd.bak.{os.getpid()}")
    records = []
    for x in lines:
        k, _, v = x.partition(":")
        records.append((k.encode("utf-8", "surrogateescape"), v.encode("utf-8", "surrogateescape")))
    old = os.umask(0o077)
    try:
        write_file(ddir + "/vpasswd.cdb", cdb_bytes(records), None, uid, gid,
                   tmp=ddir + "/vpasswd.cdb.tmp")
    finally:
        os.umask(old)


def check_vqpw(ctx: Ctx, domain: str, pw: PwEntry) -> int:
    """vcheck_vqpw(): the field sizes vauth_setpw() refuses (MAX_PW_* in vpopmail.h); the
    directory is measured as if the tree lived at /home/vpopmail, like getall()."""
    def size(s: str) -> int:
        return len(s.encode("utf-8", "surrogateescape"))
    if size(pw.name) > 64:
        return -25
    if size(pw.name) == 1:
        return -1
    if size(domain) > 96:
        return -26
    if size(pw.passwd) > 128:
        return -27
    if size(pw.gecos) > 64:
        return -28
    if size(pw.dir.replace(ctx.vpop, REAL_VPOPDIR)) > 160:
        return -30
    if size(pw.quota) > 20:
        return -29
    return 0


def setpw(ctx: Ctx, domain: str, pw: PwEntry) -> int:
    """vauth_setpw(): 0, or the VA_* code of a field too long (nothing is written)."""
    code = check_vqpw(ctx, domain, pw)
    if code:
        return code
    real, _, uid, gid, ddir = Assign(ctx).get(domain)  # type: ignore[misc]
    lines = [pw.line() if x.split(":", 1)[0] == pw.name else x for x in read_vpasswd(ddir)]
    write_vpasswd(ctx, ddir, lines, uid, gid)
    return 0


# ---------------------------------------------------------------- shared helpers

def parse_email(email: str, invalid: Exception | None = None) -> tuple[str, str]:
    """parse_email(): lower-case, split at the first of '@', '%', '/', validate; an invalid
    name prints vpopmail's message and raises ``invalid`` (default: exit -1)."""
    email = email.lower()
    user, domain = email, ""
    for ch in "@%/":
        if ch in email:
            user, domain = email.split(ch, 1)
            break
    if not valid_chars(user, USER_OK):
        err(f"user invalid {user}\n")
        raise invalid or fail(-1)
    if not valid_chars(domain, DOMAIN_OK):
        err(f"domain invalid {domain}\n")
        raise invalid or fail(-1)
    return user, domain


def valid_chars(s: str, allowed: frozenset[int]) -> bool:
    return all(b in allowed for b in s.encode("utf-8", "surrogateescape"))


def mkpasswd(clear: str) -> str:
    import random
    rnd = random.SystemRandom()
    salt = "".join(rnd.choice(SALT_CHARS) for _ in range(8))
    return crypt(clear, "$6$" + salt)


def crypt(clear: str, setting: str) -> str | None:
    """The system crypt(3) (libxcrypt), so every scheme the real server knows works."""
    import ctypes
    import ctypes.util
    lib = ctypes.CDLL(ctypes.util.find_library("crypt") or "libcrypt.so.1")
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    res = lib.crypt(clear.encode("utf-8", "surrogateescape"),
                    setting.encode("utf-8", "surrogateescape"))
    return None if res is None else res.decode("utf-8", "surrogateescape")


def random_pass(n: int) -> str:
    import random
    rnd = random.SystemRandom()
    return "".join(rnd.choice(GEN_CHARS) for _ in range(max(n, 0)))


def getpass_pair(prompt_user: str) -> str:
    """vgetpasswd(): two prompts on stderr, repeat until both entries match."""
    while True:
        err(f"Please enter password for {prompt_user}: ")
        first = read_stdin_line()
        err("enter password again: ")
        second = read_stdin_line()
        if first == second:
            return first
        out("Passwords do not match, try again\n")
        sys.stdout.flush()


def read_stdin_line() -> str:
    buf = bytearray()
    while True:
        try:
            b = os.read(0, 1)
        except OSError:
            b = b""
        if not b or b == b"\n":
            break
        buf += b
    return buf.decode("utf-8", "surrogateescape")


def format_quota(q: str) -> str:
    """format_maildirquota() from vpopmail.c."""
    if q == "NOQUOTA":
        return "NOQUOTA"
    size = count = 0
    for p in (x for x in q[:127].split(",") if x):
        if p[-1] == "C":
            count = strtoll(p)
            continue
        if p[-1] in "Ss":
            p = p[:-1]
        if p and p[-1] in "Bb":
            p = p[:-1]
        size = strtoll(p)
        if p and p[-1] in "Mm":
            size *= 1024 * 1024
        if p and p[-1] in "Kk":
            size *= 1024
    size &= 0xFFFFFFFFFFFFFFFF
    count &= 0xFFFFFFFFFFFFFFFF
    if count == 0:
        return "" if size == 0 else f"{size}S"
    return f"{count}C" if size == 0 else f"{size}S,{count}C"


def update_maildirsize(pw_dir: str, quota: str, uid: int, gid: int) -> None:
    path = pw_dir + "/Maildir/maildirsize"
    if quota in ("NOQUOTA", ""):
        try:  # noqa: SIM105 (no contextlib import: startup time)
            os.unlink(path)
        except OSError:
            pass
        return
    try:  # noqa: SIM105 (no contextlib import: startup time)
        write_file(path, f"{quota}\n0 0\n".encode(), 0o600, uid, gid)
    except OSError:
        pass


def setuserquota(ctx: Ctx, user: str, domain: str, quota: str) -> int:
    """vsetuserquota(): the quota as given and as stored must fit MAX_PW_QUOTA (20), so a
    negative one fails only through its 20-digit unsigned form (-5 -> 18446744073709551611S)."""
    if len(user) > 64:
        return -25
    if len(user) == 1:
        return -1
    if len(domain) > 96:
        return -26
    if len(quota.encode("utf-8", "surrogateescape")) > 20:
        return -29
    pw = getpw(ctx, user, domain)
    if pw is None:
        return -10
    _, _, uid, gid, _ = Assign(ctx).get(domain)  # type: ignore[misc]
    pw.quota = format_quota(quota)
    code = setpw(ctx, domain, pw)
    if code:
        return code
    update_maildirsize(pw.dir, pw.quota, uid, gid)
    return 0


def make_user_dir(path: str, uid: int, gid: int) -> None:
    os.mkdir(path, 0o700)
    for sub in ("/Maildir", "/Maildir/cur", "/Maildir/new", "/Maildir/tmp"):
        os.mkdir(path + sub, 0o700)
    for p in (path, path + "/Maildir", path + "/Maildir/cur", path + "/Maildir/new",
              path + "/Maildir/tmp"):
        chown(p, uid, gid)


def add_user(ctx: Ctx, user: str, domain: str, clear: str, gecos: str) -> int:
    """vadduser() from vpopmail.c for the cdb backend; returns a VA_* code."""
    if ":" in gecos:  # vadduser()'s first check
        return -20
    if len(user) > 64:
        return -25
    if len(user) < 2:
        return -1
    if len(gecos.encode("utf-8", "surrogateescape")) > 64:
        return -28
    os.umask(0o077)
    if not valid_chars(user, USER_OK):
        return -1
    entry = Assign(ctx).get(domain)
    if entry is None:
        return -11
    _, real, uid, gid, ddir = entry
    if len(clear) < 1:
        return -70
    if getpw(ctx, user, domain) is not None:
        return -1
    sub = backfill_take(ctx, ddir, uid, gid)
    if sub is None:
        dc = DirControl(ddir + "/.dir-control")
        sub = dc.next_dir()
        if sub:
            os.makedirs(f"{ddir}/{sub}", 0o700, exist_ok=True)
            chown(f"{ddir}/{sub}", uid, gid)
        dc.write(uid, gid)
    if len(ddir.replace(ctx.vpop, REAL_VPOPDIR)) + len(sub) + len(user) > 160:
        err("Error. Path exceeds maximum permitted length\n")  # make_user_dir(), MAX_PW_DIR
        return -4
    udir = f"{ddir}/{sub}/{user}" if sub else f"{ddir}/{user}"
    try:  # like make_user_dir(), a failure does not give the hash slot back
        make_user_dir(udir, uid, gid)
    except OSError:
        return -7
    write_in_place(udir + "/lastauth", NULL_REMOTE_IP.encode(), 0o600, uid, gid)
    lines = read_vpasswd(ddir)
    lines.append(f"{user}:{mkpasswd(clear)}:1:0:{gecos}:{udir}:NOQUOTA")
    lines.sort(key=lambda x: x.split(":", 1)[0].encode("utf-8", "surrogateescape"))
    write_vpasswd(ctx, ddir, lines, uid, gid)
    return 0


def backfill_take(ctx: Ctx, ddir: str, uid: int, gid: int) -> str | None:
    path = ddir + "/.dir_control_free"
    lines = read_lines(path)
    if not lines:
        return None
    sub = lines[0]
    lock(path + ".lock")
    write_file(path, "".join(x + "\n" for x in lines[1:]).encode(), None, uid, gid)
    dc = DirControl(ddir + "/.dir-control")
    if dc.cur:
        dc.cur += 1
    dc.write(uid, gid)
    return sub


def rmtree(path: str) -> bool:
    import shutil
    try:
        shutil.rmtree(path)
        return True
    except OSError:
        return False


def del_user(ctx: Ctx, user: str, domain: str) -> int:
    """vdeluser() from vpopmail.c; returns a VA_* code."""
    os.umask(0o077)
    entry = Assign(ctx).get(domain)
    if entry is None:
        return -11
    _, _, uid, gid, ddir = entry
    pw = getpw(ctx, user, domain)
    if pw is None:
        return -10
    if is_catchall(user, domain, ddir):
        return -55
    lines = [x for x in read_vpasswd(ddir) if x.split(":", 1)[0] != user]
    write_vpasswd(ctx, ddir, lines, uid, gid)
    backfill_add(ddir, user, pw.dir, uid, gid)
    dec_dir_control(ddir + "/.dir-control", uid, gid)
    if not os.path.isdir(pw.dir) or not rmtree(pw.dir):
        err(f"could not remove {pw.dir}\n")
        return -3
    return 0


def is_catchall(user: str, domain: str, ddir: str) -> bool:
    """isCatchall(): whether the first line of .qmail-default, a vdelivermail '' line,
    delivers to this user's directory (a path under the domain's whose last part is the
    name) or forwards to user@domain."""
    try:
        with open(ddir + "/.qmail-default", encoding="utf-8", errors="surrogateescape") as f:
            line = f.readline().rstrip("\n")
    except OSError:
        return False
    quotes = line.find("''") if "vdelivermail" in line else -1
    space = line.find(" ", quotes) if quotes >= 0 else -1
    if space < 0:
        return False
    action = line[space:].strip(" \t")
    if "bounce-no-mailbox" in action or "delete-no-mailbox" in action:
        return False
    if action.startswith("/"):
        return ddir in action and action[action.rfind("/") + 1:] == user
    if not action or action.startswith("@"):
        err(f"unknown .qmail-default contents {action}\n")
        return False
    name, _, rest = action.partition("@")
    if name == user and not rest.lstrip("@").split("@")[0]:
        # no domain part: vpopmail compares a NULL pointer with strcmp() and dies
        # (vdeluser delete@DOMAIN under the default "'' delete" line)
        import resource
        import signal
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        sys.stdout.flush()
        signal.signal(signal.SIGSEGV, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGSEGV)
    return name == user and rest.lstrip("@").split("@")[0] == domain


def backfill_add(ddir: str, user: str, pw_dir: str, uid: int, gid: int) -> None:
    head = pw_dir[:pw_dir.rfind(user)].rstrip("/")
    sub = head[len(ddir):].lstrip("/") if head.startswith(ddir) else ""
    if sub:
        path = ddir + "/.dir_control_free"
        lock(path + ".lock")
        with open(path, "a", encoding="latin-1") as f:
            f.write(sub + "\n")


def domain_valid(domain: str) -> int:
    """Checks of vadddomain() in vpopmail.c; 0 or a VA_* code."""
    if len(domain) < 3:
        return -12
    if len(domain) > 96:
        return -26
    dot = domain.rfind(".")
    if dot < 0 or not 2 <= len(domain) - 1 - dot <= 63:
        return -12
    if domain[0] == "-" or domain[-1] == "-" or ".." in domain:
        return -12
    if not all(c.isascii() and (c.isalnum() or c in "-.") for c in domain):
        return -12
    return 0


def version_line() -> None:
    out(f"version: {VERSION}\n")


# ---------------------------------------------------------------- vadddomain

VADDDOMAIN_USAGE = """\
vadddomain: usage: vadddomain [options] virtual_domain [postmaster password]
options: -v prints the version
         -q quota_in_bytes (sets the quota for postmaster account)
         -b (bounces all mail that doesn't match a user, default)
         -e email_address (forwards all non matching user to this address [*])
         -u user (sets the uid/gid based on a user in /etc/passwd)
         -d dir (sets the dir to use for this domain)
         -i uid (sets the uid to use for this domain)
         -g gid (sets the gid to use for this domain)
         -O optimize adding, for bulk adds set this for all
            except the last one
         -r[len] (generate a len (default 12) char random postmaster password)

 [*] omit @-sign to deliver directly into user's Maildir: '-e postmaster'

Special bounce messages supported by vdeliver mail:
   vadddomain -b delete example.com [password]  -  delete all mail to non-existant accounts
   vadddomain -b bounce-no-mailbox example.com [password] - bounce them \n\
   vadddimain -b someone@somewhere.com example.com [password] - sent to another address
   vadddomain -b /path/to/Maildir example.com [password] - sent to a Maildir
"""


def tool_vadddomain(ctx: Ctx, argv: list[str]) -> int:
    opts, rest = getopt(ctx, argv, "q:be:u:vi:g:d:Or::")
    o = {"q": "", "e": "", "d": ctx.vpop, "pw": "", "random": False,
         "uid": ctx.uid, "gid": ctx.gid}
    for c, a in opts:
        vadddomain_option(ctx, o, c, a)
    if not rest:
        out(VADDDOMAIN_USAGE)
        return 0
    domain = rest[0]
    if len(rest) > 1:
        if o["random"]:
            out("Error: don't use -r option when giving password on command line\n")
            return 255
        o["pw"] = rest[1]
    code = add_domain(ctx, domain.lower(), o["d"], o["uid"], o["gid"])
    if code:
        raise fail(code)
    domain = domain.lower()
    if not o["pw"] and not o["random"] and len(rest) < 2:
        o["pw"] = getpass_pair("postmaster")
    code = add_user(ctx, "postmaster", domain, o["pw"], "Postmaster")
    if code:
        out(f"Error: (vadduser) {ERR[code]}\n")
        return del_domain(ctx, domain) & 0xFF
    code = setuserquota(ctx, "postmaster", domain, o["q"]) if o["q"] else 0
    if code:
        raise fail(code)
    if o["e"]:
        write_catchall(ctx, domain, o["e"])
    if o["random"]:
        out(f"Random password: {o['pw']}\n")
    return 0


def vadddomain_option(ctx: Ctx, o: dict, c: str, a: str | None) -> None:
    if c == "v":
        version_line()
    elif c in "qed":
        o[c] = a
    elif c == "i":
        o["uid"] = atoi(a or "")
    elif c == "g":
        o["gid"] = atoi(a or "")
    elif c == "u":
        import pwd
        try:
            p = pwd.getpwnam(a or "")
        except KeyError:
            out(f"Error: user {a} not found in /etc/passwd\n")
            raise Exit(-1) from None
        o["uid"], o["gid"] = p.pw_uid, p.pw_gid
    elif c == "r":
        o["random"] = True
        size = 12 if a is None else atoi(a)
        if size > 128:
            raise fail(-27)
        o["pw"] = random_pass(size)


def add_domain(ctx: Ctx, domain: str, base: str, uid: int, gid: int) -> int:
    code = domain_valid(domain)
    if code:
        return code
    assign = Assign(ctx)
    if assign.get(domain) is not None:
        return -13
    os.umask(0o077)
    droot = base + "/domains"
    if not os.path.isdir(droot):
        os.mkdir(droot, 0o700)
        chown(droot, uid, gid)
    dcpath = domains_dir_control(ctx, uid, droot)
    sub = ""
    if dcpath:
        dc = DirControl(dcpath)
        sub = dc.next_dir()
        if sub:
            os.makedirs(f"{droot}/{sub}", 0o700, exist_ok=True)
            chown(f"{droot}/{sub}", uid, gid)
        dc.write(ctx.uid, ctx.gid)
    ddir = f"{droot}/{sub}/{domain}" if sub else f"{droot}/{domain}"
    try:
        os.mkdir(ddir, 0o700)
    except FileExistsError:
        # r_mkdir() (vpopmail.c) takes a directory that is there as made: one left by a
        # vadddomain cut short before its assign line is used again
        if not os.path.isdir(ddir):
            return -14
    chown(ddir, uid, gid)
    qd = f"| {ctx.vpop}/bin/vdelivermail '' delete\n"
    write_file(ddir + "/.qmail-default", qd.encode(), 0o600, uid, gid)
    assign.add(domain, domain, uid, gid, ddir)
    return 0


def write_catchall(ctx: Ctx, domain: str, target: str) -> None:
    _, _, uid, gid, ddir = Assign(ctx).get(domain)  # type: ignore[misc]
    dest = target if "@" in target else f"{ddir}/{target}"
    write_file(ddir + "/.qmail-default",
               f"| {ctx.vpop}/bin/vdelivermail '' {dest}\n".encode(), 0o600, uid, gid)


# ---------------------------------------------------------------- vdeldomain

def tool_vdeldomain(ctx: Ctx, argv: list[str]) -> int:
    opts, rest = getopt(ctx, argv, "vf")
    force = False
    for c, _ in opts:
        if c == "v":
            version_line()
        force = force or c == "f"
    if not rest:
        out("vdeldomain: usage: [options] domain_name\n"
            "options: -v (print version number)\n"
            "options: -f (force delete of virtual domains)\n")
        return 0
    domain = rest[0].lower()
    assign = Assign(ctx)
    if not assign.exists:
        out(f"Error: Can't get domain entries - {ERR[-37]}\n")
        return 219
    entries = domain_entries(assign, domain)
    if not entries:
        raise fail(-11)
    aliases = [e[0] for e in entries if e[0] != e[1]]
    parent = next((e[0] for e in entries if e[0] == e[1]), "")
    if aliases and rest[0] == parent:  # compares the argument as typed (not lower-cased)
        out("Warning: Alias domains deleted:\n" if force else "Warning: Alias domains exist:\n")
        out("".join(f"   {a}\n" for a in aliases))
        if not force:
            out("   use -f to force delete of domain and all aliases\n")
            return 0
    code = del_domain(ctx, domain)
    if code:
        out(f"Error: {ERR[code]}\n")
    return code & 0xFF


def del_domain(ctx: Ctx, domain: str) -> int:
    """vdeldomain() from vpopmail.c: alias -> drop its lines; real -> everything.

    It sets no umask, so the domains-level .dir-control it rewrites gets the caller's.
    """
    assign = Assign(ctx)
    entry = assign.get(domain)
    if entry is None:
        return -11
    _, real, uid, gid, ddir = entry
    if real != domain:
        assign.remove([domain])
        return 0
    names = [e[0] for e in assign.entries if e[1] == real and ("." in e[0] or e[0] == real)]
    if not os.path.isdir(ddir):
        err(f"Warning: Could not access ({ddir})\n")
    assign.remove(names)
    try:
        os.unlink(ddir + "/.dir-control")
    except OSError:
        err(f"Warning: Failed to delete dir_control for {domain}\n")
    if not os.path.isdir(ddir) or not rmtree(ddir):
        err(f"Warning: Failed to delete directory tree: {domain}\n")
    dec_dir_control(domains_dir_control(ctx, uid, ctx.vpop + "/domains"), ctx.uid, ctx.gid)
    return 0


# ---------------------------------------------------------------- vadduser

VADDUSER_USAGE = """\
vadduser: usage: [options] email_address [passwd]
options: -v (print the version)
         -q quota_in_bytes (sets the users quota, use NOQUOTA for unlimited)
         -c comment (sets the gecos comment field)
         -e standard_encrypted_password
            (MD5 '$1$', SHA-512 '$6$', etc.)
            NOTE: Wrap the password in single quotes to prevent shell expansion:
                  vadduser -e '$6$...hashed_password...' user@domain
         -r[len] (generate a len (default 12) char random password)

Examples:
  vadduser user@domain                      # prompt for cleartext password
  vadduser -q 100000 -c 'Test user' -e '$1$abcd$XYZ...' user@domain
           (MD5 hashed password, use single quotes)
  vadduser -q 100000 -c 'Test user' -e '$6$56RNlxOG$...' user@domain
           (SHA-512 hashed, use single quotes)
"""


def tool_vadduser(ctx: Ctx, argv: list[str]) -> int:
    opts, rest = getopt(ctx, argv, "svc:nq:e:r::")
    o = {"c": "", "q": "", "e": "", "pw": "", "random": False}
    for c, a in opts:
        if c == "v":
            version_line()
        elif c == "s":
            err("Warning: The -s option has been disabled.\n")
        elif c in "cqe":
            o[c] = a
        elif c == "r":
            o["random"] = True
            size = 12 if a is None else atoi(a)
            if size > 128:
                raise fail(-27)
            o["pw"] = random_pass(size)
    if o["e"]:  # a temporary password for vadduser(), replaced by the hash afterwards
        o["pw"] = random_pass(12)
    if not rest:
        out(VADDUSER_USAGE)
        return 255
    email = rest[0]
    if len(rest) > 1:
        if o["random"]:
            out("Error: don't use -r option when giving password on command line\n")
            return 255
        o["pw"] = rest[1]
    return vadduser_main(ctx, email, o)


def vadduser_main(ctx: Ctx, email: str, o: dict) -> int:
    user, domain = parse_email(email)
    if not domain:
        out("You did not use a full email address for the user name\n"
            "Only full email addresses should be used\n")
        return 255
    if Assign(ctx).get(domain) is None:
        out("Error: Domain does not exist\n")
        return 255
    if getpw(ctx, user, domain) is not None:
        out("Error: User already exists\n")
        return 255
    gecos = o["c"] or user
    if not o["e"] and not o["pw"]:
        o["pw"] = getpass_pair(email.lower())
        if not o["pw"]:
            out("Error: No password entered\n" + VADDUSER_USAGE)
            return 255
    code = add_user(ctx, user, domain, o["pw"], gecos)
    if code:
        out(f"Error: {ERR[code]}\n")
        if code == -70:
            out(f"A password policy is in place:\n\t{PW_POLICY}\n")
        return code & 0xFF
    if o["q"] and setuserquota(ctx, user, domain, o["q"]):
        out("Error in vsetuserquota()\n")
        return 255
    if o["e"]:  # stored only now: a failed quota leaves the temporary password
        pw = getpw(ctx, user, domain)
        if pw is None:
            out("Error in vauth_getpw()\n")
            return 255
        pw.passwd = o["e"]
        if setpw(ctx, domain, pw):
            out("Error in vauth_setpw()\n")
            return 255
    if o["random"]:
        out(f"Random password: {o['pw']}\n")
    return 0


# ---------------------------------------------------------------- vdeluser

def tool_vdeluser(ctx: Ctx, argv: list[str]) -> int:
    opts, rest = getopt(ctx, argv, "v")
    for c, _ in opts:
        if c == "v":
            version_line()
    if not rest or not rest[0]:
        out("vdeluser: usage: [options] email_address\noptions: -v (print version number)\n")
        return 255
    user, domain = parse_email(rest[0])
    code = del_user(ctx, user, domain)
    if code:
        raise fail(code)
    return 0


# ---------------------------------------------------------------- vmoduser

VMODUSER_USAGE = """\
vmoduser: usage: [options] email_addr or domain (for each user in domain)
options: -v ( display the vpopmail version number )
         -n ( don't rebuild the vpasswd.cdb file )
         -q quota ( set quota )
         -c comment (set the comment/gecos field )
         -e encrypted_passwd (set the password field )
         -C clear_text_passwd (set the password field )
the following options are bit flags in the gid int field
         -x ( clear all flags )
         -d ( don't allow user to change password )
         -p ( disable POP access )
         -s ( disable SMTP AUTH access )
         -w ( disable webmail [IMAP from localhost*] access )
            ( * full list of webmail server IPs in vchkpw.c )
         -i ( disable non-webmail IMAP access )
         -b ( bounce all mail )
         -o ( user is not subject to domain limits )
         -r ( disable roaming user/pop-before-smtp )
         -a ( grant qmailadmin administrator privileges )
         -S ( grant system administrator privileges - access all domains )
         -E ( grant expert privileges - edit .qmail files )
         -f ( disable spamassassin)
         -F ( delete spam)
         -m ( disable maildrop)
  [The following flags aren't used directly by vpopmail but are]
  [included for other programs that share the user database.]
         -u ( set no dialup flag )
         -0 ( set V_USER0 flag )
         -1 ( set V_USER1 flag )
         -2 ( set V_USER2 flag )
         -3 ( set V_USER3 flag )
"""


def tool_vmoduser(ctx: Ctx, argv: list[str]) -> int:
    opts, rest = getopt(ctx, argv, "D:avunxc:q:dpswibro0123he:C:fFSEm", stop_on_error=False)
    o = {"c": "", "D": "", "C": "", "e": "", "q": None, "x": False, "flags": 0}
    for c, a in opts:
        if c == "v":
            version_line()
        elif c == "h":
            out(VMODUSER_USAGE)
            return 0
        elif c == "x":
            o["x"] = True
        elif c in "cDCe":
            o[c] = a
        elif c == "q":
            o["q"] = format_quota(a or "")
        elif c in FLAGS:
            o["flags"] |= FLAGS[c]
    if not rest:
        out(VMODUSER_USAGE)
        return 255
    if "@" not in rest[0]:
        return vmoduser_domain(ctx, rest[0].lower(), o)
    user, domain = parse_email(rest[0])
    pw = getpw(ctx, user, domain)
    if pw is None:
        out(f"no such user {user}@{domain}\n")
        return 255
    apply_mods(ctx, pw, domain, o)
    code = setpw(ctx, domain, pw)
    if code:
        raise fail(code)
    return 0


def apply_mods(ctx: Ctx, pw: PwEntry, domain: str, o: dict) -> None:
    if o["c"]:
        kept = o["c"].replace(":", "")
        pw.gecos = kept + o["c"][len(kept):]
    if o["D"]:
        pw.dir = o["D"]
    if o["C"]:
        pw.passwd = mkpasswd(o["C"])
    elif o["e"]:
        pw.passwd = o["e"]
    if o["x"]:
        pw.gid = 0
    pw.gid |= o["flags"]
    if o["q"] is not None:
        pw.quota = o["q"]
        _, _, uid, gid, _ = Assign(ctx).get(domain)  # type: ignore[misc]
        update_maildirsize(pw.dir, pw.quota, uid, gid)


def vmoduser_domain(ctx: Ctx, domain: str, o: dict) -> int:
    """The domain-wide form: this vpopmail build dies with SIGSEGV (exit 139)."""
    entry = Assign(ctx).get(domain)
    lines = read_vpasswd(entry[4]) if entry else []
    if not lines:
        return 0
    if o["q"] is not None:  # update_maildirsize() also sets umask(VPOPMAIL_UMASK)
        os.umask(0o077)
        first = PwEntry(lines[0])
        update_maildirsize(first.dir, o["q"], entry[2], entry[3])  # type: ignore[index]
    # vauth_setpw() fopen()s vpasswd.bak.<pid> with the caller's umask, then dies in
    # vcdb_strip_char(pw_clear_passwd == NULL) before writing anything
    fd = os.open(f"{entry[4]}/vpasswd.bak.{os.getpid()}",  # type: ignore[index]
                 os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    os.close(fd)
    import resource
    import signal
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    sys.stdout.flush()
    signal.signal(signal.SIGSEGV, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGSEGV)
    return 139


# ---------------------------------------------------------------- vpasswd

def tool_vpasswd(ctx: Ctx, argv: list[str]) -> int:
    opts, rest = getopt(ctx, argv, "vr::")
    pw_clear, random = "", False
    for c, a in opts:
        if c == "v":
            version_line()
        elif c == "r":
            random = True
            size = 12 if a is None else atoi(a)
            if size > 128:
                raise fail(-27)
            pw_clear = random_pass(size)
    if len(rest) > 1:
        if random:
            out("Error: don't use -r option when giving password on command line\n")
            return 255
        pw_clear = rest[1]
    if not rest or not rest[0]:
        out("vpasswd: usage: [options] email_address [password]\n"
            "options: -v (print version number)\n"
            "         -r[len] (generate a len (default 12) char random password)\n")
        return 255
    user, domain = parse_email(rest[0])
    if not pw_clear:
        pw_clear = getpass_pair(rest[0].lower())
    code = change_password(ctx, user, domain, pw_clear)
    if code:
        out(f"Error: {ERR[code]}\n")
        if code == -70:
            out(f"A password policy is in place:\n\t{PW_POLICY}\n")
        return code & 0xFF
    if random:
        out(f"Random password: {pw_clear}\n")
    return 0


def change_password(ctx: Ctx, user: str, domain: str, clear: str) -> int:
    if len(clear) > 128:
        return -27
    if not clear:
        return -70
    pw = getpw(ctx, user, domain) if domain else None
    if pw is None or pw.gid & 1:
        return -1
    pw.passwd = mkpasswd(clear)
    return setpw(ctx, domain, pw)


# ---------------------------------------------------------------- vsetuserquota

def tool_vsetuserquota(ctx: Ctx, argv: list[str]) -> int:
    opts, rest = getopt(ctx, argv, "v")
    for c, _ in opts:
        if c == "v":
            version_line()
    if len(rest) < 2 or not rest[0] or not rest[1]:
        out("vsetuserquota: [options] email_address|domain_name quota\noptions:\n"
            "-v (print version number)\n\n"
            "If you specify a domain name rather than an email address,\n"
            "the quota will be applied to all users in that domain\n")
        return 255
    quota = "".join(c.upper() if c.islower() and c.isascii() else c for c in rest[1])
    if "@" not in rest[0]:
        domain = rest[0].lower()
        entry = Assign(ctx).get(domain)
        if entry is None:
            raise fail(-11)
        for line in read_vpasswd(entry[4]):
            code = setuserquota(ctx, line.split(":", 1)[0], domain, quota)
            if code:
                raise fail(code)
        return 0
    user, domain = parse_email(rest[0])
    if Assign(ctx).get(domain) is None:
        raise fail(-11)
    code = setuserquota(ctx, user, domain, quota)
    if code:
        raise fail(code)
    return 0


# ---------------------------------------------------------------- vuserinfo

VUSERINFO_USAGE = """\
vuserinfo: usage: [options] email_address
options: -v (print version number)
         -a (display all fields, this is the default)
         -n (display name field)
         -p (display crypted password)
         -u (display uid field)
         -g (display gid field)
         -c (display comment field)
         -d (display directory)
         -q (display quota field)
         -Q (display quota usage)
         -l (display last authentication time)
         -D domainname (show all users on this domain)
"""


def tool_vuserinfo(ctx: Ctx, argv: list[str]) -> int:
    opts, rest = getopt(ctx, argv, "avnpugcdqQClD:")
    show: set[str] = set()
    domain = ""
    for c, a in opts:
        if c == "?":
            out(VUSERINFO_USAGE)
            return 255
        if c == "v":
            version_line()
        elif c == "D":
            domain = (a or "").lower()
        else:
            show.add(c)
    if not show - {"a"}:
        show = {"a"}
    if domain:
        return vuserinfo_domain(ctx, domain, show)
    if not rest:
        out(VUSERINFO_USAGE)
        return 255
    user, domain = parse_email(rest[0])
    pw = getpw(ctx, user, domain)
    if pw is None:
        out(f"no such user {user}@{domain}\n" if domain else f"no such user {user}\n")
        return 255
    display_user(pw, show, "")
    return 0


def vuserinfo_domain(ctx: Ctx, domain: str, show: set[str]) -> int:
    entry = Assign(ctx).get(domain)
    if entry is None:
        return 0
    for pw in getall(ctx, entry[4]):
        out(SEP42 + "\n")
        display_user(pw, show, "(null)")
    return 0


def display_user(pw: PwEntry, show: set[str], clear: str) -> None:
    if "a" in show:
        out(f"name:   {pw.name}\npasswd: {pw.passwd}\nclear passwd: "
            f"{pw.clear if pw.clear is not None else clear}\n"
            f"comment/gecos: {pw.gecos}\nuid:    {pw.uid}\ngid:    {pw.gid}\n"
            f"flags:  {pw.gid}\ngecos: {pw.gecos}\n")
        if pw.gid == 0:
            out("limits: No user limits set.\n")
        else:
            out("limits:\n" + "".join(f"        {t}\n" for b, t in LIMIT_TEXT if pw.gid & b))
        out(f"dir:       {pw.dir}\nquota:     {pw.quota}\nusage:     {usage_text(pw)}\n")
        display_lastlogin(pw)
        return
    fields = [("n", pw.name), ("p", pw.passwd), ("u", str(pw.uid)), ("g", str(pw.gid)),
              ("c", pw.gecos), ("d", pw.dir), ("q", pw.quota)]
    out("".join(v + "\n" for k, v in fields if k in show))
    if "Q" in show:
        out(usage_text(pw) + "\n")
    if "l" in show:
        display_lastlogin(pw)


def usage_text(pw: PwEntry) -> str:
    if pw.quota == "NOQUOTA":
        return "NOQUOTA"
    return f"{quota_percent(pw.dir + '/Maildir', format_quota(pw.quota))}%"


def quota_percent(maildir: str, quota: str) -> int:
    size_q = count_q = 0
    for p in quota.split(","):
        if p.endswith("S"):
            size_q = atoi(p)
        elif p.endswith("C"):
            count_q = atoi(p)
    used = cnt = 0
    for line in read_lines(maildir + "/maildirsize")[1:]:
        parts = line.split()
        used += atoi(parts[0]) if parts else 0
        cnt += atoi(parts[1]) if len(parts) > 1 else 0
    pct = 0
    if size_q:
        pct = used * 100 // size_q
    if count_q:
        pct = max(pct, cnt * 100 // count_q)
    return max(0, min(pct, 100))


def display_lastlogin(pw: PwEntry) -> None:
    import time
    path = pw.dir + "/lastauth"
    try:
        mtime = int(os.stat(path).st_mtime)
    except OSError:
        mtime = 0
    try:
        with open(path, encoding="latin-1") as f:
            ip: str | None = f.readline() or path
    except OSError:
        ip = None
    if mtime == 0 or ip is None or ip == NULL_REMOTE_IP:
        if mtime:
            out(f"account created: {time.asctime(time.localtime(mtime))}\n")
        out("last auth: Never logged in\n")
    else:
        out(f"last auth: {time.asctime(time.localtime(mtime))}\nlast auth ip: {ip}\n")


# ---------------------------------------------------------------- vdominfo

VDOMINFO_USAGE = """\
vdominfo: usage: [options] [domain]
options: -v (print version number)
         -a (display all fields, this is the default)
         -n (display domain name)
         -u (display uid field)
         -g (display gid field)
         -d (display domain directory)
         -t (display total users)
         -r (display real domain)
"""


def tool_vdominfo(ctx: Ctx, argv: list[str]) -> int:
    opts, rest = getopt(ctx, argv, "vanugdtr")
    show: set[str] = set()
    for c, _ in opts:
        if c == "?":
            out(VDOMINFO_USAGE)
            return 255
        if c == "v":
            version_line()
        else:
            show.add(c)
    if not show - {"a"}:
        show = {"a"}
    assign = Assign(ctx)
    if not assign.exists:
        out(f"Can't get domain entries - {ERR[-37]}\n")
        return 219 if rest else 255
    if rest:
        return vdominfo_one(ctx, assign, rest[0].lower(), show)
    for e in assign.entries:
        if "." in e[0]:
            display_domain(ctx, e, show, all_domains=True)
            out("\n")
    return 0


def domain_entries(assign: Assign, domain: str) -> list[tuple[str, str, int, int, str]]:
    """get_domain_entries(domain): assign lines (names with a '.') of its real domain.

    The argument is first mapped to its real domain through users/cdb (vget_assign), so
    an alias without a dot (`nodot`) still finds its real domain, but is never listed.
    """
    entry = assign.get(domain)
    real = entry[1] if entry else domain
    return [e for e in assign.entries if "." in e[0] and e[1] == real]


def vdominfo_one(ctx: Ctx, assign: Assign, domain: str, show: set[str]) -> int:
    entries = domain_entries(assign, domain)
    if not entries:
        out("Invalid domain name\n")
        return 245
    for e in entries:
        if e[0] == e[1]:
            display_domain(ctx, e, show, all_domains=False)
    out("".join(f"alias: {e[0]}\n" for e in entries if e[0] != e[1]))
    return 0


def display_domain(ctx: Ctx, e: tuple[str, str, int, int, str], show: set[str],
                   all_domains: bool) -> None:
    name, real, uid, gid, ddir = e
    label = f"{name} (alias of {real})" if all_domains and name != real else name
    if "a" in show:
        out(f"domain: {label}\nuid:    {uid}\ngid:    {gid}\ndir:    {ddir}\n"
            f"users:  {user_count(ddir, uid, gid)}\n")
        return
    for k, v in (("n", label), ("u", str(uid)), ("g", str(gid)), ("d", ddir)):
        if k in show:
            out(v + "\n")
    if "t" in show:
        out(f"{user_count(ddir, uid, gid)}\n")
    if "r" in show:
        out(real + "\n")


def user_count(ddir: str, uid: int, gid: int) -> int:
    """open_big_dir/close_big_dir: reading the count rewrites .dir-control."""
    dc = DirControl(ddir + "/.dir-control")
    dc.write(uid, gid)
    return dc.cur


# ---------------------------------------------------------------- valias

VALIAS_USAGE = """\
valias: usage: [options] email_address \n\
options: -v ( display the vpopmail version number )
         -n ( show alias names, use just domain )
         -s ( show aliases, can use just domain )
         -d ( delete alias )
         -i alias_line (insert alias line)

Example: valias -i fred@inter7.com bob@inter7.com
         (adds alias from bob@inter7.com to fred@inter7.com
"""


def tool_valias(ctx: Ctx, argv: list[str]) -> int:
    opts, rest = getopt(ctx, argv, "vnsdi:")
    action, line = "s", ""
    for c, a in opts:
        if c == "?":
            out(VALIAS_USAGE)
            return 254
        if c == "v":
            version_line()
        elif c == "i":
            action, line = "i", a or ""
        elif c in "nsd":
            action = c
    if not rest:
        out(VALIAS_USAGE)
        err("must supply alias email address\n")
        return 255
    target = rest[0].lower()
    if action == "n" and "@" in target:
        err("Please enter domain name only.\n")
        return 255
    if action == "i":
        return valias_insert(ctx, target, line)
    if action == "d":
        return valias_delete(ctx, target)
    return valias_show(ctx, target, names_only=action == "n")


def alias_file(ddir: str, alias: str) -> str:
    return f"{ddir}/.qmail-{alias.replace('.', ':')}"


def valias_entry(ctx: Ctx, domain: str) -> tuple[str, str, int, int, str] | None:
    entry = Assign(ctx).get(domain)
    if entry is None:
        out("invalid domain, not in qmail assign file\n")
    return entry


def valias_insert(ctx: Ctx, target: str, line: str) -> int:
    alias, _, domain = target.partition("@")
    if not valid_chars(alias, USER_OK):
        err(f"user invalid {alias}\nError: Illegal username\n")
        return 255
    if len(alias) > 64 or len(domain) > 96:  # valias_select() and valias_insert() refuse
        return 0                                # both silently, and valias exits 0
    entry = valias_entry(ctx, domain)
    if entry is not None and line in read_lines(alias_file(entry[4], alias)):
        err(f"Error: alias {target} -> {line} already exists.\n")
        return 255
    if len(line.encode("utf-8", "surrogateescape")) >= 160:  # MAX_ALIAS_LINE: the same
        return 0
    if entry is None:
        out("invalid domain, not in qmail assign file\n")
        return 0
    _, real, uid, gid, ddir = entry
    path = alias_file(ddir, alias)
    os.umask(0o077)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8", errors="surrogateescape") as f:
        f.write(line + "\n")
    chown(path, uid, gid)
    return 0


def valias_delete(ctx: Ctx, target: str) -> int:
    alias, _, domain = target.partition("@")
    entry = valias_entry(ctx, domain)
    if entry is not None:
        try:  # noqa: SIM105 (no contextlib import: startup time)
            os.unlink(alias_file(entry[4], alias))
        except OSError:
            pass
    return 0


def valias_show(ctx: Ctx, target: str, names_only: bool) -> int:
    alias, at, domain = target.partition("@")
    if not at:
        alias, domain = "", target
    entry = valias_entry(ctx, domain)
    real = entry[1] if entry else domain
    found = []
    if entry is not None:
        for fn in sorted(os.listdir(entry[4])):
            if fn.startswith(".qmail-") and fn != ".qmail-default":
                name = fn[7:].replace(":", ".")
                if not alias or name == alias:
                    found.append((name, read_raw_lines(entry[4] + "/" + fn)))
    if not found:
        if not names_only:
            out(f"No aliases {alias}@{real} found\n" if alias
                else f"No aliases found for domain {real}\n")
        return 255
    for name, lines in found:
        if names_only:
            out(name + "\n")
        else:
            out("".join(f"{name}@{real} -> {x}\n" for x in lines))
    return 0


def read_raw_lines(path: str) -> list[str]:
    """The lines valias_select_next() returns: fgets() into alias_line[MAX_ALIAS_LINE], so
    a line of 159 bytes or more comes in 159-byte pieces (a lone newline: an empty one)."""
    with open(path, "rb") as f:
        data = f.read()
    lines, pos = [], 0
    while pos < len(data):
        end = data.find(b"\n", pos, pos + 159)
        end = min(len(data), pos + 159) if end < 0 else end + 1
        lines.append(data[pos:end].split(b"\n")[0].decode("utf-8", "surrogateescape"))
        pos = end
    return lines


# ---------------------------------------------------------------- vaddaliasdomain

VADDALIAS_USAGE = """\
vaddaliasdomain: usage: [options] real_domain alias_domain
options: -v (print version number)
note: for backward compatability, you can swap real_domain and alias_domain.
"""


def tool_vaddaliasdomain(ctx: Ctx, argv: list[str]) -> int:
    opts, rest = getopt(ctx, argv, "v")
    for c, _ in opts:
        if c == "v":
            version_line()
    if len(rest) < 2:
        out(VADDALIAS_USAGE)
        return 255
    first, second = rest[0].lower(), rest[1].lower()
    if first == second:
        out("Error: real domain and alias domain are the same!\n" + VADDALIAS_USAGE)
        return 255
    assign = Assign(ctx)
    e1, e2 = assign.get(first), assign.get(second)
    if e1 and e2:
        out("Error: Both domains already exist, unable to create alias.\n")
        return 255
    if not e1 and not e2:
        out(f"Error: Neither '{rest[0]}' or '{rest[1]}'  exist, unable to create alias.\n")
        return 255
    real, alias = (e1, second) if e1 else (e2, first)
    if not valid_chars(alias, DOMAIN_OK):
        raise fail(-12)
    os.umask(0o077)
    _, realname, uid, gid, ddir = real  # type: ignore[misc]
    assign.add(alias, realname, uid, gid, ddir)
    return 0


# ---------------------------------------------------------------- vchkpw

def tool_vchkpw(ctx: Ctx, argv: list[str]) -> int:
    data = read_fd3()
    if data is None:
        port = os.environ.get("TCPLOCALPORT", "0")
        err(f"vchkpw-{atoi(port)}: vchkpw is only for talking with qmail-popup and "
            "qmail-pop3d. It is not for runnning on the command line.\n")
        return 11
    parts = data.split(b"\0")
    login = parts[0].decode("utf-8", "surrogateescape")
    password = parts[1].decode("utf-8", "surrogateescape") if len(parts) > 1 else ""
    if not login:
        return 12
    if not password:
        return 13
    try:
        user, domain = parse_email(login, ValueError())
    except ValueError:
        return 20
    entry = Assign(ctx).get(domain) if domain else None
    pw = getpw(ctx, user, domain) if entry else None
    if pw is None or not check_password(password, pw.passwd):
        return 3
    kind = connection_type(argv)
    if pw.gid & {"pop": 2, "smtp": 2048, "imap": 8}[kind]:
        return 1
    return vchkpw_success(ctx, entry, pw, login.lower(), kind, argv)  # type: ignore[arg-type]


def caller_environ() -> dict[str, str]:
    """The environment exactly as this process received it (order included).

    os.environ is not that: in the C locale Python adds LC_CTYPE=C.UTF-8 (PEP 538 locale
    coercion, which -E cannot turn off), and the real vchkpw hands its child only what it
    got plus USER/HOME/SHELL/VPOPUSER.  /proc/self/environ still holds the original block.
    """
    try:
        with open("/proc/self/environ", "rb") as f:
            raw = f.read()
    except OSError:
        return dict(os.environ)
    env: dict[str, str] = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            env.setdefault(os.fsdecode(key), os.fsdecode(value))
    return env


def read_fd3() -> bytes | None:
    try:
        chunks = []
        total = 0
        while total < 155:
            b = os.read(3, 155 - total)
            if not b:
                break
            chunks.append(b)
            total += len(b)
        return b"".join(chunks)
    except OSError:
        return None


def check_password(clear: str, stored: str) -> bool:
    if not stored:
        return False
    result = crypt(clear, stored)
    return result is not None and result == stored


def connection_type(argv: list[str]) -> str:
    port = os.environ.get("TCPLOCALPORT")
    if port is not None:
        p = atoi(port)
        if p in (25, 465, 587):
            return "smtp"
        if p in (143, 993):
            return "imap"
        return "pop"
    prog = argv[0] if argv else ""
    if "true" in prog:
        return "smtp"
    return "imap" if "imap" in prog else "pop"


def vchkpw_success(ctx: Ctx, entry: tuple[str, str, int, int, str], pw: PwEntry,
                   login: str, kind: str, argv: list[str]) -> int:
    uid, gid = entry[2], entry[3]
    ip = os.environ.get("TCPREMOTEIP", "")
    # vset_lastauth() at login: fails silently if the user's directory is gone
    try:  # noqa: SIM105 (no contextlib import: startup time)
        write_in_place(pw.dir + "/lastauth", ip.encode(), 0o600, uid, gid)
    except OSError:
        pass
    if kind != "smtp" and not os.path.isdir(pw.dir):  # vmake_maildir() after the chdir
        try:  # noqa: SIM105 (no contextlib import: startup time)
            make_user_dir(pw.dir, uid, gid)
        except OSError:
            pass
    env = caller_environ()
    env.update(USER=pw.name, HOME=pw.dir, SHELL="NOLOGIN", VPOPUSER=login)
    if kind != "smtp":
        os.setgid(gid)
        os.setuid(uid)
        os.chdir(pw.dir)
    if not argv:
        return 0
    sys.stdout.flush()
    try:
        os.execvpe(argv[0], argv, env)
    except OSError:
        return 111
    return 0


# ---------------------------------------------------------------- qmail-newu

def tool_qmail_newu(ctx: Ctx, argv: list[str]) -> int:
    if not os.path.exists(ctx.assign):
        err("qmail-newu: fatal: unable to read users/assign\n")
        return 111
    return qmail_newu(ctx)


TOOLS = {
    "vadddomain": tool_vadddomain, "vdeldomain": tool_vdeldomain,
    "vadduser": tool_vadduser, "vdeluser": tool_vdeluser, "vmoduser": tool_vmoduser,
    "vpasswd": tool_vpasswd, "vsetuserquota": tool_vsetuserquota,
    "vuserinfo": tool_vuserinfo, "vdominfo": tool_vdominfo, "valias": tool_valias,
    "vaddaliasdomain": tool_vaddaliasdomain, "vchkpw": tool_vchkpw,
    "qmail-newu": tool_qmail_newu,
}


def main(argv: list[str]) -> int:
    """Dispatch: argv = [PROGPATH, VPOPDIR, QMAILDIR, args...]."""
    if len(argv) < 3:
        sys.stderr.write("usage: vpopmail_standin.py PROGPATH VPOPDIR QMAILDIR [args...]\n")
        return 100
    ctx = Ctx(argv[0], argv[1], argv[2])
    tool = TOOLS.get(os.path.basename(argv[0]))
    if tool is None:
        sys.stderr.write(f"vpopmail_standin: unknown tool {argv[0]}\n")
        return 100
    try:
        try:
            code = tool(ctx, argv[3:])
        except Exit as e:
            code = e.code
        sys.stdout.flush()
    except BrokenPipeError:  # a C tool writing into a closed pipe dies of SIGPIPE, silently
        import _signal
        _signal.signal(_signal.SIGPIPE, _signal.SIG_DFL)
        os.kill(os.getpid(), _signal.SIGPIPE)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
