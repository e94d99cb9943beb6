"""Account pools: disjoint sets of the fixture's accounts, so that scenarios
can run concurrently (`mailspec run --jobs N`) without one seeing another's
maildrop.

Each pool holds every role of the fixture (main, empty, spare1…, apop) with
its own user names; a scenario runs wholly inside one pool, so the accounts
it uses — however many — are its own for as long as it runs.

* The embedded server gets its pools for free: pool 1 is the fixture as it
  is, pool k adds `-k` to every user name.
* A target config gives them with `pool: N` and `{n}` in the user names (and
  passwords, if they differ): `main: {user: "msmain{n}", password: "…"}`
  names msmain1 … msmainN.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from conformance.core.errors import ConfigError
from conformance.core.fixture import Fixture

POOL_PLACEHOLDER = "{n}"
#: `--jobs` without a number against the embedded server. The corpus waits
#: 7.5 s on purpose (`idle:`, `expect_open:`), 2 s at most in one scenario:
#: with the waits started first (conformance.core.schedule), 8 jobs leave
#: enough of them free for the rest (measured on 2 cores: 4 jobs 3.7 s,
#: 6 jobs 3.3 s, 8 jobs 2.4-2.7 s, 12 jobs 3.0 s; benchmarks/bench_suite.py).
EMBEDDED_AUTO_JOBS = 8


def embedded_user(user: str, pool: int) -> str:
    """The user name of `user` in pool `pool` (1-based) of the embedded server."""
    return user if pool == 1 else f"{user}-{pool}"


def templated_accounts(
    accounts: Mapping[str, Mapping[str, str]], pool: int
) -> dict[str, dict[str, str]]:
    """The config's accounts with `{n}` replaced by the pool number."""
    return {
        role: {key: value.replace(POOL_PLACEHOLDER, str(pool)) for key, value in entry.items()}
        for role, entry in accounts.items()
    }


def check_pool_config(pool: int, accounts: Mapping[str, Mapping[str, str]]) -> None:
    """A target's pool of N > 1 needs every configured user name to vary with n."""
    if pool <= 1:
        return
    fixed = [role for role, entry in accounts.items() if POOL_PLACEHOLDER not in entry["user"]]
    if not accounts or fixed:
        which = ", ".join(f"accounts.{r}.user" for r in fixed) or "accounts"
        raise ConfigError(
            f"pool: {pool} needs {POOL_PLACEHOLDER} in every account's user name "
            f'({which}), e.g. user: "msmain{POOL_PLACEHOLDER}" for msmain1 … msmain{pool}'
        )


def jobs_for(requested: int | None, *, embedded: bool, pool: int) -> int:
    """How many scenarios run at once: what was asked (auto when None),
    never more than there are pools of accounts for a target."""
    if embedded:
        return requested or EMBEDDED_AUTO_JOBS
    if requested is not None and requested > pool:
        raise ConfigError(
            f"--jobs {requested}: the target config offers {pool} account pool"
            f"{'s' if pool != 1 else ''}; give 'pool: {requested}' with {POOL_PLACEHOLDER} "
            "in the user names, or fewer jobs"
        )
    return requested or pool


def with_credentials(fixture: Fixture, overrides: Mapping[str, Mapping[str, str]]) -> Fixture:
    """The fixture with the configured user names/passwords of its roles."""
    accounts = dict(fixture.accounts)
    for role, values in overrides.items():
        if role not in accounts:
            raise ConfigError(
                f"accounts.{role}: the fixture has no such role ({', '.join(accounts)})"
            )
        changes = {k: v for k, v in values.items() if k in ("user", "password", "login")}
        accounts[role] = dataclasses.replace(accounts[role], **changes)  # type: ignore[arg-type]
    return Fixture(fixture.source, accounts)
