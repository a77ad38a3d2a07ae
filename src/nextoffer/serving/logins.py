"""One login attempt for the API and the console: throttle, queued password check, outcome."""

from __future__ import annotations

from nextoffer.serving.accounts import Principal
from nextoffer.serving.login_throttle import LoginThrottle
from nextoffer.serving.password_gate import HashGate
from nextoffer.serving.users import authenticate
from nextoffer.store import Engine


class Logins:
    """Checks a username and password from a client address, resisting guessing.

    A locked (username, address) is refused before any hashing (RateLimitedError); the
    password check waits for a slot of the HashGate (BusyError when the wait is too long);
    the outcome feeds the throttle.
    """

    def __init__(self, engine: Engine, throttle: LoginThrottle, gate: HashGate) -> None:
        self.engine = engine
        self.throttle = throttle
        self.gate = gate

    async def attempt(self, username: str, password: str, address: str) -> Principal | None:
        """The principal when the password is right, None when not; raises when throttled."""
        self.throttle.check(username, address)
        principal = await self.gate.run(authenticate, self.engine, username, password)
        if principal is None:
            self.throttle.failed(username, address)
        else:
            self.throttle.succeeded(username, address)
        return principal
