"""Benchmarks of soap-service; `make bench` runs `python -m bench.send_message`."""

# The bare Spyne baseline imports spyne directly: the package first, so that spyne imports
# on Python 3.12 and 3.13 (soap_service/compat.py).
import soap_service  # noqa: F401
