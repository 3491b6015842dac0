"""The program that holds a lock on its host: the target's apply lock and the queue lock
(:mod:`mailplan.target_lock`, :mod:`mailplan.queue.lock`).

It runs there with the host's Python (stdlib only, Python 3.7, as the Maildir writer:
:mod:`mailplan.interpreter` puts the version check before it), takes an exclusive,
non-blocking ``flock`` on the lock file, writes the holder's description into it, says
``locked`` and keeps the lock until its standard input (the connection of the run that
holds it) ends. An apply may have it take over the lock from a holder that apply has
found abandoned (:meth:`mailplan.target_lock.Holder.abandoned`).
"""

from __future__ import annotations

#: Takes the lock (see :mod:`mailplan.target_lock`). argv: the directory, the lock
#: file's name, the holder's description (one line of ASCII JSON, which ``ps`` on the
#: host shows too), how errors name the directory and the lock, and optionally an
#: apply's id whose abandoned holder may be taken over
#: (:func:`mailplan.target_lock.lock_target`); stdin: nothing until it ends. Answers one
#: JSON line on stdout: {"locked": PATH, "pid": N} (with "ended": M, the pid of the
#: holder it ended, after a takeover), or {"busy": PATH, "holder": TEXT} (exit 75); an
#: error is one line on stderr (interpreter.ERROR_PREFIX).
#:
#: A takeover: when the lock is busy and the file's description has that apply id and a
#: ``lock_pid``, the program reads ``/proc/LOCK_PID/cmdline``: only when that process is
#: this program for the same lock file with a description of that apply id (its argv
#: carries both, so a pid reused since by anything else does not match) does it send it
#: SIGTERM, then wait up to 5 s for the lock. No /proc, a pid gone, another command,
#: a kill refused (another user's) or a lock not freed in time: it answers busy, naming
#: the holder as the file says then.
PROGRAM = r"""
import errno, fcntl, json, os, signal, stat, time
PREFIX = 'mailplan agent: '
home, name, about, place, what = sys.argv[1:6]
mark = sys.argv[6] if len(sys.argv) > 6 else ''
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
def marked(text):
    # the description's dict when it names the apply to take over from, else None
    try:
        doc = json.loads(text.decode('utf-8'))
    except ValueError:
        return None
    return doc if isinstance(doc, dict) and mark and doc.get('apply') == mark else None
def take_over(said):
    # end the holder of apply `mark` (this program for this lock file, checked in its
    # argv) and take the lock; the pid ended, or None (then the lock is not ours)
    doc = marked(said)
    pid = doc.get('lock_pid') if doc is not None else None
    if type(pid) is not int or pid <= 1 or pid == os.getpid():
        return None
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as fh:
            argv = fh.read().split(b'\0')
    except OSError:
        return None
    if name.encode() not in argv or not any(marked(arg) for arg in argv):
        return None
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        return None
    for _ in range(100):
        if take():
            return pid
        time.sleep(0.05)
    return None
# A holder writes its description just after it took the lock and empties the file just
# before it ends: a lock held with nothing said is taken again until one of the two.
said = b''
ended = None
for _ in range(40):
    if take():
        break
    said = os.pread(fd, 65536, 0)
    if said.strip():
        ended = take_over(said) if mark else None
        if ended is None:  # the holder as it is now (one taken over meanwhile)
            now = os.pread(fd, 65536, 0) if mark else b''
            said = now if now.strip() else said
            answer({'busy': path, 'holder': said.decode('utf-8', 'replace')}, 75)
        break
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
done = {'locked': path, 'pid': os.getpid()}
if ended:
    done['ended'] = ended
answer(done)
while os.read(0, 65536):
    pass
os.ftruncate(fd, 0)
"""
