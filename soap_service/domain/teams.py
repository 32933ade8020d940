"""Teams: an organisation's people, who share the logbook of what the team sent.

An operator makes a team and names its first owner (`soap-service team add`); owners
invite people by e-mail (an invitation link, valid a week, for that address only) as
owners or members, and remove them (never the last owner). The operator gives the team
its SOAP sender accounts (`soap-service team add-account`): a payroll team then sees its
runs in the team's logbook. To anyone not in a team, the team does not exist: every one of
its pages answers as for a team that was never made.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from soap_service import crypto
from soap_service.domain.account_mails import (
    AccountMailKind,
    NewAccountMail,
    mail_secret_context,
)
from soap_service.domain.model import (
    Account,
    Invitation,
    Language,
    Member,
    Membership,
    Team,
    TeamRole,
)
from soap_service.domain.pickup import mailbox
from soap_service.domain.ports import RecipientAccount, TeamStore
from soap_service.domain.validation import normalise_address
from soap_service.errors import NotFound, SoapServiceError

INVITATION_LIFETIME = timedelta(days=7)


class InvitationRefused(SoapServiceError):
    UNKNOWN = "unknown"  # wrong, used or expired
    OTHER_ADDRESS = "other-address"  # for another mailbox than the person's

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LastOwner(SoapServiceError):
    """A team keeps at least one owner."""


class NoTeam(NotFound):
    """Not a team of this person's (or none at all): the same answer."""

    def __init__(self) -> None:
        super().__init__("no such team")


class Teams:
    def __init__(
        self, *, store: TeamStore, keyring: crypto.Keyring, now: Callable[[], datetime]
    ) -> None:
        self._store = store
        self._keyring = keyring
        self._now = now

    def close(self) -> None:
        self._store.close()

    # The operator's.

    def create(self, name: str, owner: str, language: Language) -> Team:
        """A new team, and an owner's invitation to `owner`. Conflict if the name is taken;
        InvalidAddress."""
        box = mailbox(normalise_address(owner))
        team = self._store.add_team(name.strip(), self._now())
        self._invite(team, box, TeamRole.OWNER, language)
        return team

    def add_account(self, team_name: str, username: str) -> bool:
        """The sender account's messages now show in the team's logbook; False if either
        does not exist."""
        team = self._store.team_named(team_name)
        return team is not None and self._store.set_account_team(username, team.id)

    def all(self) -> list[tuple[Team, list[Member], list[str]]]:
        """Every team, its members and its sender accounts' usernames."""
        return [
            (
                team,
                self._store.team_members(team.id),
                [a.username for a in self._store.team_accounts(team.id)],
            )
            for team in self._store.teams()
        ]

    # A person's.

    def memberships(self, person: RecipientAccount) -> list[Membership]:
        return self._store.memberships(person.id)

    def membership(self, person: RecipientAccount, team_id: int) -> Membership:
        """NoTeam unless the person is in it."""
        found = next((m for m in self.memberships(person) if m.team.id == team_id), None)
        if found is None:
            raise NoTeam()
        return found

    def members(self, person: RecipientAccount, team_id: int) -> list[Member]:
        self.membership(person, team_id)
        return self._store.team_members(team_id)

    def accounts(self, person: RecipientAccount, team_id: int) -> list[Account]:
        """The team's sender accounts, for its logbook."""
        self.membership(person, team_id)
        return self._store.team_accounts(team_id)

    def invite(
        self,
        person: RecipientAccount,
        team_id: int,
        address: str,
        role: TeamRole,
        language: Language,
    ) -> str:
        """An owner invites `address`; its mailbox. NoTeam for anyone but an owner."""
        membership = self.membership(person, team_id)
        if membership.role is not TeamRole.OWNER:
            raise NoTeam()
        box = mailbox(normalise_address(address))
        self._invite(membership.team, box, role, language)
        return box

    def remove(self, person: RecipientAccount, team_id: int, member_id: int) -> None:
        """An owner removes a member (or themselves); LastOwner for the last owner."""
        membership = self.membership(person, team_id)
        if membership.role is not TeamRole.OWNER and member_id != person.id:
            raise NoTeam()
        members = self._store.team_members(team_id)
        leaving = next((m for m in members if m.person_id == member_id), None)
        if leaving is None:
            raise NoTeam()
        owners = [m for m in members if m.role is TeamRole.OWNER]
        if leaving.role is TeamRole.OWNER and len(owners) == 1:
            raise LastOwner("a team keeps at least one owner")
        self._store.remove_team_member(team_id, member_id)

    def invitation(self, token: str) -> Invitation:
        """The invitation a link is; InvitationRefused(UNKNOWN) if it does not work."""
        if len(token) != 43:
            raise InvitationRefused(InvitationRefused.UNKNOWN)
        found = self._store.pending_invitation(crypto.sha256(token.encode("ascii")), self._now())
        if found is None:
            raise InvitationRefused(InvitationRefused.UNKNOWN)
        return found

    def join(self, person: RecipientAccount, token: str) -> Team:
        """The person joins the team the link invites them to, if it is for their address."""
        invitation = self.invitation(token)
        if invitation.address != person.address:
            raise InvitationRefused(InvitationRefused.OTHER_ADDRESS)
        if not self._store.join_team(invitation.mail_id, person.id, self._now()):
            raise InvitationRefused(InvitationRefused.UNKNOWN)  # used meanwhile
        return invitation.team

    def _invite(self, team: Team, box: str, role: TeamRole, language: Language) -> None:
        token = crypto.new_secret_token()
        now = self._now()
        context = mail_secret_context(AccountMailKind.INVITATION, box)
        self._store.queue_account_mail(
            NewAccountMail(
                kind=AccountMailKind.INVITATION,
                address=box,
                language=language,
                secret=self._keyring.seal_secret(context, token.encode("ascii")),
                token_hash=crypto.sha256(token.encode("ascii")),
                created_at=now,
                expires_at=now + INVITATION_LIFETIME,
                team_id=team.id,
                role=role.value,
            )
        )
