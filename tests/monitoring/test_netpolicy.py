"""The health-check network policy: parsing the setting and judging URLs and addresses."""

import ipaddress

import pytest

from monitoring.netpolicy import DEFAULT_ALLOWED, NetPolicy, policy_from_settings

DEFAULT = NetPolicy.from_setting(DEFAULT_ALLOWED)


# --- parsing the setting ---------------------------------------------------------------


def test_parses_networks_single_addresses_and_host_name_patterns():
    policy = NetPolicy.from_setting(
        ["10.0.0.0/8", "127.0.0.1", "::1", "Models.Internal.", "*.svc.cluster.local", " "]
    )
    assert policy.networks == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("::1/128"),
    )
    assert policy.hostnames == ("models.internal", "*.svc.cluster.local")


def test_a_comma_separated_string_is_the_environment_variable_form():
    policy = NetPolicy.from_setting("10.0.0.0/8, models.internal,")
    assert policy.networks == (ipaddress.ip_network("10.0.0.0/8"),)
    assert policy.hostnames == ("models.internal",)


def test_the_default_parses():
    assert len(DEFAULT.networks) == len(DEFAULT_ALLOWED)
    assert DEFAULT.hostnames == ()


@pytest.mark.parametrize(
    "entry",
    [
        "10.0.0.0/33",
        "10.0.0.1/8",
        "10.0.0.300",
        "*",
        "*.",
        "bad_name",
        "-x.internal",
        "a b",
        "fe80::/200",
    ],
)
def test_a_bad_entry_is_an_error_naming_it(entry):
    with pytest.raises(ValueError, match="HEALTHCHECK_ALLOWED_NETWORKS") as caught:
        NetPolicy.from_setting(["10.0.0.0/8", entry])
    assert repr(entry) in str(caught.value)


def test_host_bits_set_suggests_the_network():
    with pytest.raises(ValueError, match=r"did you mean 10\.0\.0\.0/8"):
        NetPolicy.from_setting(["10.0.0.1/8"])


def test_policy_from_settings(settings):
    settings.HEALTHCHECK_ALLOWED_NETWORKS = ["10.0.0.0/8", "*.svc.cluster.local"]
    policy = policy_from_settings()
    assert policy.networks == (ipaddress.ip_network("10.0.0.0/8"),)
    assert policy.hostnames == ("*.svc.cluster.local",)


def test_policy_from_settings_defaults_when_unset(settings):
    if hasattr(settings, "HEALTHCHECK_ALLOWED_NETWORKS"):
        del settings.HEALTHCHECK_ALLOWED_NETWORKS
    assert policy_from_settings() == DEFAULT


# --- IP literals -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/health",
        "https://10.1.2.3/health",
        "http://172.31.255.1/",
        "http://192.168.1.20:9000/v1/models/iris",
        "http://[::1]:8000/health",
        "http://[fd12:3456::1]/health",
    ],
)
def test_ip_literals_inside_the_default_are_allowed(url):
    assert DEFAULT.check_url(url) is None


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("http://8.8.8.8/", "8.8.8.8"),
        ("http://172.32.0.1/", "172.32.0.1"),
        ("http://[2001:db8::1]/", "2001:db8::1"),
        ("http://100.100.100.200/", "100.100.100.200"),
    ],
)
def test_ip_literals_outside_are_refused(url, address):
    assert DEFAULT.check_url(url) == f"{address} is outside HEALTHCHECK_ALLOWED_NETWORKS."


def test_a_single_network_policy():
    policy = NetPolicy.from_setting(["10.0.0.0/8"])
    assert policy.check_url("http://10.9.9.9/") is None
    assert "outside" in policy.check_url("http://127.0.0.1/")


@pytest.mark.parametrize("host", ["127.1", "2130706433", "0x7f.0.0.1", "017700000001"])
def test_legacy_numeric_ipv4_forms_do_not_sneak_past(host):
    """getaddrinfo maps all of these to 127.0.0.1: refused as non-canonical (aiohttp refuses
    them too), or checked as the address they resolve to."""
    error = NetPolicy.from_setting(["10.0.0.0/8"]).check_url(f"http://{host}/")
    assert error is not None
    assert "not a canonical IP address" in error or "resolves to 127.0.0.1, outside" in error


@pytest.mark.parametrize("host", ["2852039166", "0xa9.0xfe.0xa9.0xfe", "169.254.43518"])
def test_legacy_forms_of_the_metadata_address_are_refused(host):
    error = EVERYTHING.check_url(f"http://{host}/latest")
    assert error is not None
    assert "not a canonical IP address" in error or "link-local" in error


# --- addresses probes never go to ---------------------------------------------------------

EVERYTHING = NetPolicy.from_setting(["0.0.0.0/0", "::/0", "169.254.0.0/16", "fe80::/10"])


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "link-local (cloud metadata)"),
        ("http://169.254.10.1/", "link-local"),
        ("http://[fe80::1]/", "link-local"),
        ("http://[fe80::1%25eth0]/", "link-local"),
        ("http://[::ffff:169.254.169.254]/", "link-local (cloud metadata)"),
        ("http://[fd00:ec2::254]/", "cloud metadata"),
        ("http://0.0.0.0:8000/", "unspecified"),
        ("http://0.1.2.3/", "unspecified"),
        ("http://[::]/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("http://[ff02::1]/", "multicast"),
        ("http://255.255.255.255/", "broadcast"),
    ],
)
def test_link_local_and_friends_are_refused_even_when_listed(url, reason):
    error = EVERYTHING.check_url(url)
    assert error is not None
    assert reason in error
    assert error.endswith("probes never go there.")


