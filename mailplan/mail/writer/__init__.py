"""Target-side Maildir writer: a self-contained stdlib-only script driven over stdin/stdout.

mailplan sends its source to the target and runs it with the host's Python, as
``python3 -I -S -c "<version check; exec of argv[1]>" "<source>"`` (mailplan.interpreter).
That source is the modules of this package joined into one script without the imports
they make of each other (:mod:`mailplan.mail.writer.bundle`): it imports nothing from
mailplan and needs Python 3.7 or newer. In mailplan's own process they are ordinary
modules (:mod:`mailplan.mail.agent` has the names mailplan and its tests use).

Protocol: every frame is ``type (1 byte) + length (4 bytes, big endian) + payload``.
Requests (only those marked * get a reply, so a mailbox streams without round trips):

``O``* open      JSON ``{"root", "uid", "gid"}`` (or ``"owner": "parent"``: the owner of the
                 Maildir's parent, the user directory vadduser made, whom the writer
                 runs as from then on: a Maildir of another owner later is refused,
                 saying ``(one writer per owner)``): select a Maildir
                 (created 0700 if missing), delete stale tmp files (those of writers
                 no longer running: a process that got a dead writer's id since is
                 no writer) and append the ledger lines a killed writer owed (see
                 "mailplan-pending" below)
``F``  folder    JSON ``{"dir"}``: create ``.Name`` with cur/new/tmp and ``maildirfolder``,
                 and when it made the directory or its cur/ or new/ (no folder an IMAP
                 server opens was there), append ``dir TAB folder`` to the ledger,
                 durable at once (the folder's directories fsynced, then the ledger
                 and the Maildir: no batch's sync may follow);
                 with ``"also": [dir, ...]`` (earlier names of its directory, renamed by
                 hand since) the ledger lines under those count for it too
``B``  begin     payload = folder dir (``""`` = INBOX): open a new file in its tmp/
                 (see "Files in tmp/")
``D``  data      raw message bytes
``E``  end       JSON ``{"subdir", "name", "mtime"}``: check size and sha256 against the
                 name, set mtime/owner, and queue the file; an identity already present
                 (a file in new/cur or a ledger line) is discarded instead
``M``  message   a whole message in one frame, what ``B`` + ``D`` + ``E`` do (the common
                 case: one frame to read and no JSON per message): ``MESSAGE`` (flags:
                 1 = cur/, 2 = an mtime is given; folder dir length; name length; mtime)
                 + folder dir + name + message bytes
``S``* sync      make every queued file durable (one syncfs, or fsync per file where
                 syncfs is missing), link or rename each into new/ or cur/ without
                 overwriting (linkat; renameat2 RENAME_NOREPLACE, else link+unlink),
                 append the ledger, count the batch in ``maildirsize`` (a ``bytes
                 count`` line, as a delivery adds; where the file exists), sync
                 again, reply ``{"durable": [[dir, name]], "present": [[dir, name]]}``.
                 Renames and ledger happen under an ``flock`` of the Maildir directory;
                 a message another writer made visible meanwhile (the ledger grew) is
                 dropped and replied as present.
                 With payload JSON ``{"through": n}`` only the messages among the first
                 ``n`` ``E`` frames of the session are taken (later ones stay in tmp/,
                 invisible, for a later sync): the sender can go on streaming while it
                 checks the source before asking for a batch's sync.
                 A sync process (forked at the first ``S``: see "Cost per message") does
                 this while the agent goes on writing the next messages to tmp/, so the
                 disk flush and the renames overlap the stream; replies still come in
                 request order (any other request waits for pending syncs)
``L``* scan      ``{"folders": {dir: [[digest, occ]]}, "ledger": [[dir, digest, occ]]}``:
                 the identities in new/ and cur/ of every folder, or with payload JSON
                 ``{"dir": d}`` of folder ``d`` only. With ``{"dir": d, "known": true}``
                 (what an import asks): ``{"known": "DIGEST OCC\\n..."}``, the identities
                 this agent holds as present in folder ``d`` (its files and its ledger
                 lines, one of each) as one text: a fraction of the lists' memory on
                 both sides for a folder of many messages
``U``* subscribe JSON ``{"files": {filename: [lines]}}``: add missing lines (never drop any)
``K``* keywords  JSON ``{"dir", "keywords": [...]}``: the file-name letters of these IMAP
                 keywords in folder ``dir`` (dovecot's ``dovecot-keywords``, extended
                 with the missing ones): ``{"letters": {keyword: letter}}``. Courier
                 keeps keywords elsewhere: a message whose name carries keyword letters
                 also gets, right before the sync links it, a file named after it (its
                 name up to ``:``) in the folder's ``courierimapkeywords/``, one keyword
                 per line, as courier's ``maildir_kwSave`` writes one; courier folds such
                 files into its ``:list`` when it next reads the folder
``G``* flags     JSON ``{"dir", "add": "DIGEST OCC FLAGS\\n..."}``: add Maildir flags to
                 messages already in folder ``dir`` (flags a message got on the old
                 server after its import), all of a folder's in one request: each
                 file of such an identity in new/ or cur/ is renamed as an IMAP
                 client renames it, ``new/NAME`` -> ``cur/NAME:2,FLAGS`` and
                 ``cur/BASE:2,OLD`` -> ``cur/BASE:2,MERGED`` (the union, in ASCII
                 order, so keyword letters stay after the flags; nothing is removed),
                 never over an existing name (renameat2 RENAME_NOREPLACE, else
                 link+unlink, whose new name goes again when the old one vanished in
                 between); then cur/ and new/ are synced. FLAGS may hold keyword
                 letters (from ``K``): a message that gains one also gets, before its
                 rename, a courier update file with all its keywords (as at the
                 import), renamed over one courier has not read yet; not in a folder
                 courier-imap has opened (``courierimapuiddb``), whose keywords courier
                 keeps itself. A file renamed meanwhile (a mail client got there
                 first) is looked for once more, the folder read again; one gone
                 then, or not there at all, is passed over. A line may end in ``
                 SOURCE``, the message's flags and keyword letters on the source: the
                 ones the ledger's last flags line records for it are left out of
                 FLAGS (removed on the target by its user since), and once its flags
                 are there (renamed, or had them) ``dir TAB DIGEST TAB OCC TAB
                 SOURCE`` is appended to the ledger, durably, after the renames are;
                 FLAGS may then be empty (the source lost flags since that line: only
                 the new line is appended, where it differs, and no file is renamed,
                 so a flag that comes back later is a gain). Reply
                 ``{"renamed": n, "gone": n, "taken": n}`` (taken: the new name
                 exists; the file is left as it is)
``Z``* quota     recompute ``maildirsize`` totals when that file exists (vpopmail quota)
``Q``* quit      sync what is queued, reply, exit 0

Replies: ``R`` + JSON, or ``X`` + error text ``TYPE: message`` (the agent then exits 1;
``Refused`` fails one Maildir only). The error goes to stderr too, as ``mailplan agent:
message`` (``mailplan agent: Refused: message`` for a refusal): a sender whose write met
the pipe the agent closed by ending reads it there. A file is visible in
new/ or cur/ only after it is complete and durable. When the input ends (or a request
fails) before a sync, the agent removes its own files from tmp/ as it exits; only a
killed agent leaves files there, and the next ``O`` removes them. Directories are created
0700 and files 0600, owned by the given uid/gid (as vpopmail creates them); existing files
are never replaced.

Files in tmp/: where the filesystem has ``O_TMPFILE`` (Linux ext4, xfs, btrfs, tmpfs), a
message is written to a file with no name in the folder's tmp/, kept open, and given its
name in new/ or cur/ by ``linkat`` of ``/proc/AGENT/fd/N`` once durable (relative to a
directory fd the sync process keeps open on ``/proc/AGENT/fd``: the kernel then walks one
name per message, not four; kernel time of 15,000 links: 0.23-0.33 s against 0.28-0.37 s):
no name is made in tmp/ and removed again (measured on ext4 with and without a journal,
50,000 small messages: 3.4-5.0 s against 4.9-6.1 s, a quarter less kernel time), and a
killed agent leaves nothing behind, the kernel frees the file. While it holds such files
the agent keeps an empty marker ``mailplan-PID-SEQ.tmp`` in the Maildir's tmp/, so that
another agent's ``O`` waits for it and cleans up after it as for named files. Files stay
open until their batch is linked, so at most about half the open-file limit are held (the
agent raises its soft limit to the hard one, at most 65,536); past that, and where
``O_TMPFILE`` or /proc is missing, a message is a named file ``mailplan-PID-SEQ.tmp``
renamed into place.
The ledger ``mailplan-ledger`` (``dir TAB sha256 TAB occurrence`` per line) remembers
every imported message, so one the user deleted later is not brought back (after the
line of one imported into cur/, a flags line ``dir TAB sha256 TAB occurrence TAB FLAGS``:
its Maildir flags and keyword letters, as the source had them; ``G`` appends them too), and with a
line ``dir TAB folder`` every folder a writer made, so a folder the user deleted is not
made again when the state file that records it is lost (two fields: no reader of the
ledger, of this version or an earlier one, takes it for a message's line). An append to
it (or to ``maildirsize``) cut short, a full disk, is taken back, and one that follows a
line left without its end (a killed writer's, a file written by hand) starts a new line.
Before a sync makes a batch visible, its identities (``dir NUL sha256 NUL occurrence``
each, NUL-separated) go to ``mailplan-pending-PID`` (durable with the batch, removed
once its ledger lines are): a writer killed between its renames and its ledger append
leaves messages visible without ledger lines, and the next ``O`` appends the lines of
those it finds visible (by identity: a mail reader may have renamed one since).

Memory: the identities of each folder the agent writes (its files in new/ and cur/, its
ledger lines, the messages queued) are held to discard one already present, each as the
digest's 32 bytes and the occurrence's digits (``key``): about 128 bytes a message with
its place in the set. The ledger is read line by line and a folder's files as the
directory is read (never listed whole; so is every folder for ``Z``'s quota recount),
and the ``known`` reply is written a thousand lines at a time, so a folder of many
messages costs only its set.

Cost per message (the hot path): frames come from a 1 MiB stdin buffer (the pipe is
enlarged to 1 MiB where allowed), so reading costs one read(2) per megabyte, not two per
frame; a held message is one ``M`` frame (a struct, not JSON), written, hashed and
checked in one call (no hasher object or state list of its own); files are created,
unlinked and renamed relative to directory fds kept open for the session, so the kernel
does not walk the Maildir path each time. Syncs and renames run in a second process
forked from the agent, not in a thread: a thread shares the interpreter lock, and while
it renamed a batch (a few milliseconds per thousand files) the writing thread got the
lock only every switch interval, so the pipe filled and the sender stalled too (measured
with the agent alone replaying 12.5k small messages: wall 1.0-1.2 s -> 0.9 s, for about
10% more CPU). The sync process dies with the agent (``PR_SET_PDEATHSIG`` where Linux has
it, else at the end of its current batch, when it finds its job pipe closed), and the
agent stops with an error when the sync process dies (SIGCHLD), so the sender never
waits for a reply that cannot come. What is left is
what the delivery discipline needs: open, write, utime, fchown (as root), link, close.
"""

from __future__ import annotations
