"""Read-only observation of hosts: each fact is a command plus a pure parser."""
