"""mailplan: plan and apply a sendmail -> qmail/vpopmail migration from a YAML spec."""

__version__ = "0.1.0"
