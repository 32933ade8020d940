"""soap-service: secure-message delivery over a SOAP 1.1 API."""
