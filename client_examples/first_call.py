"""A first call: send one confidential message with zeep, then ask for its status.

    .venv/bin/python client_examples/first_call.py --to you@example.ch

Against `make run` it needs no other option: it reads the development account from
var/dev-account.txt and trusts the development certificate var/tls/dev-cert.pem.
"""

from __future__ import annotations

import argparse
import uuid
from pathlib import Path

import requests
import zeep
from zeep.transports import Transport
from zeep.wsse.username import UsernameToken


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="https://localhost:8443/soap/v1")
    parser.add_argument("--username")
    parser.add_argument("--password")
    parser.add_argument("--ca-file", default="var/tls/dev-cert.pem", help="CA to trust")
    parser.add_argument("--to", default="anna.muster@example.ch", help="recipient address")
    parser.add_argument("--digest", action="store_true", help="use PasswordDigest")
    args = parser.parse_args()

    username, password = args.username, args.password
    if not (username and password):
        saved = dict(
            line.split("=", 1) for line in Path("var/dev-account.txt").read_text().splitlines()
        )
        username, password = saved["username"], saved["password"]

    session = requests.Session()
    session.verify = args.ca_file
    session.trust_env = False  # else REQUESTS_CA_BUNDLE would replace `verify`
    client = zeep.Client(
        f"{args.url}?wsdl",
        transport=Transport(session=session),
        wsse=UsernameToken(username, password, use_digest=args.digest),
    )

    result = client.service.SendMessage(
        Message={
            # Your own unique reference: resending it after a timeout is safe.
            "Reference": f"first-call-{uuid.uuid4().hex[:8]}",
            "Type": "confidential",
            "Recipients": {"Recipient": [{"Address": args.to}]},
            "Subject": "Your payslip",
            "TextBody": "Your payslip for November is attached.",
            "Attachments": {
                "Attachment": [
                    {
                        "FileName": "payslip.pdf",
                        "ContentType": "application/pdf",
                        "Content": b"%PDF-1.4\n% a sample payslip\n",
                    }
                ]
            },
            "Language": "en",
        }
    )
    print(f"accepted {result.MessageId} at {result.AcceptedAt.isoformat()}")
    status = client.service.GetStatus(MessageId=result.MessageId)
    for recipient in status.Recipients.Recipient:
        print(f"  {recipient.Address}: {recipient.State}")


if __name__ == "__main__":
    main()
