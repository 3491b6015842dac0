"""Entry point for ``python -m mailplan`` and the ``mailplan`` command (:func:`run`)."""

import sys


def run() -> None:
    """Load the CLI and run it. Loading takes about a second: a Ctrl-C meanwhile ends
    mailplan with one line and exit 130, as later, not a traceback of the import."""
    try:
        from mailplan.cli import main
    except KeyboardInterrupt:
        sys.stderr.write("Error: interrupted while starting: nothing was done\n")
        sys.exit(130)
    main()


if __name__ == "__main__":
    run()
