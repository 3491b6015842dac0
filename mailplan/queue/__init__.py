"""``mailplan queue``: inspect, clean and repair the qmail queue on a host.

What qmail-qstat, qmail-qread, qmHandle and queue_repair.py do, over mailplan's
connections. The queue is read in one command by a small program sent to the host
(:mod:`~mailplan.queue.agent`); the pure parts sort its files by message
(:mod:`~mailplan.queue.grouping`) and turn them into messages, counts and problems
(:mod:`~mailplan.queue.model`, :mod:`~mailplan.queue.check`); the operations
(:mod:`~mailplan.queue.ops`) change the queue only with qmail-send stopped
(:mod:`~mailplan.queue.control`). :mod:`~mailplan.queue.cli` is the click group.
"""
