"""Entry point for ``python -m mailplan``."""

from mailplan.cli import main

if __name__ == "__main__":
    main()
