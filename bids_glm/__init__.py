"""bids-glm: first-level task-fMRI statistics as a BIDS-App."""

__version__ = "0.1.0"
