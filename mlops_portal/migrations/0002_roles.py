"""Create the role groups. Permissions are enforced by services (mlops_portal.core.roles),
so the groups carry no Django model permissions."""

from django.db import migrations

ROLE_NAMES = ("viewer", "data_scientist", "mlops_engineer")


def create_roles(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    for name in ROLE_NAMES:
        Group.objects.get_or_create(name=name)


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLE_NAMES).delete()


class Migration(migrations.Migration):
    dependencies = [("mlops_portal", "0001_initial"), ("auth", "0012_alter_user_first_name_max_length")]

    operations = [migrations.RunPython(create_roles, remove_roles)]
