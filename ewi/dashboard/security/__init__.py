"""Who may see what on the dashboard: server-side sessions and the login throttle (`sessions`),
and the request-side rules (`access`): the signed session cookie, the role dependencies, the CSRF
token, the security headers and the access log."""
