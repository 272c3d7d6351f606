"""Derived message ids are the receivers' dedupe keys: the fast construction must give
exactly the text of ``uuid5(NAMESPACE_URL, ...)`` that earlier versions sent."""

from __future__ import annotations

import random
import uuid

from alphasaga_shared.wire import derived_message_id


def test_a_derived_id_is_the_text_of_uuid5_over_the_joined_parts() -> None:
    rng = random.Random(17)
    alphabet = "abcXYZ019-_/:é日\u0000 "
    for _ in range(5000):
        cause = "".join(rng.choices(alphabet, k=rng.randint(0, 40)))
        parts = ["".join(rng.choices(alphabet, k=rng.randint(0, 12))) for _ in range(rng.randint(0, 4))]
        expected = str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join((cause, *parts))))
        assert derived_message_id(cause, *parts) == expected, (cause, parts)


def test_a_derived_id_parses_as_a_version_5_uuid() -> None:
    parsed = uuid.UUID(derived_message_id("saga-1", "reasoning", "attempt", "1"))
    assert parsed.version == 5 and parsed.variant == uuid.RFC_4122
