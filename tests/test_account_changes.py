"""Token and role changes are on the change records, as anyone reading the feed sees them,
and neither a token's secret nor its digest nor a password hash ever is."""

import re

from django.contrib.auth.models import Group

from mlops_portal.core.roles import Role
from mlops_portal.models import ApiToken


def test_creating_and_revoking_a_token_appear_in_the_feed_without_the_secret(
    client, alice, bob, api_client_for
):
    client.force_login(alice)
    page = client.post("/tokens/", {"name": "nightly-training"}).content.decode()
    secret = re.search(r"mlp_[\w-]{20,}", page).group(0)
    token = ApiToken.objects.get(name="nightly-training")
    client.post(f"/tokens/{token.pk}/revoke/")
    token.refresh_from_db()

    feed = api_client_for(bob).get("/api/v1/changes/?kind=mlops_portal.apitoken&user=alice")
    entries = feed.json()["results"]
    assert [(e["action"], e["actor"], e["object_id"]) for e in entries] == [
        ("updated", "alice", str(token.pk)),
        ("created", "alice", str(token.pk)),
    ]
    revoked, created = entries
    assert revoked["changes"]["revoked_at"][0] == ""
    assert revoked["changes"]["revoked_at"][1].startswith(str(token.revoked_at.date()))
    assert created["changes"]["name"] == ["None", "nightly-training"]
    assert "nightly-training" in created["object"]
    assert secret not in feed.content.decode()
    assert token.digest not in feed.content.decode()
    assert "digest" not in created["changes"]

    client.force_login(bob)
    html = client.get("/changes/?kind=mlops_portal.apitoken").content.decode()
    assert "updated API token" in html and "created API token" in html
    assert secret not in html and token.digest not in html


def test_giving_and_taking_a_role_in_the_admin_appears_in_the_feed(
    client, admin_user, carol, api_client_for
):
    engineers = Group.objects.get_or_create(name=Role.MLOPS_ENGINEER)[0]
    client.force_login(admin_user)
    form = client.get(f"/admin/auth/user/{carol.pk}/change/").context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None}
    data.update(
        username="carol",
        email="carol@example.com",
        is_active="on",
        groups=[engineers.pk],  # viewer → MLOps engineer
        user_permissions=[],
        date_joined_0=carol.date_joined.strftime("%Y-%m-%d"),
        date_joined_1=carol.date_joined.strftime("%H:%M:%S"),
        _save="Save",
    )
    data.pop("password", None)
    data.pop("last_login", None)
    response = client.post(f"/admin/auth/user/{carol.pk}/change/", data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert set(carol.groups.values_list("name", flat=True)) == {Role.MLOPS_ENGINEER}

    feed = api_client_for(carol).get(f"/api/v1/changes/?kind=auth.user&object={carol.pk}")
    changes = [(e["actor"], e["changes"]) for e in feed.json()["results"][:2]]
    assert ("root", {"groups": ["", f"add {engineers.name}"]}) in changes
    assert ("root", {"groups": ["", f"delete {Role.VIEWER}"]}) in changes
    assert carol.password not in feed.content.decode()

    client.force_login(carol)
    html = client.get(f"/changes/?kind=auth.user&object={carol.pk}").content.decode()
    assert f"add {engineers.name}" in html and "updated User" in html
