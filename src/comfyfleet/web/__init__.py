"""Web pieces both roles share: problem+json errors, auth, JSON bodies, request ids."""
