"""argon2id password hashing, run in worker threads so a hash never stalls the event loop."""

from __future__ import annotations

import argon2
import trio

MIN_LENGTH = 8
MAX_LENGTH = 1024


class Passwords:
    """Hash and check passwords with argon2id at the configured cost."""

    def __init__(self, time_cost: int, memory_kib: int, parallelism: int) -> None:
        self._hasher = argon2.PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_kib,
            parallelism=parallelism,
            type=argon2.Type.ID,
        )
        # Each hash holds memory_kib of RAM: bound how many run at once.
        self._limiter = trio.CapacityLimiter(4)
        # Checked against an unknown login so its timing matches a real account's.
        self._dummy_hash = self._hasher.hash("not a real password")

    async def hash(self, password: str) -> str:
        """The argon2id hash of ``password``."""
        return await trio.to_thread.run_sync(self._hasher.hash, password, limiter=self._limiter)

    async def check(self, stored: str | None, password: str) -> tuple[bool, bool]:
        """(matches, needs_rehash). ``stored=None`` burns the same time and fails."""
        return await trio.to_thread.run_sync(self._check, stored, password, limiter=self._limiter)

    def _check(self, stored: str | None, password: str) -> tuple[bool, bool]:
        try:
            self._hasher.verify(stored or self._dummy_hash, password)
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False, False
        if stored is None:
            return False, False
        return True, self._hasher.check_needs_rehash(stored)
