"""Accounts: sign-up, email verification, sign-in/out, sessions and password reset.

This is the service the HTTP views call. It validates values, applies throttles, talks to
the store and the mailer, and raises :mod:`meet.errors` exceptions for the client.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

from meet import tokens as purposes
from meet.clock import Clock
from meet.config import AuthConfig
from meet.errors import BadRequest, Forbidden, Throttled, Unauthorized
from meet.mail import Mailer, MailError, build_message
from meet.passwords import MAX_LENGTH, MIN_LENGTH, Passwords
from meet.session_cache import SessionCache
from meet.store import Store
from meet.store import accounts as q
from meet.store.accounts import User
from meet.store.epoch import EpochWatch
from meet.throttle import Backoff, Busy, Throttle
from meet.tokens import Tokens, new_code, new_nonce

log = logging.getLogger("meet.accounts")

CODE_TTL = 15 * 60
CODE_MAX_ATTEMPTS = 5
RESET_TTL = 60 * 60
USERNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{3,32}$")
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
CODE_RE = re.compile(r"^[0-9]{6}$")

__all__ = ["Accounts", "Session", "User", "check_email", "check_password", "check_username"]


@dataclass(frozen=True)
class Session:
    """A resolved, live sign-in."""

    id: int
    user: User


def check_username(username: str) -> str:
    if not USERNAME_RE.match(username):
        raise BadRequest(
            "Usernames are 3–32 characters of letters, digits, '_', '.' and '-'.",
            code="invalid_username",
            field="username",
        )
    return username


def check_email(email: str, field: str = "email") -> str:
    email = email.strip()
    if len(email) > 254 or not EMAIL_RE.match(email):
        raise BadRequest("That does not look like an email address.", code="invalid_email", field=field)
    return email


def check_password(password: str) -> str:
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise BadRequest(
            f"Passwords are {MIN_LENGTH} to {MAX_LENGTH} characters long.",
            code="invalid_password",
            field="password",
        )
    return password


class Accounts:
    """The accounts service; one instance per server."""

    def __init__(
        self,
        *,
        store: Store,
        passwords: Passwords,
        tokens: Tokens,
        mailer: Mailer,
        clock: Clock,
        settings: AuthConfig,
        sender: str,
    ) -> None:
        self.store = store
        self.passwords = passwords
        self.tokens = tokens
        self.mailer = mailer
        self.clock = clock
        self.settings = settings
        self.sender = sender
        # Called after sessions are revoked here, so their WebSockets close at once (the
        # server sets it to SessionGuard.poke; other revocations are caught within a heartbeat).
        self.revoked: Callable[[], None] = lambda: None
        window = settings.throttle_window_s
        # Failed sign-ins per (account, address), with growing delays: guessing from one
        # address slows down fast, and locks out only that address, never the owner elsewhere.
        backoff = Backoff(settings.login_free_failures, 1.0, settings.login_max_delay_s)
        self.login_throttle = Throttle(settings.login_max_failures, window, clock, backoff=backoff)
        # Failed sign-ins per address over all accounts: much higher, a NAT is many people.
        self.address_throttle = Throttle(settings.login_max_failures_per_address, window, clock)
        self.mail_throttle = Throttle(settings.mail_max_per_window, window, clock)
        # Live sessions in memory, dropped whenever the session epoch moves (meet/session_cache.py).
        self.epoch_watch = EpochWatch(store)
        self.session_cache: SessionCache[Session] = SessionCache(clock.now, self.epoch_watch.current)

    # -- throttling ---------------------------------------------------------------------

    @staticmethod
    def _throttled(what: str, busy: Busy) -> Throttled:
        return Throttled(f"Too many {what}. Try again later.", retry_after=math.ceil(busy.retry_after))

    def _count_mail(self, email: str, client: str) -> None:
        try:
            self.mail_throttle.acquire([f"ip:{client}", f"to:{email.lower()}"])
        except Busy as busy:
            raise self._throttled("mail requests", busy) from None

    def _reserve_login(self, pair: str, address: str) -> float:
        """Count a sign-in attempt as failed *before* checking the password (given back on success).

        No await between the check and the reservation: concurrent guesses cannot all pass.
        """
        try:
            stamp = self.login_throttle.acquire([pair])
        except Busy as busy:
            raise self._throttled("failed sign-ins", busy) from None
        try:
            self.address_throttle.acquire([address])
        except Busy as busy:
            self.login_throttle.release(pair, stamp)
            raise self._throttled("failed sign-ins from your network", busy) from None
        return stamp

    async def _deliver(self, to: str, subject: str, text: str) -> None:
        try:
            await self.mailer.send(build_message(self.sender, to, subject, text))
        except MailError as exc:
            # The request still succeeds: the person can ask for the mail again.
            log.error("mail to %s not sent: %s", to, exc)

    # -- sign-up and verification -------------------------------------------------------

    def _check_signup_allowed(self, invitation: str | None) -> None:
        """Apply ``[auth] signup``: open to all, by invitation only, or closed."""
        mode = self.settings.signup
        if mode == "closed":
            raise Forbidden(
                "Sign-up is closed on this server. Ask its administrator for an account.",
                code="signup_closed",
            )
        if mode == "invite" and not invitation:
            raise Forbidden(
                "Sign-up on this server is by invitation only. Use the link from your invitation.",
                code="invitation_required",
            )

    async def signup(
        self, username: str, email: str, password: str, client: str, base_url: str, invitation: str | None = None
    ) -> str:
        """Create an unverified account and mail it a code and a link; returns the email.

        Answers the same whether or not ``email`` is registered (same reply, a password hash
        either way): then nothing changes and the owner is mailed instead.
        """
        self._check_signup_allowed(invitation)
        check_username(username)
        email = check_email(email)
        check_password(password)
        self._count_mail(email, client)
        password_hash = await self.passwords.hash(password)
        invitation_hash = (
            self.tokens.digest(purposes.INVITE, invitation[:512])
            if invitation and self.settings.signup == "invite"
            else None
        )
        done = await self.store.run(
            q.signup_user, username, email, password_hash, self.clock.now(), invitation_hash
        )
        if done.created:
            await self._send_code(done.user, base_url)
        elif done.user.verified:
            await self._mail_signup_attempt(done.user, base_url)
        else:
            await self._send_code(done.user, base_url, again=True)
        return email

    async def _mail_signup_attempt(self, owner: User, base_url: str) -> None:
        text = (
            f"Hello {owner.username},\n\nsomeone (maybe you) tried to create a meet account with this "
            "email address, which already has one. Nothing was changed.\n\n"
            f"Sign in: {base_url}/signin\n"
            f"Forgot your password? Choose a new one: {base_url}/forgot\n\n"
            "If it was not you, ignore this mail.\n"
        )
        await self._deliver(owner.email, "Your meet account already exists", text)

    async def _send_code(self, user: User, base_url: str, *, again: bool = False) -> None:
        code, nonce = new_code(), new_nonce()
        expires = self.clock.now() + CODE_TTL
        code_hash = self.tokens.digest(purposes.VERIFY_LINK, f"{user.id}:{code}")
        await self.store.run(q.replace_email_code, user.id, code_hash, nonce, expires)
        link = f"{base_url}/verify?token={self.tokens.sign(purposes.VERIFY_LINK, [user.id, nonce])}"
        note = (
            "someone (maybe you) tried to sign up again with this address. Your account keeps "
            f"the username {user.username} and the password chosen first (forgot it? {base_url}/forgot).\n\n"
            if again
            else ""
        )
        text = (
            f"Hello {user.username},\n\n{note}your meet verification code is {code}\n\n"
            f"or open this link to verify your email address:\n{link}\n\n"
            "The code and link work for 15 minutes. If you did not sign up, ignore this mail.\n"
        )
        await self._deliver(user.email, f"Your meet code: {code}", text)

    async def verify_code(self, email: str, code: str) -> User:
        """Verify with the 6-digit code; wrong codes count towards burning it."""
        email = check_email(email)
        if not CODE_RE.match(code):
            raise BadRequest("The code is 6 digits.", code="invalid_code", field="code")
        owner = await self.store.run(q.user_by_email, email)
        digest = self.tokens.digest(purposes.VERIFY_LINK, f"{owner.id if owner else 0}:{code}")
        user = await self.store.run(q.verify_code, email, digest, self.clock.now(), CODE_MAX_ATTEMPTS)
        if user is None:
            raise BadRequest(
                "That code is wrong or has expired. Check the mail or ask for a new code.",
                code="invalid_code",
                field="code",
            )
        return user

    async def verify_link(self, token: str) -> User | None:
        """Verify with the one-click link's token; None when it is invalid or used."""
        payload = self.tokens.unsign(purposes.VERIFY_LINK, token)
        if not (isinstance(payload, list) and len(payload) == 2 and isinstance(payload[0], int)):
            return None
        return await self.store.run(q.verify_link, payload[0], str(payload[1]), self.clock.now())

    async def resend(self, email: str, client: str, base_url: str) -> None:
        """Send a fresh code to an unverified account; silent about whether it exists."""
        email = check_email(email)
        self._count_mail(email, client)
        user = await self.store.run(q.user_by_email, email)
        if user is not None and not user.verified:
            await self._send_code(user, base_url)

    # -- sessions -----------------------------------------------------------------------

    async def login(self, login: str, password: str, client: str, user_agent: str) -> tuple[User, str]:
        """Check credentials (throttled) and open a session; returns (user, token)."""
        login = login.strip()
        if not login or len(login) > 254:
            raise BadRequest("Enter your email or username.", code="invalid_login", field="login")
        found = await self.store.run(q.credentials_by_login, login)
        account = f"user:{found.user.id}" if found else f"login:{login.lower()}"
        pair, address = f"{account}|ip:{client}", f"ip:{client}"
        stamp = self._reserve_login(pair, address)
        ok, rehash = await self.passwords.check(found.password_hash if found else None, password)
        if not ok or found is None:
            raise Unauthorized("Wrong email/username or password.", code="invalid_credentials")
        # The right password: this attempt was no failure after all.
        self.login_throttle.reset(pair)
        self.address_throttle.release(address, stamp)
        user = found.user
        # Said only after the right password: a wrong one gets the same answer for every account.
        if await self.store.run(q.is_disabled, user.id):
            raise Forbidden("This account is disabled. Ask the server's administrator.", code="account_disabled")
        if self.settings.require_verification and not user.verified:
            raise Forbidden("Verify your email address before signing in.", code="not_verified")
        new_hash = await self.passwords.hash(password) if rehash else None
        sid = new_nonce()
        now = self.clock.now()
        expires = now + self.settings.session_days * 86400
        token_hash = self.tokens.digest(purposes.SESSION, sid)
        await self.store.run(q.record_login, user.id, token_hash, now, expires, user_agent, new_hash)
        return user, self.tokens.sign(purposes.SESSION, sid)

    async def authenticate(self, token: str) -> Session | None:
        """The live session behind a cookie or bearer token, or None.

        From memory when this token was seen and nothing revoked since (no database call);
        else looked up through the store and kept (see :mod:`meet.session_cache`).
        """
        cached = self.session_cache.get(token)
        if cached is not None:
            return cached
        sid = self.tokens.unsign(purposes.SESSION, token)
        if not isinstance(sid, str):
            return None
        if not self.epoch_watch.opened:
            await self.epoch_watch.open()  # once per server, on its first signed-in request
        epoch, found = await self.store.run(
            q.lookup_session, self.tokens.digest(purposes.SESSION, sid), self.clock.now()
        )
        if found is None:
            return None
        session = Session(found.id, found.user)
        self.session_cache.put(token, session, found.expires_at, epoch)
        return session

    def close(self) -> None:
        """Stop answering from memory and close the epoch watch's connection (at shutdown)."""
        self.epoch_watch.close()
        self.session_cache.clear()

    async def logout(self, session: Session) -> None:
        """Revoke one session."""
        await self.store.run(q.revoke_session, session.id, self.clock.now())
        self.revoked()

    # -- password reset -----------------------------------------------------------------

    async def forgot(self, email: str, client: str, base_url: str) -> None:
        """Mail a single-use reset link when the account exists; silent otherwise."""
        email = check_email(email)
        self._count_mail(email, client)
        user = await self.store.run(q.user_by_email, email)
        if user is None:
            return
        nonce = new_nonce()
        expires = self.clock.now() + RESET_TTL
        await self.store.run(q.add_reset, user.id, self.tokens.digest(purposes.RESET, nonce), expires)
        link = f"{base_url}/reset?token={self.tokens.sign(purposes.RESET, [user.id, nonce])}"
        text = (
            f"Hello {user.username},\n\nopen this link to choose a new meet password:\n{link}\n\n"
            "The link works once, for one hour. If you did not ask for it, ignore this mail: "
            "your password stays as it is.\n"
        )
        await self._deliver(user.email, "Reset your meet password", text)

    async def reset(self, token: str, password: str) -> None:
        """Set a new password with a reset token; every session of the user is revoked."""
        check_password(password)
        payload = self.tokens.unsign(purposes.RESET, token)
        invalid = BadRequest(
            "This reset link is invalid, expired or already used. Ask for a new one.",
            code="invalid_token",
            field="token",
        )
        if not (isinstance(payload, list) and len(payload) == 2 and isinstance(payload[0], int)):
            raise invalid
        password_hash = await self.passwords.hash(password)
        nonce_hash = self.tokens.digest(purposes.RESET, str(payload[1]))
        if not await self.store.run(q.consume_reset, payload[0], nonce_hash, password_hash, self.clock.now()):
            raise invalid
        self.revoked()

    # -- administration (CLI) -----------------------------------------------------------

    async def add_user(self, username: str, email: str, password: str, *, admin: bool) -> User:
        """Create a verified user without mail."""
        check_username(username)
        email = check_email(email)
        check_password(password)
        password_hash = await self.passwords.hash(password)
        return await self.store.run(q.add_user, username, email, password_hash, self.clock.now(), True, admin)

    async def invite(self, email: str, base_url: str, *, send: bool) -> str:
        """Create a single-use invitation for ``email`` and return its sign-up link.

        Only a keyed hash of the token is stored; it lasts ``[auth] invite_days``. With
        ``send`` the link is mailed to ``email`` as well.
        """
        email = check_email(email)
        token = new_nonce()
        now = self.clock.now()
        expires = now + self.settings.invite_days * 86400
        await self.store.run(q.add_invitation, email, self.tokens.digest(purposes.INVITE, token), now, expires)
        link = f"{base_url}/signup?{urlencode({'invite': token, 'email': email})}"
        if send:
            text = (
                f"Hello,\n\nyou are invited to create an account on meet, for video meetings:\n{link}\n\n"
                f"The link works once, for {self.settings.invite_days} days, with this email address.\n"
            )
            await self._deliver(email, "Your invitation to meet", text)
        return link

    def reset_throttles(self, user_id: int) -> int:
        """Lift a user's sign-in lock-out: their failed sign-ins, and those of the addresses
        they failed from; returns how many throttle keys were forgotten."""
        pairs = self.login_throttle.reset_matching(lambda key: key.startswith(f"user:{user_id}|"))
        addresses = {pair.partition("|")[2] for pair in pairs}
        self.address_throttle.reset_matching(addresses.__contains__)
        return len(pairs)

    async def set_password(self, login: str, password: str) -> User:
        """Replace a user's password and sign them out everywhere."""
        check_password(password)
        user = await self.store.run(q.user_by_login, login)
        if user is None:
            raise BadRequest(f"No user {login!r}.", code="user_not_found", field="login")
        password_hash = await self.passwords.hash(password)
        await self.store.run(q.set_password, user.id, password_hash)
        await self.store.run(q.revoke_all_sessions, user.id, self.clock.now())
        self.revoked()
        return user
