"""The delivery engine: notification e-mails out over enforced TLS, with retries."""
