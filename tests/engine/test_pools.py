"""Account pools for --jobs: names, config templates, and how many jobs run."""

from __future__ import annotations

import pytest

from conformance.core.errors import ConfigError
from conformance.core.pools import (
    EMBEDDED_AUTO_JOBS,
    check_pool_config,
    embedded_user,
    jobs_for,
    templated_accounts,
)


def test_the_embedded_pools_keep_pool_one_and_suffix_the_others() -> None:
    assert embedded_user("msmain", 1) == "msmain"
    assert embedded_user("msmain", 3) == "msmain-3"


def test_templates_fill_in_the_pool_number() -> None:
    accounts = {"main": {"user": "msmain{n}", "password": "pw-{n}"}}
    assert templated_accounts(accounts, 2) == {"main": {"user": "msmain2", "password": "pw-2"}}


def test_a_pool_without_templates_is_a_config_error_naming_the_field() -> None:
    with pytest.raises(ConfigError, match=r"accounts.empty.user"):
        check_pool_config(2, {"main": {"user": "a{n}"}, "empty": {"user": "b"}})
    check_pool_config(1, {"main": {"user": "fixed"}})  # one pool needs no template


def test_jobs_are_bounded_by_the_pools_of_a_target() -> None:
    assert jobs_for(None, embedded=True, pool=1) == EMBEDDED_AUTO_JOBS
    assert jobs_for(2, embedded=True, pool=1) == 2
    assert jobs_for(None, embedded=False, pool=3) == 3
    with pytest.raises(ConfigError, match="--jobs 4: the target config offers 1 account pool;"):
        jobs_for(4, embedded=False, pool=1)


def test_a_serial_run_of_the_embedded_server_and_a_parallel_one_agree() -> None:
    from conformance.core.config import RunConfig
    from conformance.core.scenario import bundled_scenario_dir, load_scenarios
    from conformance.pop3.engine import run_suite

    scenarios = [s for s in load_scenarios([bundled_scenario_dir()]) if not s.slow]
    serial = run_suite(scenarios, RunConfig(), jobs=1)
    parallel = run_suite(scenarios, RunConfig(), jobs=4)
    assert [r.scenario_id for r in parallel.results] == [s.id for s in scenarios]  # corpus order
    assert [r.verdict for r in parallel.results] == [r.verdict for r in serial.results]
