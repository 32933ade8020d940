"""An operator's organisation commands for gateways (issue 14): where an organisation's
confidential messages go, with which TLS policy and CA, and whether an unreachable gateway
falls back to a notification; shown, changed and refused as a person reads them."""

from __future__ import annotations

from pathlib import Path

import trustme

from tests.support import TlsFiles
from tests.test_cli import cli_for


def test_gateways_are_set_shown_changed_and_removed(tmp_path: Path, tls: TlsFiles) -> None:
    cli = cli_for(tmp_path, tls)
    cli.cli("init")
    ca = tmp_path / "gateway-ca.pem"
    trustme.CA(organization_name="Firm gateway CA").cert_pem.write_to_path(str(ca))

    added = cli.cli(
        "organisation", "add", "firm", "--domain", "firm.example", "--gateway", "mx"
    ).stdout
    assert (
        "  gateway:     the domains' MX, enforced TLS (the system's CAs), fallback: none" in added
    )

    cli.cli(
        "organisation",
        "update",
        "firm",
        "--gateway",
        "mail.firm.example:2525",
        "--tls",
        "mutual",
        "--gateway-ca",
        str(ca),
        "--fallback",
        "notification",
    )
    shown = cli.cli("organisation", "show", "firm").stdout
    assert "  gateway:     mail.firm.example:2525, mutual TLS (CA OU=Testing CA #" in shown
    assert "fallback: notification" in shown
    assert "  domains:     firm.example" in shown

    # Changing one setting keeps the others; new domains replace the old ones.
    cli.cli(
        "organisation",
        "update",
        "firm",
        "--tls",
        "enforced",
        "--domain",
        "firm.ch",
        "--domain",
        "firm.example",
    )
    shown = cli.cli("organisation", "show", "firm").stdout
    assert "mail.firm.example:2525, enforced TLS (CA OU=Testing CA #" in shown
    assert "  domains:     firm.ch, firm.example" in shown

    cli.cli("organisation", "update", "firm", "--gateway", "none")
    assert (
        "gateway:     none (every recipient gets a notification)"
        in cli.cli("organisation", "show", "firm").stdout
    )


def test_bad_gateway_settings_are_refused_and_change_nothing(tmp_path: Path, tls: TlsFiles) -> None:
    cli = cli_for(tmp_path, tls)
    cli.cli("init")
    cli.cli("organisation", "add", "firm", "--domain", "firm.example")
    cli.cli("organisation", "add", "other", "--domain", "other.example")
    before = cli.cli("organisation", "show", "firm").stdout
    cases = [
        (("--gateway", "mail.firm.example:99999"), 2, "the port must be a number from 1 to 65535"),
        (("--gateway", "not a host"), 2, "is not a domain name"),
        (("--tls", "mutual"), 1, "--tls, --gateway-ca and --fallback need --gateway"),
        (("--gateway", "mx", "--gateway-ca", "/nonexistent"), 1, "cannot read /nonexistent"),
        (("--domain", "other.example"), 1, "other.example belongs to the organisation 'other'"),
    ]
    for options, code, complaint in cases:
        refused = cli.cli("organisation", "update", "firm", *options, check=False)
        assert refused.returncode == code, (options, refused.stderr)
        assert complaint in refused.stderr, (options, refused.stderr)
    assert cli.cli("organisation", "show", "firm").stdout == before
    missing = cli.cli("organisation", "show", "nobody", check=False)
    assert (missing.returncode, missing.stderr.strip()) == (
        1,
        "soap-service: no organisation 'nobody'",
    )
