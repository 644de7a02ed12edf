"""The dashboard's routes, one router per concern: logging in and out, the coordinators' pages,
their charts and exports, and the auditors' pages."""
