"""ACC: a research workbench for studying how changes to gradient flow shape autoencoders."""

__version__ = "0.1.0"
