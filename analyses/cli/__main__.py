"""``python -m isletbayes.analyses.cli``: the same command line as ``isletbayes``."""

from isletbayes.analyses.cli import run

run()
