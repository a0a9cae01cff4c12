from tests.conftest import policy


def test_run_prints_json_and_exits_zero(cli, write_policy):
    path = write_policy(policy({"id": "a", "type": "core.value", "params": {"value": 1}}))
    result = cli("run", str(path), "--json")
    assert result.returncode == 0, result.stderr
    assert '"status": "SUCCESS"' in result.stdout
