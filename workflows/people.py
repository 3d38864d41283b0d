"""The team: who the RAs and MDs are, their Label Studio accounts, and who may decide in which queue.

The one owner of the ``people`` rows. A person is added with a role (RA or MD) and gets a Label Studio
account of their own (``annotator.labelstudio.users``); we keep their Label Studio user id, never their
password. Open-source Label Studio has no roles, so the sync asks ``role_of`` who made an annotation.
No commits here: the entry point commits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from annotator.errors import AnnotatorError
from db.models import Person, utcnow

PERSON_ROLES = ("RA", "MD")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


@dataclass(frozen=True)
class Added:
    person: Person
    created: bool  # False: the person was there already, nothing changed
    password: str | None  # the first password of an account made now; shown once, stored nowhere
    message: str


def parse_role(role: str) -> str:
    value = role.strip().upper()
    if value not in PERSON_ROLES:
        raise AnnotatorError(f"unknown role {role!r}; a person is one of: {', '.join(r.lower() for r in PERSON_ROLES)}")
    return value


def parse_email(email: str) -> str:
    value = email.strip().lower()
    if not EMAIL.fullmatch(value) or len(value) > 254:
        raise AnnotatorError(f"{email!r} is not an e-mail address (name@host.domain); Label Studio logs people in "
                             "by their e-mail")
    return value


def find_person(session: Session, email: str) -> Person | None:
    return session.scalar(select(Person).where(Person.email == parse_email(email)))


def get_person(session: Session, email: str) -> Person:
    person = find_person(session, email)
    if person is None:
        known = list(session.scalars(select(Person.email).order_by(Person.email).limit(20)))
        raise AnnotatorError(f"no person {email.strip().lower()!r} in the team; known: {', '.join(known) or 'none'} "
                             "(add one with `annotator people add EMAIL --role ra|md`)")
    return person


def add_person(session: Session, ls, email: str, role: str, name: str | None = None, *,
               password: str | None = None) -> Added:
    """Add a person with their own Label Studio account (a random first password, or ``password``: the
    simulator's people); adding the same person again changes nothing."""
    email, role = parse_email(email), parse_role(role)
    name = name.strip()[:128] if name and name.strip() else None
    person = find_person(session, email)
    if person is not None:
        if not person.active:
            raise AnnotatorError(f"{email} was deactivated on {person.deactivated_at:%Y-%m-%d}; Label Studio cannot "
                                 "give a removed member their place back: add them under another e-mail")
        if person.role != role:
            raise AnnotatorError(f"{email} is already in the team as {person.role}; a person has one role (nothing "
                                 "changed)")
        return Added(person, False, None, f"{email} is already in the team as {role} (Label Studio user "
                                          f"{person.ls_user_id}); nothing changed")
    from annotator.labelstudio.users import create_account, find_user

    existing = find_user(ls, email)
    if existing is not None:  # made by hand, or by a run that died before it committed: take it over
        ls_user_id, password = int(existing["id"]), None
        message = (f"{email} added as {role}, linked to their existing Label Studio account (user {ls_user_id}); "
                   "they log in with the password set there")
    else:
        ls_user_id, password = create_account(ls, email, name=name, password=password)
        message = f"{email} added as {role} with a new Label Studio account (user {ls_user_id})"
    taken = session.scalar(select(Person).where(Person.ls_user_id == ls_user_id))
    if taken is not None:
        raise AnnotatorError(f"Label Studio user {ls_user_id} ({email}) is already {taken.email} in the team")
    person = Person(email=email, name=name, role=role, ls_user_id=ls_user_id, active=True)
    session.add(person)
    session.flush()
    return Added(person, True, password, message)


def deactivate_person(session: Session, ls, email: str) -> str:
    """Take a person off the team: their Label Studio membership ends (the tasks they held go back to the
    queue) and their later annotations are refused; their past decisions keep their name."""
    person = get_person(session, email)
    if not person.active:
        return f"{person.email} was deactivated already (on {person.deactivated_at:%Y-%m-%d}); nothing changed"
    from annotator.labelstudio.users import deactivate_account

    removed = person.ls_user_id is not None and deactivate_account(ls, person.ls_user_id)
    person.active = False
    person.deactivated_at = utcnow()
    session.flush()
    where = "removed from Label Studio" if removed else "not a Label Studio member any more"
    return f"{person.email} ({person.role}) deactivated: {where}; their annotations from now on are refused"


def as_dict(person: Person) -> dict:
    return {"email": person.email, "name": person.name, "role": person.role, "ls_user_id": person.ls_user_id,
            "active": person.active, "added": person.created_at.isoformat() if person.created_at else None,
            "deactivated": person.deactivated_at.isoformat() if person.deactivated_at else None}


def list_people(session: Session) -> list[dict]:
    return [as_dict(p) for p in session.scalars(select(Person).order_by(Person.role, Person.email))]


def person_of(session: Session, ls_user_id: int | None) -> Person | None:
    """The team member behind a Label Studio user id (None: not one of ours)."""
    if ls_user_id is None:
        return None
    return session.scalar(select(Person).where(Person.ls_user_id == int(ls_user_id)))


@dataclass(frozen=True)
class Attribution:
    """Who made an annotation, in which role, and why it may not be applied (None: it may)."""

    actor: str
    role: str
    ls_user_id: int | None
    refusal: str | None = None


def has_team(session: Session) -> bool:
    return session.scalar(select(Person.id).limit(1)) is not None


def attribute(session: Session, queue: str, queue_role: str, annotation) -> Attribution:
    """The annotation's author (Label Studio's ``completed_by``) and their role. With no team yet, one
    operator works every queue (the single-user set-up and the demo's scripted people): the queue's role.
    With a team, only an active member whose role is the queue's may decide there."""
    uid = getattr(annotation, "ls_user_id", None)
    seen = annotation.annotator or (f"Label Studio user {uid}" if uid is not None else "an unknown account")
    person = person_of(session, uid)
    if person is None:
        if not has_team(session):
            return Attribution(seen[:128], queue_role, uid)
        return Attribution(seen[:128], queue_role, uid,
                           f"made by {seen} (Label Studio user {uid}), who is not in the team; add them "
                           "with `annotator people add`, or have a member redo the task")
    if not person.active:
        return Attribution(person.email, person.role, uid,
                           f"made by {person.email}, deactivated on {person.deactivated_at:%Y-%m-%d}; a "
                           "member redoes the task")
    if person.role != queue_role:
        return Attribution(person.email, person.role, uid,
                           f"made by {person.email}, an {person.role}; queue {queue} takes {queue_role} "
                           "decisions only")
    return Attribution(person.email, person.role, uid)
