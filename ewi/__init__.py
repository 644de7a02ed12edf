"""EWI: early-warning indicators from pseudonymised weekly extracts."""

__version__ = "0.1.0"
