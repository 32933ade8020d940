"""soap-service: secure-message delivery over a SOAP 1.1 API."""

from soap_service.compat import make_spyne_importable

# Before any module of the package imports spyne (compat.py says why).
make_spyne_importable()
