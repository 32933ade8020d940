"""Which server a notification goes to: the configured relay, or the recipient domain's
mail exchangers (MX records by preference; the domain itself if it has none)."""

from __future__ import annotations

import dns.exception
import dns.resolver
import idna

from soap_service.delivery.smtp import Route
from soap_service.errors import DeliveryError

SMTP_PORT = 25


class NoRoute(DeliveryError):
    """The domain has no mail server, and never will: a permanent failure."""


class RouteUnknown(DeliveryError):
    """DNS did not answer: try again later."""


class Router:
    def __init__(self, relay: tuple[str, int] | None) -> None:
        self._relay = Route(relay[0], relay[1], relay=True) if relay else None

    def routes(self, address: str) -> list[Route]:
        """The servers to try, best first."""
        return self.routes_for_domain(address.rpartition("@")[2])

    def routes_for_domain(self, domain: str) -> list[Route]:
        if self._relay is not None:
            return [self._relay]
        return self.exchangers(domain)

    def exchangers(self, domain: str) -> list[Route]:
        """The domain's own mail servers, relay or not (an organisation's gateway)."""
        try:
            ascii_domain = idna.encode(domain).decode("ascii")
        except idna.IDNAError as exc:
            raise NoRoute(f"{domain} is not a valid domain") from exc
        try:
            answer = dns.resolver.resolve(ascii_domain, "MX")
        except dns.resolver.NXDOMAIN as exc:
            raise NoRoute(f"the domain {ascii_domain} does not exist") from exc
        except dns.resolver.NoAnswer:
            return [Route(ascii_domain, SMTP_PORT)]  # RFC 5321: the domain itself
        except dns.exception.DNSException as exc:
            raise RouteUnknown(
                f"DNS lookup for {ascii_domain} failed: {type(exc).__name__}"
            ) from exc
        exchangers = sorted(answer, key=lambda record: record.preference)
        hosts = [str(record.exchange).rstrip(".") for record in exchangers]
        if hosts == [""]:  # "null MX" (RFC 7505): the domain accepts no mail
            raise NoRoute(f"the domain {ascii_domain} accepts no mail")
        return [Route(host, SMTP_PORT) for host in hosts]
