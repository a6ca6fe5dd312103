"""``python -m bilrp.architectures``: print the Markdown table of the registered families (for the docs)."""

from . import architecture_table

print(architecture_table(), end="")
