"""The mails about a person's account (domain/person_accounts.py), in the language of the
page they were asked for on, with words from the service's catalogues (catalogues.py): a
sign-up's code, a password reset link, or word that the address already has an account.
Plain text: a code and a link need nothing more, and every mail client shows them.
"""

from __future__ import annotations

import quopri
from datetime import datetime
from email.utils import format_datetime
from urllib.parse import urlencode, urljoin

from babel.support import NullTranslations

from soap_service.catalogues import read_catalogues
from soap_service.delivery.addresses import smtp_address
from soap_service.delivery.notification import encoded_words
from soap_service.domain.account_mails import AccountMailJob, AccountMailKind

CRLF = "\r\n"


class AccountMailWriter:
    def __init__(self, *, mail_from: str, hostname: str, site_url: str, sender_name: str) -> None:
        self._mail_from = mail_from
        self._hostname = hostname
        self._sender_name = sender_name
        self._site_url = site_url
        self._catalogues = read_catalogues()

    def mail(self, job: AccountMailJob, secret: str | None, now: datetime) -> bytes:
        words = self._catalogues[job.language]
        if job.kind is AccountMailKind.ACTIVATION:
            assert secret is not None, "an activation mail carries its code"
            link = self._link("/account/activate", job, address=job.address)
            subject, text = _activation(words, secret, link)
        elif job.kind is AccountMailKind.RESET:
            assert secret is not None, "a reset mail carries its link"
            subject, text = _reset(words, self._link(f"/account/reset/{secret}", job))
        elif job.kind is AccountMailKind.INVITATION:
            assert secret is not None, "an invitation carries its link"
            link = self._link(f"/account/teams/join/{secret}", job)
            subject, text = _invitation(words, job.team_name or "", link)
        else:
            subject, text = _exists(
                words,
                self._link("/account/login", job),
                self._link("/account/reset", job),
            )
        headers = [
            f"From: {encoded_words(self._sender_name)} <{self._mail_from}>",
            f"To: <{smtp_address(job.address)}>",
            f"Subject: {encoded_words(subject)}",
            f"Date: {format_datetime(now)}",
            f"Message-ID: <account-{job.mail_id}@{self._hostname}>",
            "MIME-Version: 1.0",
            "Auto-Submitted: auto-generated",
            f"Content-Language: {job.language.value}",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: quoted-printable",
        ]
        body = quopri.encodestring(text.encode("utf-8")).decode("ascii").replace("\n", CRLF)
        return (CRLF.join(headers) + CRLF + CRLF + body + CRLF).encode("ascii")

    def _link(self, path: str, job: AccountMailJob, **query: str) -> str:
        # The page opens in the language the mail is written in.
        return (
            urljoin(self._site_url, path) + "?" + urlencode({"lang": job.language.value, **query})
        )


def _activation(words: NullTranslations, code: str, link: str) -> tuple[str, str]:
    _ = words.gettext
    spaced = f"{code[:4]} {code[4:]}"
    return _("Your code for a secure message account"), "\n\n".join(
        [
            _("Somebody, probably you, asked for an account for this e-mail address."),
            _("Your code: %(code)s") % {"code": spaced},
            _("Type it on the page where you asked for it, or open %(link)s") % {"link": link},
            _("The code works for 30 minutes."),
            _("If it was not you, ignore this e-mail: without the code, no account is made."),
        ]
    )


def _reset(words: NullTranslations, link: str) -> tuple[str, str]:
    _ = words.gettext
    return _("Set a new password for your secure message account"), "\n\n".join(
        [
            _("Somebody, probably you, asked to set a new password for this account."),
            _("Open this link to choose a new password (it works once, for an hour):"),
            link,
            _("If it was not you, ignore this e-mail: your password stays as it is."),
        ]
    )


def _exists(words: NullTranslations, login: str, reset: str) -> tuple[str, str]:
    _ = words.gettext
    return _("You already have a secure message account"), "\n\n".join(
        [
            _("Somebody, probably you, asked for an account for this e-mail address."),
            _("This address already has one. Log in here:"),
            login,
            _("If you have forgotten the password, set a new one here:"),
            reset,
            _("If it was not you, ignore this e-mail."),
        ]
    )


def _invitation(words: NullTranslations, team: str, link: str) -> tuple[str, str]:
    _ = words.gettext
    return _("You are invited to the team %(team)s") % {"team": team}, "\n\n".join(
        [
            _("You are invited to the team %(team)s, to share its secure messages.")
            % {"team": team},
            _("Open this link to join (it works once, for a week):"),
            link,
            _("If you have no account yet, create one with this address first."),
            _("If you do not know this team, ignore this e-mail."),
        ]
    )
