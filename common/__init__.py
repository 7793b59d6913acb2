"""Model-free plumbing shared by every package: logging, presets, launching, data-set tools."""
