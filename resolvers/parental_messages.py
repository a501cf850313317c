"""What the messages to a minor's parent say: each one's subject and body in one place.

A body holds `PLACEHOLDER` where the link's token goes (see `resolvers.notifications`); `link` is
the page's address with that placeholder in it. The API keeps only a hash of a parent's address,
so it writes to a parent only when the minor names them again: every message carries a link
through which the parent can also withdraw whatever they granted before.
"""

from __future__ import annotations

from collections.abc import Sequence

from resolvers.catalogue import SettingDefinition

Message = tuple[str, str]


def _listed(settings: Sequence[SettingDefinition]) -> str:
    return "".join(f"- {setting.description} ({setting.key})\n" for setting in settings)


def consent_requested(
    teen: str, asked: Sequence[SettingDefinition], link: str, valid_days: int
) -> Message:
    return (
        f"{teen} asks for your consent",
        f"{teen} uses our CMS platform and is below the age at which the law of their country "
        "lets them consent to the following on their own. They named you as their parent or "
        "guardian and ask you to agree to:\n"
        f"{_listed(asked)}\n"
        f"To see the request and answer each item, open {link}\n"
        f"You can answer for {valid_days} days; nothing changes unless you do. Keep this "
        "message: its link also lets you withdraw your consent at any time, as does the link "
        "in any later message from us.\n"
        "If you are not their parent or guardian, or do not know them, ignore this message.",
    )