def test_the_metadata_message():
    assert EVERYTHING.check_url("http://169.254.169.254/latest") == (
        "169.254.169.254 is link-local (cloud metadata); probes never go there."
    )


def test_listing_everything_still_allows_ordinary_addresses():
    assert EVERYTHING.check_url("http://8.8.8.8/") is None


# --- URL shape ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "ftp://10.0.0.1/file",
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_FLUSHALL",
        "ws://127.0.0.1/",
    ],
)
def test_only_http_and_https(url):
    assert "Only http:// and https://" in DEFAULT.check_url(url)


@pytest.mark.parametrize("url", ["", "127.0.0.1:8000/health", "//127.0.0.1/"])
def test_a_scheme_is_required(url):
    assert DEFAULT.check_url(url) == "The URL must start with http:// or https://."


def test_a_host_is_required():
    assert DEFAULT.check_url("http:///health") == "The URL has no host."


@pytest.mark.parametrize(
    "url",
    [
        "http://user:secret@10.0.0.1/",
        "http://user@10.0.0.1/",
        "https://:secret@10.0.0.1/",
    ],
)
def test_credentials_in_the_url_are_refused(url):
    assert "credentials" in DEFAULT.check_url(url)


@pytest.mark.parametrize(
    ("url", "error"),
    [
        (
            "http://10.0.0.1@169.254.169.254/",
            "169.254.169.254 is link-local (cloud metadata); probes never go there.",
        ),
        ("http://127.0.0.1:80@8.8.8.8/", "8.8.8.8 is outside HEALTHCHECK_ALLOWED_NETWORKS."),
        (
            "http://169.254.169.254@10.0.0.1/",
            "The URL must not contain credentials (user:password@).",
        ),
    ],
)
def test_credential_lookalike_userinfo_checks_the_real_host(url, error):
    """The host is what comes after the last "@", whatever sits before it: the refusal
    names that host (judging the userinfo instead would allow the first two, and name
    169.254.169.254 for the third)."""
    assert DEFAULT.check_url(url) == error


# --- host names ---------------------------------------------------------------------------

CLUSTER = NetPolicy.from_setting(["10.0.0.0/8", "*.svc.cluster.local", "models.internal"])


@pytest.mark.parametrize(
    "host",
    [
        "iris.default.svc.cluster.local",
        "a.svc.cluster.local",
        "IRIS.Default.SVC.cluster.local.",
        "models.internal",
        "MODELS.internal.",
    ],
)
def test_host_name_patterns_allow_the_name_without_dns(host):
    # None of these resolve here: a pattern trusts the name, DNS is checked at connect time.
    assert CLUSTER.matches_hostname(host)
    assert CLUSTER.check_url(f"http://{host}:8080/health") is None


@pytest.mark.parametrize(
    "host",
    [
        "svc.cluster.local",  # the wildcard needs a label in front
        "evilsvc.cluster.local",
        "svc.cluster.local.evil.example",
        "api.models.internal",  # an exact name matches only itself
        "models.internal.evil.example",
    ],
)
def test_host_name_patterns_do_not_match_lookalikes(host):
    assert not CLUSTER.matches_hostname(host)


def test_a_name_resolving_inside_the_networks_is_allowed():
    assert DEFAULT.check_url("http://localhost:8000/health") is None


def test_a_name_resolving_outside_the_networks_is_refused():
    policy = NetPolicy.from_setting(["10.0.0.0/8"])
    error = policy.check_url("http://localhost:8000/health")
    assert error.startswith("localhost resolves to ")
    assert error.endswith(", outside HEALTHCHECK_ALLOWED_NETWORKS.")


def test_a_name_that_does_not_resolve_is_refused():
    assert (
        DEFAULT.check_url("http://no-such-host.invalid/") == "Cannot resolve no-such-host.invalid."
    )


def test_without_dns_an_unknown_name_is_left_to_connect_time():
    assert DEFAULT.check_url("http://no-such-host.invalid/", resolve=False) is None


def test_a_pattern_allowed_name_may_resolve_to_any_address_but_the_forbidden_ones():
    assert CLUSTER.check_address("192.168.5.5", host="iris.svc.cluster.local") is None
    assert CLUSTER.check_address("192.168.5.5", host="iris.elsewhere.local") == (
        "iris.elsewhere.local resolves to 192.168.5.5, outside HEALTHCHECK_ALLOWED_NETWORKS."
    )
    assert CLUSTER.check_address("169.254.169.254", host="iris.svc.cluster.local") == (
        "iris.svc.cluster.local resolves to 169.254.169.254, which is link-local"
        " (cloud metadata); probes never go there."
    )


def test_check_address():
    assert DEFAULT.check_address("10.0.0.7") is None
    assert DEFAULT.check_address("::ffff:10.0.0.7") is None
    assert DEFAULT.check_address("93.184.216.34") == (
        "93.184.216.34 is outside HEALTHCHECK_ALLOWED_NETWORKS."
    )
    assert DEFAULT.check_address("not-an-ip") == "not-an-ip is not an IP address."
