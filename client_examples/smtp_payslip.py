"""Send one payslip by mail over the SMTP channel, as a payroll program that speaks only
SMTP would: STARTTLS, AUTH, then an ordinary MIME mail.

    .venv/bin/python client_examples/smtp_payslip.py --to you@example.ch --attach payslip.pdf

Against `make run` it needs no other option: it reads the development account from
var/dev-account.txt and trusts the development certificate var/tls/dev-cert.pem.
"""

from __future__ import annotations

import argparse
import email.policy
import smtplib
import ssl
import uuid
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", default="127.0.0.1:2525", help="the SMTP channel")
    parser.add_argument("--username")
    parser.add_argument("--password")
    parser.add_argument("--ca-file", default="var/tls/dev-cert.pem", help="CA to trust")
    parser.add_argument("--from", dest="sender", default="payroll@firm.example")
    parser.add_argument("--to", default="anna.muster@example.ch", help="recipient address")
    parser.add_argument(
        "--type",
        choices=("c", "p", "r"),
        default="c",
        help="confidential, personal or registered: the subject's prefix",
    )
    parser.add_argument("--attach", type=Path, help="a file to attach (default: a sample PDF)")
    args = parser.parse_args()

    username, password = args.username, args.password
    if not (username and password):
        saved = dict(
            line.split("=", 1) for line in Path("var/dev-account.txt").read_text().splitlines()
        )
        username, password = saved["username"], saved["password"]

    mail = EmailMessage()
    mail["From"] = args.sender
    mail["To"] = args.to
    mail["Subject"] = f"<{args.type}> Your payslip"
    # The Message-ID is the message's Reference: sending the same mail again is safe.
    mail["Message-ID"] = make_msgid(idstring=uuid.uuid4().hex[:12], domain="payroll.example")
    mail.set_content("Your payslip for November is attached.")
    content = args.attach.read_bytes() if args.attach else b"%PDF-1.4\n% a sample payslip\n"
    name = args.attach.name if args.attach else "payslip.pdf"
    mail.add_attachment(content, maintype="application", subtype="pdf", filename=name)

    host, port = args.server.rsplit(":", 1)
    with smtplib.SMTP(host, int(port), timeout=60) as client:
        client.starttls(context=ssl.create_default_context(cafile=args.ca_file))
        client.login(username, password)
        # send_message() hides the server's answer to the mail: ask step by step, so that
        # the stored message's id (or the reason for a refusal) can be shown.
        for code, answer in (client.mail(args.sender), client.rcpt(args.to)):
            if code != 250:
                raise SystemExit(f"refused: {code} {answer.decode()}")
        code, answer = client.data(mail.as_bytes(policy=email.policy.SMTP))
    if code != 250:
        raise SystemExit(f"refused: {code} {answer.decode()}")
    print(f"{code} {answer.decode()}")
    print(f"Reference (the Message-ID): {mail['Message-ID'].strip('<>')}")


if __name__ == "__main__":
    main()
