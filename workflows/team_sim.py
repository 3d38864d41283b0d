"""The demo's simulated team: several distinct people (by default 3 RAs and 2 MDs), each a real Label
Studio account of their own, logged in with their own token, each with their own skill (accept
threshold, editing noise, speed). ``workflows.campaign.act`` asks the team who works each task: the
queue's role in turn, two different RAs on a double-read task, and once, as scripted, an RA who tries an
MD task first (the sync refuses it; an MD then does it).

The simulated accounts' passwords are derived from the workspace's Label Studio password (an HMAC of the
e-mail), so a demo run again logs them in without storing anything.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections import Counter
from dataclasses import dataclass

from sqlalchemy.orm import Session

from annotator.config import Settings
from annotator.labelstudio.queue import get_queue
from workflows.people import add_person
from workflows.simulator import ScriptedPeople, SimulationPolicy

TEAM_DOMAIN = "team.cxr-annotator.local"


@dataclass(frozen=True)
class Profile:
    name: str
    role: str  # RA | MD
    accept_dsc: float
    speed: float  # multiplies the seconds to look and to edit
    edit_noise_px: int  # how far off the mask this person paints lies


PROFILES = (
    Profile("ra-ana", "RA", 0.95, 1.0, 0),
    Profile("ra-ben", "RA", 0.93, 0.7, 3),  # quick, lenient, a little careless
    Profile("ra-cleo", "RA", 0.97, 1.4, 1),  # slow and strict
    Profile("md-dora", "MD", 0.95, 1.0, 0),
    Profile("md-emil", "MD", 0.96, 1.2, 0),
)


@dataclass
class Member:
    email: str
    role: str
    people: ScriptedPeople
    ls: object  # a LabelStudio client logged in as this person
    ls_user_id: int | None = None


def simulated_password(settings: Settings, email: str) -> str:
    digest = hmac.new(settings.labelstudio_password.encode(), email.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()[:24]


def ensure_team(session: Session, settings: Settings, ls, *, seed: int = 0,
                profiles: tuple[Profile, ...] = PROFILES) -> list[Member]:
    """Each profile in the team (added once) with a Label Studio client logged in as them."""
    from annotator.labelstudio.client import LabelStudio
    from annotator.labelstudio.users import legacy_token

    members = []
    for i, profile in enumerate(profiles):
        email = f"{profile.name}@{TEAM_DOMAIN}"
        password = simulated_password(settings, email)
        added = add_person(session, ls, email, profile.role, name=profile.name, password=password)
        token = legacy_token(settings.labelstudio_base_url, email, password)
        policy = SimulationPolicy(accept_dsc=profile.accept_dsc, look_s=6.0 * profile.speed,
                                  edit_s_per_share=240.0 * profile.speed, md_advice_s=45.0 * profile.speed,
                                  verify_s=12.0 * profile.speed, edit_noise_px=profile.edit_noise_px, seed=seed + i)
        members.append(Member(email, profile.role, ScriptedPeople(policy),
                              LabelStudio(settings.model_copy(update={"labelstudio_token": token})),
                              added.person.ls_user_id))
    return members


class ScriptedTeam:
    """Who works which task: the queue's role in turn; ``overlap`` different people on a double read."""

    def __init__(self, members: list[Member], *, scripted_intrusions: int = 1):
        self.members = members
        self._turn: Counter[str] = Counter()
        self._intrusions_left = scripted_intrusions

    def actors(self, queue: str, overlap: int = 1) -> list[Member]:
        role = get_queue(queue).role
        pool = [m for m in self.members if m.role == role]
        if not pool:
            raise ValueError(f"the simulated team has no {role} for queue {queue}")
        start = self._turn[role]
        count = max(1, min(overlap, len(pool)))
        self._turn[role] += count
        return [pool[(start + i) % len(pool)] for i in range(count)]

    def intruder(self, queue: str) -> Member | None:
        """Once (as scripted): an RA who opens an MD queue's task before an MD does."""
        if self._intrusions_left <= 0 or get_queue(queue).role != "MD":
            return None
        ras = [m for m in self.members if m.role == "RA"]
        if not ras:
            return None
        self._intrusions_left -= 1
        return ras[0]
