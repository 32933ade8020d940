"""Teams (domain/teams.py): their members, their sender accounts, and the invitations
(account mails of kind `invitation`, found by their link's hash and used once)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from soap_service.domain.account_mails import AccountMailKind
from soap_service.domain.model import Account, Invitation, Member, Membership, Team, TeamRole
from soap_service.errors import Conflict
from soap_service.persistence.accounts import account_of
from soap_service.persistence.tables import (
    account_mails,
    accounts,
    recipient_accounts,
    team_members,
    teams,
)
from soap_service.persistence.transactions import Transactions


class TeamQueries(Transactions):
    def add_team(self, name: str, now: datetime) -> Team:
        try:
            with self._transaction() as connection:
                team_id = connection.execute(
                    insert(teams).values(name=name, created_at=now).returning(teams.c.id)
                ).scalar_one()
        except IntegrityError as exc:
            raise Conflict(f"a team named {name!r} exists") from exc
        return Team(id=team_id, name=name)

    def team_named(self, name: str) -> Team | None:
        with self._transaction(read_only=True) as connection:
            row = connection.execute(select(teams).where(teams.c.name == name)).first()
        return Team(id=row.id, name=row.name) if row is not None else None

    def teams(self) -> list[Team]:
        with self._transaction(read_only=True) as connection:
            rows = connection.execute(select(teams).order_by(teams.c.name)).all()
        return [Team(id=row.id, name=row.name) for row in rows]

    def set_account_team(self, username: str, team_id: int) -> bool:
        with self._transaction() as connection:
            changed = connection.execute(
                update(accounts)
                .where(accounts.c.username == username)
                .values(team_id=team_id)
                .returning(accounts.c.id)
            ).first()
        return changed is not None

    def team_accounts(self, team_id: int) -> list[Account]:
        with self._transaction(read_only=True) as connection:
            rows = connection.execute(
                select(accounts).where(accounts.c.team_id == team_id).order_by(accounts.c.id)
            ).all()
        return [account_of(row) for row in rows]

    def memberships(self, person_id: int) -> list[Membership]:
        with self._transaction(read_only=True) as connection:
            rows = connection.execute(
                select(teams.c.id, teams.c.name, team_members.c.role)
                .join(team_members, team_members.c.team_id == teams.c.id)
                .where(team_members.c.person_id == person_id)
                .order_by(teams.c.name)
            ).all()
        return [
            Membership(team=Team(id=row.id, name=row.name), role=TeamRole(row.role)) for row in rows
        ]

    def team_members(self, team_id: int) -> list[Member]:
        with self._transaction(read_only=True) as connection:
            rows = connection.execute(
                select(recipient_accounts.c.id, recipient_accounts.c.address, team_members.c.role)
                .join(team_members, team_members.c.person_id == recipient_accounts.c.id)
                .where(team_members.c.team_id == team_id)
                .order_by(recipient_accounts.c.address)
            ).all()
        return [
            Member(person_id=row.id, address=row.address, role=TeamRole(row.role)) for row in rows
        ]

    def remove_team_member(self, team_id: int, person_id: int) -> None:
        with self._transaction() as connection:
            connection.execute(
                delete(team_members).where(
                    team_members.c.team_id == team_id, team_members.c.person_id == person_id
                )
            )

    def pending_invitation(self, token_hash: bytes, now: datetime) -> Invitation | None:
        mails = account_mails.c
        with self._transaction(read_only=True) as connection:
            row = connection.execute(
                select(
                    mails.id, mails.address, mails.role, teams.c.id.label("team_id"), teams.c.name
                )
                .join(teams, teams.c.id == mails.team_id)
                .where(
                    mails.token_hash == token_hash,
                    mails.kind == AccountMailKind.INVITATION.value,
                    mails.used_at.is_(None),
                    mails.expires_at > now,
                )
            ).first()
        if row is None:
            return None
        return Invitation(
            mail_id=row.id,
            team=Team(id=row.team_id, name=row.name),
            role=TeamRole(row.role),
            address=row.address,
        )

    def join_team(self, mail_id: int, person_id: int, now: datetime) -> bool:
        """Use the invitation and make the person a member with its role (an owner stays
        an owner); False if it was used meanwhile."""
        mails = account_mails.c
        with self._transaction() as connection:
            used = connection.execute(
                update(account_mails)
                .where(mails.id == mail_id, mails.used_at.is_(None))
                .values(used_at=now)
                .returning(mails.team_id, mails.role)
            ).first()
            if used is None:
                return False
            current = connection.execute(
                select(team_members.c.role).where(
                    and_(
                        team_members.c.team_id == used.team_id,
                        team_members.c.person_id == person_id,
                    )
                )
            ).first()
            if current is None:
                connection.execute(
                    insert(team_members).values(
                        team_id=used.team_id, person_id=person_id, role=used.role, joined_at=now
                    )
                )
            elif used.role == TeamRole.OWNER.value:
                connection.execute(
                    update(team_members)
                    .where(
                        team_members.c.team_id == used.team_id,
                        team_members.c.person_id == person_id,
                    )
                    .values(role=used.role)
                )
        return True
