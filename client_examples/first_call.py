"""A first call: send one message with zeep, ask for its status; then fetch a receipt or
withdraw it.

    .venv/bin/python client_examples/first_call.py --to you@example.ch
    .venv/bin/python client_examples/first_call.py --type personal      # or registered
    .venv/bin/python client_examples/first_call.py --receipt MESSAGE_ID # registered only
    .venv/bin/python client_examples/first_call.py --cancel MESSAGE_ID

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

NEXT_STEP = {
    "confidential": "Open the newest mail in var/mail/ and follow its link: it opens the message.",
    "personal": "Open the newest mail in var/mail/ and follow its link: the first time, the "
    "recipient chooses a password (only they may read it), then it opens.",
    "registered": "Open the newest mail in var/mail/ and follow its link: after choosing a "
    "password, the recipient accepts it (then it opens) or refuses it. Each gives you a "
    "signed receipt:\n  first_call.py --receipt {id} --kind pickup --recipient {to}",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="https://localhost:8443/soap/v1")
    parser.add_argument("--username")
    parser.add_argument("--password")
    parser.add_argument("--ca-file", default="var/tls/dev-cert.pem", help="CA to trust")
    parser.add_argument("--to", default="anna.muster@example.ch", help="recipient address")
    parser.add_argument("--type", choices=list(NEXT_STEP), default="confidential")
    parser.add_argument("--digest", action="store_true", help="use PasswordDigest")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--receipt", metavar="MESSAGE_ID", help="save a registered message's receipt")
    what.add_argument("--cancel", metavar="MESSAGE_ID", help="withdraw a message not yet read")
    parser.add_argument(
        "--kind", choices=["submission", "pickup", "refusal", "expiry"], default="submission"
    )
    parser.add_argument("--recipient", help="whose pickup, refusal or expiry receipt")
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

    if args.receipt:
        receipt = client.service.GetReceipt(
            Kind=args.kind, MessageId=args.receipt, RecipientAddress=args.recipient
        )
        path = Path(receipt.FileName)
        path.write_bytes(receipt.Content)
        print(f"{args.kind} receipt issued {receipt.IssuedAt.isoformat()}: saved as {path}")
        return
    if args.cancel:
        status = client.service.CancelMessage(MessageId=args.cancel)
        for recipient in status.Recipients.Recipient:
            print(f"  {recipient.Address}: {recipient.State}")
        return

    result = client.service.SendMessage(
        Message={
            # Your own unique reference: resending it after a timeout is safe.
            "Reference": f"first-call-{uuid.uuid4().hex[:8]}",
            "Type": args.type,
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
    print(NEXT_STEP[args.type].format(id=result.MessageId, to=args.to))
    print(f"Withdraw it before it is read:\n  first_call.py --cancel {result.MessageId}")


if __name__ == "__main__":
    main()
