"""Allow ``python -m bids_glm``."""

from bids_glm.cli.main import command

command()
