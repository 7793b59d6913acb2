"""Command-line dialects shared by the model packages."""
