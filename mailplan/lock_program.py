"""The program that holds a lock on its host: the target's apply lock and the queue lock
(:mod:`mailplan.target_lock`, :mod:`mailplan.queue.lock`).

It runs there with the host's Python (stdlib only, Python 3.7, as the Maildir writer:
:mod:`mailplan.interpreter` puts the version check before it), takes an exclusive,
non-blocking ``flock`` on the lock file, writes the holder's description into it, says
``locked`` and keeps the lock until its standard input (the connection of the run that
holds it) ends.
"""

from __future__ import annotations

#: Takes the lock (see :mod:`mailplan.target_lock`). argv: the directory, the lock
#: file's name, the holder's description (one line of ASCII JSON, which ``ps`` on the
#: host shows too), and how errors name the directory and the lock; stdin: nothing until it ends.
#: Answers one JSON line on stdout: {"locked": PATH, "pid": N}, or {"busy": PATH,
#: "holder": TEXT} (exit 75); an error is one line on stderr (interpreter.ERROR_PREFIX).
PROGRAM = r"""
import errno, fcntl, json, os, stat, time
PREFIX = 'mailplan agent: '
home, name, about, place, what = sys.argv[1:6]
def answer(doc, code=None):
    sys.stdout.write(json.dumps(doc) + '\n')
    sys.stdout.flush()
    if code is not None:
        sys.exit(code)
def fail(text):
    sys.stderr.write(PREFIX + text + '\n')
    sys.exit(1)
try:
    real = os.path.realpath(home)
    top = os.stat(real)
except OSError as exc:
    fail('cannot reach %s %s: %s' % (place, home, exc.strerror))
if not stat.S_ISDIR(top.st_mode):
    fail('%s %s is not a directory' % (place, home))
path = os.path.join(real, name)
try:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
except OSError as exc:
    fail('cannot open the %s %s: %s' % (what, path, exc.strerror))
st = os.fstat(fd)
if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
    fail('the %s %s is not a plain file of its own (a link?): remove it' % (what, path))
def take():
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
            fail('cannot lock %s: %s' % (path, exc.strerror))
        return False
# A holder writes its description just after it took the lock and empties the file just
# before it ends: a lock held with nothing said is taken again until one of the two.
said = b''
for _ in range(40):
    if take():
        break
    said = os.pread(fd, 65536, 0)
    if said.strip():
        answer({'busy': path, 'holder': said.decode('utf-8', 'replace')}, 75)
    time.sleep(0.05)
else:
    answer({'busy': path, 'holder': said.decode('utf-8', 'replace')}, 75)
if os.geteuid() == 0 and (st.st_uid, st.st_gid) != (top.st_uid, top.st_gid):
    os.fchown(fd, top.st_uid, top.st_gid)  # its directory's owner's: root or it
try:
    mine = json.loads(about)
except ValueError:
    mine = {}
mine['lock_pid'] = os.getpid()
os.ftruncate(fd, 0)
os.pwrite(fd, (json.dumps(mine, sort_keys=True) + '\n').encode(), 0)
answer({'locked': path, 'pid': os.getpid()})
while os.read(0, 65536):
    pass
os.ftruncate(fd, 0)
"""
