"""Benchmarks of soap-service; `make bench` runs `python -m bench.send_message`."""
