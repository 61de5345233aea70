"""The DeepDream Discord bot: `python -m bot` (or `dreambot`) runs it; see `bot.__main__`."""
