"""One config, one Trainer, used by every model package."""
