"""The ``taomm`` command line, installed as ``taomm.cli``: thin Typer commands over the library."""
