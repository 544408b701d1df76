import pytest
from django.core.exceptions import ImproperlyConfigured

from mlops_portal.env import env_bool, env_int, env_list, env_secret


def test_it_reads_typed_values(monkeypatch):
    monkeypatch.setenv("X_BOOL", "yes")
    monkeypatch.setenv("X_INT", "42")
    monkeypatch.setenv("X_LIST", "a.example.com, b.example.com,")
    assert env_bool("X_BOOL") is True
    assert env_int("X_INT", 1) == 42
    assert env_list("X_LIST", []) == ["a.example.com", "b.example.com"]


def test_it_uses_defaults_when_unset(monkeypatch):
    monkeypatch.delenv("X_UNSET", raising=False)
    assert env_bool("X_UNSET", True) is True
    assert env_int("X_UNSET", 7) == 7


@pytest.mark.parametrize(
    ("reader", "raw"),
    [(lambda: env_bool("X_BAD"), "maybe"), (lambda: env_int("X_BAD", 0), "ten")],
)
def test_it_stops_on_a_bad_value_naming_the_variable(monkeypatch, reader, raw):
    monkeypatch.setenv("X_BAD", raw)
    with pytest.raises(ImproperlyConfigured, match="X_BAD"):
        reader()


def test_it_requires_the_secret_key_outside_debug(monkeypatch):
    monkeypatch.delenv("X_SECRET", raising=False)
    with pytest.raises(ImproperlyConfigured, match="X_SECRET"):
        env_secret("X_SECRET", required=True, fallback="dev")
    assert env_secret("X_SECRET", required=False, fallback="dev") == "dev"
