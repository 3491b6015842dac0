"""Mail moving: streaming mbox reading, Maildir++ naming, and the target-side writer agent.

Data flows one way: source mbox bytes -> :mod:`mailplan.mail.mbox` (events per message)
-> :mod:`mailplan.mail.convert` (names and framing) -> :mod:`mailplan.mail.agent_client`
-> the stdlib-only :mod:`mailplan.mail.writer` running on the target, which writes the Maildir.
"""
