"""reachprobe: measure whether and how a platform is blocked from this network."""

__version__ = "0.1.0"
