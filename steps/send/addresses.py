"""Email addresses and the recipient limits: ``max_recipients`` and ``allowed_domains``.

The same rules run twice: at validation time on the addresses written as literals (so
``engine validate`` reports them), and in the step on the resolved addresses, before any
connection is made. A limit in the engine configuration (``[smtp] max_recipients``,
``allowed_domains``) is the machine's ceiling: a policy may narrow it, never widen it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.policy import SMTP
from typing import Any

DEFAULT_MAX_RECIPIENTS = 50
KINDS = ("to", "cc", "bcc")


@dataclass(frozen=True)
class Violation:
    """One broken rule; ``pointer`` is relative to the step's params (``/to/2``)."""

    pointer: str
    message: str
    hint: str


LINE_BREAK = "must not contain a line break (CR or LF)"


class LineBreak(ValueError):
    """A header value with CR or LF: it could end the header and start another (``Bcc: ...``)."""

    hint = "write it on one line"

    def __init__(self) -> None:
        super().__init__(LINE_BREAK)


def one_line(text: str) -> None:
    """Raise :class:`LineBreak` when ``text`` holds a CR or LF."""
    if "\r" in text or "\n" in text:
        raise LineBreak


def hint_for(exc: ValueError) -> str:
    return exc.hint if isinstance(exc, LineBreak) else "write 'name@example.com'"


def parse(text: str) -> Address:
    """``"Ann <ann@example.com>"`` or ``"ann@example.com"``; raises ValueError with the reason."""
    one_line(text)
    wrong = ValueError(f"{text!r} is not one email address like 'ann@example.com' or 'Ann <ann@example.com>'")
    try:
        header = SMTP.header_factory("To", text)
    except (HeaderParseError, IndexError, ValueError):
        raise wrong from None
    addresses = getattr(header, "addresses", ())
    if header.defects or len(addresses) != 1 or not addresses[0].domain or not addresses[0].username:
        raise wrong
    return addresses[0]  # type: ignore[no-any-return]


def bare(text: str) -> str:
    """The address alone, as the SMTP envelope and the dedup key use it: ``ann@example.com``."""
    return parse(text).addr_spec


@dataclass(frozen=True)
class Limits:
    max_recipients: int
    allowed: tuple[tuple[str, ...], ...]  # every list must allow a domain (policy and config)

    @classmethod
    def of(cls, max_recipients: int | None, allowed_domains: Sequence[str] | None, config: Mapping[str, Any]) -> Limits:
        ceiling = config.get("max_recipients")
        if max_recipients is not None and isinstance(ceiling, int):
            limit = min(max_recipients, ceiling)
        else:
            limit = max_recipients or (ceiling if isinstance(ceiling, int) else DEFAULT_MAX_RECIPIENTS)
        lists = [allowed_domains, config.get("allowed_domains")]
        return cls(limit, tuple(tuple(d.lower() for d in lst) for lst in lists if isinstance(lst, list | tuple)))

    def domain_allowed(self, domain: str) -> bool:
        domain = domain.lower()
        return all(any(_matches(domain, pattern) for pattern in lst) for lst in self.allowed)

    def check(self, lists: Mapping[str, Sequence[Any]]) -> list[Violation]:
        """Violations among ``lists`` (to, cc, bcc); values that are not strings are skipped
        (expressions at validation time), so only a count already over the limit is reported."""
        problems: list[Violation] = []
        unique: set[str] = set()
        for kind, items in lists.items():
            for i, item in enumerate(items):
                if not isinstance(item, str):
                    continue
                try:
                    address = parse(item)
                except ValueError as exc:
                    problems.append(Violation(f"/{kind}/{i}", str(exc), hint_for(exc)))
                    continue
                unique.add(address.addr_spec.lower())
                if not self.domain_allowed(address.domain):
                    allowed = " and ".join("[" + ", ".join(lst) + "]" for lst in self.allowed)
                    problems.append(
                        Violation(
                            f"/{kind}/{i}",
                            f"{address.addr_spec!r}: domain {address.domain!r} is not in allowed_domains",
                            f"allowed: {allowed}; change the address or allowed_domains",
                        )
                    )
        if len(unique) > self.max_recipients:
            where = next((f"/{k}" for k in KINDS if lists.get(k)), "/to")
            problems.append(
                Violation(
                    where,
                    f"{len(unique)} recipients (to, cc and bcc) are more than max_recipients ({self.max_recipients})",
                    "send to a mailing list address, split the step, or raise max_recipients",
                )
            )
        return problems


def _matches(domain: str, pattern: str) -> bool:
    if pattern.startswith("*."):
        return domain.endswith(pattern[1:])
    return domain == pattern
